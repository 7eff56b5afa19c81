"""Download a model from the Hub: resumable across restarts, verified before use, never outside the models folder.

huggingface_hub (since 1.18) only resumes inside one call, so this adds
exactly what is missing, its own way (write to a temporary file, verify,
rename): each part is written to ``<models>/.partial/…/<file>.part`` with a
small JSON note of what it is; a later run continues it with an HTTP Range
request, but only if the server answers 206 with a matching Content-Range
(otherwise it starts over). The sha256 the Hub publishes must match before
the part is renamed into place. TLS verification is huggingface_hub's
session default and is never turned off.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from model_store.checksums import sha256_of_file
from model_store.errors import DiskFullError, ModelStoreError
from model_store.hub import ModelOption, RemoteFile, is_network_error
from model_store.registry import InstalledModel, ModelRegistry

log = logging.getLogger(__name__)

CHUNK = 1 << 20
DISK_MARGIN_BYTES = 256 << 20
MAX_ATTEMPTS = 5
PROGRESS_INTERVAL_S = 0.1
_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class DownloadError(ModelStoreError):
    """A download failed; the message says why and what to do."""


class ChecksumMismatchError(DownloadError):
    """The file's sha256 is not the one the Hub publishes (damaged in transfer)."""


class UnsafeNameError(DownloadError, ValueError):
    """A repository or file name that could write outside the models folder."""


class DownloadCancelled(DownloadError):
    """The download was stopped (its partial file is kept unless it was discarded)."""


@dataclass(frozen=True)
class DownloadProgress:
    """How far a download is. ``phase``: "checking" (hashing a resumed part), "downloading", "verifying"."""

    done_bytes: int
    total_bytes: int
    bytes_per_s: float
    phase: str

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current speed, if known."""
        if self.bytes_per_s <= 0:
            return None
        return (self.total_bytes - self.done_bytes) / self.bytes_per_s


def safe_relative_path(*names: str) -> PurePosixPath:
    """A relative path built from Hub names, refusing anything that could escape the models folder.

    Raises:
        UnsafeNameError: an absolute path, ``..``, a backslash or drive, or an odd character.
    """
    parts: list[str] = []
    for name in names:
        if not name or "\\" in name or name.startswith("/") or ":" in name:
            raise UnsafeNameError(f"Refusing the name {name!r}: it could write outside Hearth's models folder.")
        for part in name.split("/"):
            if part in ("", ".", "..") or not _SAFE_PART.match(part):
                raise UnsafeNameError(f"Refusing the name {name!r}: it could write outside Hearth's models folder.")
            parts.append(part)
    return PurePosixPath(*parts)


class ModelDownloader:
    """Downloads :class:`ModelOption` s into ``models_dir`` and registers them.

    Args:
        models_dir: Hearth's models folder; nothing is written outside it.
        registry: where finished models are registered.
        endpoint: the Hub's address.
        token: returns the user's token or None.
        free_space: bytes free on the disk of a folder (injectable for tests).
    """

    def __init__(
        self,
        models_dir: Path,
        registry: ModelRegistry,
        *,
        endpoint: str,
        token: Callable[[], str | None] = lambda: None,
        free_space: Callable[[Path], int] = lambda folder: shutil.disk_usage(folder).free,
    ) -> None:
        self._models_dir = models_dir.resolve()
        self._registry = registry
        self._endpoint = endpoint.rstrip("/")
        self._token = token
        self._free_space = free_space

    # ----------------------------------------------------------------- public

    def target_folder(self, option: ModelOption) -> Path:
        """Where the finished files of ``option`` go."""
        return self._inside(self._models_dir / "hub" / safe_relative_path(option.repo_id))

    def partial_folder(self, option: ModelOption) -> Path:
        """Where unfinished parts of ``option`` wait."""
        return self._inside(self._models_dir / ".partial" / safe_relative_path(option.repo_id))

    def pending(self) -> list[ModelOption]:
        """Downloads left unfinished by an earlier run, to resume."""
        options = []
        for note in sorted((self._models_dir / ".partial").glob("**/*.download.json")):
            try:
                data = json.loads(note.read_text(encoding="utf-8"))
                parts = tuple(RemoteFile(**part) for part in data["parts"])
                options.append(ModelOption(data["repo_id"], data["label"], parts, data["commit"]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("Ignoring unreadable download note %s: %s", note, exc)
        return options

    def discard(self, option: ModelOption) -> None:
        """Delete the partial files of a download the user cancelled."""
        for remote in option.parts:
            self._part_file(option, remote).unlink(missing_ok=True)
        self._note_file(option).unlink(missing_ok=True)

    def download(
        self,
        option: ModelOption,
        *,
        progress: Callable[[DownloadProgress], None] = lambda _p: None,
        cancel: threading.Event | None = None,
    ) -> InstalledModel:
        """Download, verify and register ``option``; resumes what an earlier run left.

        Raises:
            DiskFullError: not enough free space (checked before starting).
            ChecksumMismatchError: a part does not match the Hub's sha256 (it is deleted).
            DownloadCancelled: ``cancel`` was set (the partial file is kept for a later resume).
            DownloadError: the server or the network failed repeatedly.
            UnsafeNameError: a name could escape the models folder.
        """
        cancel = cancel or threading.Event()
        target = self.target_folder(option)
        partial = self.partial_folder(option)
        paths = [self._inside(target / safe_relative_path(remote.name)) for remote in option.parts]
        self._check_space(option, partial)
        partial.mkdir(parents=True, exist_ok=True)
        self._note_file(option).write_text(json.dumps(
            {"repo_id": option.repo_id, "label": option.label, "commit": option.commit,
             "parts": [asdict(part) for part in option.parts]}), encoding="utf-8")
        meter = _Meter(option.size, progress)
        for remote, path in zip(option.parts, paths):
            if path.exists() and path.stat().st_size == remote.size and sha256_of_file(path) == remote.sha256:
                meter.add(remote.size)  # already finished by an earlier run
                continue
            self._download_part(option, remote, path, meter, cancel)
        self._note_file(option).unlink(missing_ok=True)
        first = paths[0]
        stat = first.stat()
        model = InstalledModel(
            id=f"hf/{option.repo_id}/{option.label}",
            display_name=f"{option.repo_id.split('/')[-1]} {option.label}",
            path=first,
            sha256=option.parts[0].sha256,
            size_bytes=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
        )
        self._registry.add(model, make_default=False)
        return model

    # -------------------------------------------------------------- internals

    def _download_part(
        self, option: ModelOption, remote: RemoteFile, path: Path, meter: _Meter, cancel: threading.Event
    ) -> None:
        part_file = self._part_file(option, remote)
        part_file.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        if part_file.exists() and part_file.stat().st_size <= remote.size:
            meter.phase = "checking"
            _hash_into(part_file, digest, meter, cancel)  # resuming: the hash must cover the bytes we keep
        else:
            part_file.unlink(missing_ok=True)
        attempts = 0
        while _size(part_file) < remote.size:
            attempts += 1
            if attempts > MAX_ATTEMPTS:
                raise DownloadError(
                    f"The download of {remote.name} kept breaking off; it will continue from where it stopped "
                    "next time."
                )
            digest = self._fetch(option, remote, part_file, digest, meter, cancel)
        meter.phase = "verifying"
        if digest.hexdigest() != remote.sha256:
            part_file.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"{remote.name} arrived damaged (its checksum does not match the one the Hub publishes), so it "
                "was deleted. Try the download again."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part_file, path)

    def _fetch(self, option, remote: RemoteFile, part_file: Path, digest, meter: _Meter, cancel: threading.Event):
        """One HTTP request, appending to ``part_file``; returns the hash (restarted if the server ignored Range)."""
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import get_session

        offset = _size(part_file)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = hf_hub_url(option.repo_id, remote.name, revision=option.commit, endpoint=self._endpoint)
        meter.phase = "downloading"
        try:
            with get_session().stream("GET", url, headers=headers, follow_redirects=True, timeout=30) as response:
                if response.status_code == 416 and offset == remote.size:
                    return digest
                if response.status_code >= 400:
                    raise DownloadError(f"The server refused {remote.name} (HTTP {response.status_code}).")
                append = offset > 0 and response.status_code == 206 and _range_start(response) == offset
                if not append:
                    if offset:
                        log.info("Server did not resume %s at %d; starting over", remote.name, offset)
                        meter.add(-offset)
                    digest = hashlib.sha256()
                with part_file.open("ab" if append else "wb") as out:
                    for block in response.iter_bytes(CHUNK):
                        if cancel.is_set():
                            raise DownloadCancelled(f"The download of {option.repo_id} {option.label} was stopped.")
                        out.write(block)
                        digest.update(block)
                        meter.add(len(block))
        except (DownloadError, DiskFullError):
            raise
        except Exception as exc:  # noqa: BLE001 - network errors from the HTTP client; retried from the offset
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise DiskFullError(f"The disk filled up while downloading {remote.name}.") from exc
            if not is_network_error(exc):
                raise
            log.warning("Download of %s broke off: %s", remote.name, exc)
        return digest

    def _check_space(self, option: ModelOption, partial: Path) -> None:
        remaining = sum(max(0, remote.size - _size(self._part_file(option, remote))) for remote in option.parts)
        folder = partial if partial.exists() else self._models_dir
        folder.mkdir(parents=True, exist_ok=True)
        free = self._free_space(folder)
        if free < remaining + DISK_MARGIN_BYTES:
            raise DiskFullError(
                f"Not enough disk space for {option.repo_id} {option.label}: it needs {remaining / 1e9:.1f} GB "
                f"more and {free / 1e9:.1f} GB are free."
            )

    def _part_file(self, option: ModelOption, remote: RemoteFile) -> Path:
        return self._inside(self.partial_folder(option) / (str(safe_relative_path(remote.name)) + ".part"))

    def _note_file(self, option: ModelOption) -> Path:
        name = safe_relative_path(option.parts[0].name).name
        return self._inside(self.partial_folder(option) / f"{name}.download.json")

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self._models_dir):
            raise UnsafeNameError(f"Refusing to write {path}: it is outside Hearth's models folder.")
        return resolved


class _Meter:
    """Counts bytes and reports progress at most ten times a second."""

    def __init__(self, total: int, report: Callable[[DownloadProgress], None]) -> None:
        self.total = total
        self.done = 0
        self.phase = "downloading"
        self._report = report
        self._last = 0.0
        self._window: list[tuple[float, int]] = []

    def add(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._last >= PROGRESS_INTERVAL_S or self.done >= self.total:
            self._window = [(t, d) for t, d in self._window if now - t < 3.0] + [(now, self.done)]
            first_time, first_done = self._window[0]
            speed = (self.done - first_done) / (now - first_time) if now > first_time else 0.0
            self._report(DownloadProgress(self.done, self.total, max(0.0, speed), self.phase))
            self._last = now


def _hash_into(path: Path, digest, meter: _Meter, cancel: threading.Event) -> None:
    with path.open("rb") as file:
        while block := file.read(CHUNK):
            if cancel.is_set():
                raise DownloadCancelled("The download was stopped.")
            digest.update(block)
            meter.add(len(block))


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _range_start(response) -> int | None:
    """The first byte a 206 answer covers, from ``Content-Range: bytes START-END/SIZE``."""
    match = re.match(r"bytes (\d+)-\d+/\d+", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None

