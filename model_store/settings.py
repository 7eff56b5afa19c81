"""The user's settings: typed, versioned, stored as JSON. Secrets never go here.

Each version change has a migration in ``MIGRATIONS`` that turns a file of
the previous version into the next; a file is migrated as it is loaded and
written in the current version at the next save. Unknown keys are ignored,
except in a file from a newer Hearth: that one is never migrated backwards,
and a save keeps its version, the keys this Hearth does not know and the
values it cannot read (see :meth:`SettingsStore.save`).

The sampling defaults are the engine's own (``inference.engine.SamplingParams``):
declared once, there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from inference.engine import SamplingParams
from inference.thread_tuning import MeasuredThreads
from model_store.atomic import write_text_atomically

log = logging.getLogger(__name__)

SETTINGS_VERSION = 2
_SAMPLING = SamplingParams()


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
    # How replies are sampled; the defaults are the engine's.
    temperature: float = _SAMPLING.temperature
    top_p: float = _SAMPLING.top_p
    top_k: int = _SAMPLING.top_k
    min_p: float = _SAMPLING.min_p
    repeat_penalty: float = _SAMPLING.repeat_penalty
    seed: int | None = _SAMPLING.seed
    max_tokens: int = _SAMPLING.max_tokens
    # The local OpenAI-compatible API server (inference/api); its token lives in the keyring (model_store/api_token.py).
    api_server_enabled: bool = False
    api_host: str = "127.0.0.1"  # loopback: only programs on this computer
    api_port: int = 8765


def _v1_to_v2(data: dict[str, Any]) -> None:
    # Version 1 stored a bare thread count per CPU from one round measured while the
    # user waited, often while another program was busy: it could keep 1 thread for good.
    if data.pop("measured_threads", None):
        log.info("Dropped thread counts measured by an older Hearth; they are measured again in the background")


MIGRATIONS: dict[int, Callable[[dict[str, Any]], None]] = {1: _v1_to_v2}  # from version N to N + 1


def file_version(data: dict[str, Any]) -> int:
    """The version a settings file's contents are in; a file without a (valid) version is version 1."""
    version = data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return 1
    return version


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring a settings file's contents from its version to :data:`SETTINGS_VERSION`.

    A file without a version is version 1; a file from a newer Hearth is left as it is.
    """
    data = dict(data)
    version = file_version(data)
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
        """The saved settings (migrated to this version), or the defaults when the file is missing or unreadable.

        From a newer Hearth's file, the settings this version knows; ``version`` is then that newer version.
        """
        data = self._read()
        if data is None:
            return Settings()
        if file_version(data) > SETTINGS_VERSION:
            log.warning("Settings file %s is from a newer Hearth (version %d); reading what this version knows",
                        self._file, file_version(data))
        values, _ = _known_values(migrate(data), warn=True)
        return Settings(**values)

    def save(self, settings: Settings) -> None:
        """Write the settings atomically, in this version.

        Over a file from a newer Hearth, nothing of that Hearth's is lost: the
        file keeps its version, the keys this one does not know and the values
        it cannot read; only the settings it knows are written.
        """
        payload = {**asdict(settings), "version": SETTINGS_VERSION}
        newer = self._read()
        if newer is not None and file_version(newer) > SETTINGS_VERSION:
            _, unreadable = _known_values(newer)
            payload = {**newer, **{key: value for key, value in payload.items() if key not in unreadable},
                       "version": file_version(newer)}
        write_text_atomically(self._file, json.dumps(payload, indent=2))

    def _read(self) -> dict[str, Any] | None:
        """The file's contents; None when it is missing or holds no settings."""
        try:
            data = json.loads(self._file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("Settings file %s is unreadable (%s); using defaults", self._file, exc)
            return None
        if not isinstance(data, dict):
            log.warning("Settings file %s holds no settings; using defaults", self._file)
            return None
        return data


def _known_values(data: dict[str, Any], *, warn: bool = False) -> tuple[dict[str, Any], set[str]]:
    """The :class:`Settings` fields read from ``data``, and the names of those not read whole.

    A value of the wrong type (a hand-edited or damaged file, or a newer
    Hearth's different kind of value) is replaced by the default; a damaged
    measurement is left out.
    """
    defaults = Settings()
    values: dict[str, Any] = {}
    invalid: set[str] = set()
    for item in fields(Settings):
        default = getattr(defaults, item.name)
        value = data.get(item.name, default)
        wanted = type(default) if default is not None else OPTIONAL_TYPES.get(item.name)
        if wanted is not None and value is not None and (
            not isinstance(value, wanted) or (isinstance(value, bool) and wanted is not bool)
        ):
            if not (wanted is float and isinstance(value, int)):
                if warn:
                    log.warning("Setting %s has an invalid value; using the default", item.name)
                invalid.add(item.name)
                value = default
        values[item.name] = value
    measured = _measured_threads(values["measured_threads"], warn=warn)
    if sum(map(len, measured.values())) != _entry_count(values["measured_threads"]):
        invalid.add("measured_threads")
    values["measured_threads"] = measured
    return values, invalid


def _entry_count(data: dict) -> int:
    return sum(len(models) if isinstance(models, dict) else 1 for models in data.values())


def _measured_threads(data: dict, *, warn: bool = True) -> dict[str, dict[str, MeasuredThreads]]:
    """The stored measurements; a damaged entry is left out (it is measured again)."""
    result: dict[str, dict[str, MeasuredThreads]] = {}
    for cpu, models in data.items():
        if not isinstance(models, dict):
            if warn:
                log.warning("Measured threads for %s are invalid; measuring again", cpu)
            continue
        for model, entry in models.items():
            try:
                measured = MeasuredThreads(
                    threads=int(entry["threads"]), tokens_per_s=float(entry["tokens_per_s"]),
                    model=str(entry["model"]), model_size=int(entry["model_size"]),
                )
            except (TypeError, KeyError, ValueError):
                if warn:
                    log.warning("Measured threads for %s on %s are invalid; measuring again", model, cpu)
                continue
            if measured.threads >= 1 and measured.tokens_per_s > 0:
                result.setdefault(cpu, {})[model] = measured
    return result
