"""The user's settings: typed, versioned, stored as JSON. Secrets never go here.

Each version change has a migration in ``MIGRATIONS`` that turns a file of
the previous version into the next; unknown keys are ignored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from model_store.atomic import write_text_atomically

log = logging.getLogger(__name__)

SETTINGS_VERSION = 2


@dataclass(frozen=True)
class MeasuredThreads:
    """The thread count Hearth chose for one model on one CPU, with the decode speed it measured.

    ``model`` is the file's name and ``model_size`` its size in bytes: a
    figure holds for that file only.
    """

    threads: int
    tokens_per_s: float
    model: str
    model_size: int


@dataclass
class Settings:
    """Everything the user can set. Unknown keys in the file are ignored.

    ``None`` means "let Hearth choose". ``measured_threads`` maps a CPU
    signature, then a model (``inference.thread_tuning.measurement_key``),
    to the thread count chosen for it from measurements.
    """

    version: int = SETTINGS_VERSION
    demo_notice_dismissed: bool = False
    # Where and how models run.
    device: str = "auto"  # "auto", "cpu" or "gpu"
    n_threads: int | None = None
    context_length: int | None = None
    n_gpu_layers: int | None = None  # layers llama.cpp puts on the GPU; None: as many as fit
    gpu: str | None = None  # the GPU to use (its name and number, e.g. "NVIDIA H200#0"); None: the best
    state_cache_mb: int = 1024
    measured_threads: dict[str, dict[str, MeasuredThreads]] = field(default_factory=dict)
    # How replies are sampled.
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    seed: int | None = None
    max_tokens: int = 1024


def _v1_to_v2(data: dict[str, Any]) -> None:
    # Version 1 stored a bare thread count per CPU from one round measured while the
    # user waited, often while another program was busy: it could keep 1 thread for good.
    if data.pop("measured_threads", None):
        log.info("Dropped thread counts measured by an older Hearth; they are measured again in the background")


MIGRATIONS: dict[int, Callable[[dict[str, Any]], None]] = {1: _v1_to_v2}  # from version N to N + 1


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring a settings file's contents from its version to :data:`SETTINGS_VERSION`.

    A file without a version is version 1; a file from a newer Hearth is left as it is.
    """
    data = dict(data)
    version = data.get("version", 1)
    if not isinstance(version, int) or version < 1:
        version = 1
    while version < SETTINGS_VERSION:
        MIGRATIONS[version](data)
        version += 1
        data["version"] = version
    return data


# The type of each setting whose default is None ("let Hearth choose").
OPTIONAL_TYPES = {"n_threads": int, "context_length": int, "n_gpu_layers": int, "gpu": str, "seed": int}


class SettingsStore:
    """Loads and saves :class:`Settings` in one JSON file."""

    def __init__(self, settings_file: Path) -> None:
        self._file = settings_file

    def load(self) -> Settings:
        """The saved settings (migrated to this version), or the defaults when the file is missing or unreadable."""
        try:
            data = json.loads(self._file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return Settings()
        except (OSError, ValueError) as exc:
            log.warning("Settings file %s is unreadable (%s); using defaults", self._file, exc)
            return Settings()
        if not isinstance(data, dict):
            log.warning("Settings file %s holds no settings; using defaults", self._file)
            return Settings()
        data = migrate(data)
        defaults = Settings()
        values = {}
        for item in fields(Settings):
            value = data.get(item.name, getattr(defaults, item.name))
            default = getattr(defaults, item.name)
            # A value of the wrong type (a hand-edited or damaged file) falls back to the default.
            wanted = type(default) if default is not None else OPTIONAL_TYPES.get(item.name)
            if wanted is not None and value is not None and (
                not isinstance(value, wanted) or (isinstance(value, bool) and wanted is not bool)
            ):
                if not (wanted is float and isinstance(value, int)):
                    log.warning("Setting %s has an invalid value; using the default", item.name)
                    value = default
            values[item.name] = value
        values["measured_threads"] = _measured_threads(values["measured_threads"])
        return Settings(**values)

    def save(self, settings: Settings) -> None:
        """Write the settings atomically."""
        write_text_atomically(self._file, json.dumps(asdict(settings), indent=2))


def _measured_threads(data: dict) -> dict[str, dict[str, MeasuredThreads]]:
    """The stored measurements; a damaged entry is left out (it is measured again)."""
    result: dict[str, dict[str, MeasuredThreads]] = {}
    for cpu, models in data.items():
        if not isinstance(models, dict):
            log.warning("Measured threads for %s are invalid; measuring again", cpu)
            continue
        for model, entry in models.items():
            try:
                measured = MeasuredThreads(
                    threads=int(entry["threads"]), tokens_per_s=float(entry["tokens_per_s"]),
                    model=str(entry["model"]), model_size=int(entry["model_size"]),
                )
            except (TypeError, KeyError, ValueError):
                log.warning("Measured threads for %s on %s are invalid; measuring again", model, cpu)
                continue
            if measured.threads >= 1 and measured.tokens_per_s > 0:
                result.setdefault(cpu, {})[model] = measured
    return result
