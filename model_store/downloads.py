"""Download a model from the Hub: resumable across restarts, verified before use, never outside the models folder.

huggingface_hub (since 1.18) only resumes inside one call, so this adds
exactly what is missing, its own way (write to a temporary file, verify,
rename): each part is written to ``<models>/.partial/…/<file>.part`` with a
small JSON note of what it is; a later run continues it with an HTTP Range
request, but only if the server answers 206 with a matching Content-Range
(otherwise it starts over). A try that breaks off is tried again after a
pause that doubles each time (with jitter, bounded: :class:`RetryPolicy`).
The checksum the Hub publishes must match before the part is renamed into
place: the sha256 of a file kept in Git LFS, else the git blob sha1 of a file
kept in git itself, else (nothing published) its size. TLS verification is
huggingface_hub's session default and is never turned off. A file in a format
that can run code when opened (a pickle, a PyTorch checkpoint) is refused by
its name before anything is fetched, and by its first bytes as soon as they
arrive (a pickle under a ``.gguf`` name).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import random
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from model_store.checksums import sha256_of_file
from model_store.errors import (
    ChecksumMismatchError,
    DiskFullError,
    DownloadCancelled,
    DownloadError,
    UnsafeNameError,
)
from model_store.hub import ModelOption, RemoteFile, is_network_error
from model_store.model_files import HEAD_BYTES, CodeCarryingFileError, code_carrying_reason, read_head
from model_store.registry import InstalledModel, ModelRegistry

log = logging.getLogger(__name__)

CHUNK = 1 << 20
DISK_MARGIN_BYTES = 256 << 20
PROGRESS_INTERVAL_S = 0.1
_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class RetryPolicy:
    """How a download that keeps breaking off is tried again.

    After the n-th failed try in a row the next one waits
    ``min(max_delay_s, first_delay_s * 2 ** (n - 1))``, less a random share of
    up to ``jitter`` of it, so that clients cut off together do not all come
    back at once. A try that brought new bytes starts the count again; after
    ``attempts`` failed tries in a row the download gives up (for now: it
    continues from its partial file next time).
    """

    attempts: int = 5
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    jitter: float = 0.5

    def delay_s(self, failures: int, *, chance: Callable[[], float] = random.random) -> float:
        """Seconds to wait after ``failures`` failed tries in a row (``chance``: a number in [0, 1))."""
        full = min(self.max_delay_s, self.first_delay_s * 2 ** max(0, failures - 1))
        return full * (1.0 - self.jitter * chance())


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
        retry: how a transfer that breaks off is tried again.
    """

    def __init__(
        self,
        models_dir: Path,
        registry: ModelRegistry,
        *,
        endpoint: str,
        token: Callable[[], str | None] = lambda: None,
        free_space: Callable[[Path], int] = lambda folder: shutil.disk_usage(folder).free,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self._models_dir = models_dir.resolve()
        self._registry = registry
        self._endpoint = endpoint.rstrip("/")
        self._token = token
        self._free_space = free_space
        self._retry = retry

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
            ChecksumMismatchError: a part does not match the Hub's checksum (it is deleted).
            DownloadCancelled: ``cancel`` was set (the partial file is kept for a later resume).
            DownloadError: the server or the network failed repeatedly.
            UnsafeNameError: a name could escape the models folder.
            CodeCarryingFileError: a part is a pickle or PyTorch file (by its name: before anything is fetched).
        """
        try:
            _refuse_code_carrying_names(option)
        except CodeCarryingFileError:
            self.discard(option)  # a note an older Hearth left must not offer it again
            raise
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
        sha256s = []
        try:
            for remote, path in zip(option.parts, paths):
                finished = _finished_sha256(path, remote)
                if finished:
                    _refuse_contents(remote, read_head(path), discard=path)  # fetched before Hearth checked this
                    meter.add(remote.size)  # already finished by an earlier run
                    sha256s.append(finished)
                    continue
                sha256s.append(self._download_part(option, remote, path, meter, cancel))
        except CodeCarryingFileError:
            self.discard(option)  # nothing of it is kept, nor offered for resuming
            raise
        self._note_file(option).unlink(missing_ok=True)
        first = paths[0]
        stat = first.stat()
        model = InstalledModel(
            id=f"hf/{option.repo_id}/{option.label}",
            display_name=f"{option.repo_id.split('/')[-1]} {option.label}",
            path=first,
            sha256=sha256s[0],
            size_bytes=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
        )
        self._registry.add(model, make_default=False)
        return model

    # -------------------------------------------------------------- internals

    def _download_part(
        self, option: ModelOption, remote: RemoteFile, path: Path, meter: _Meter, cancel: threading.Event
    ) -> str:
        """Fetch one part (resuming its partial file), verify it and move it into place; returns its sha256."""
        part_file = self._part_file(option, remote)
        part_file.parent.mkdir(parents=True, exist_ok=True)
        digest = _Digest(remote)
        if part_file.exists() and part_file.stat().st_size <= remote.size:
            _refuse_contents(remote, read_head(part_file))
            meter.phase = "checking"
            _hash_into(part_file, digest, meter, cancel)  # resuming: the hash must cover the bytes we keep
        else:
            part_file.unlink(missing_ok=True)
        failures = 0
        while _size(part_file) < remote.size:
            if failures:
                if failures >= self._retry.attempts:
                    raise DownloadError(
                        f"The download of {remote.name} kept breaking off; it will continue from where it stopped "
                        "next time."
                    )
                pause = self._retry.delay_s(failures)
                log.info("Trying %s again in %.1f s (%d failed tries in a row)", remote.name, pause, failures)
                if cancel.wait(pause):
                    raise DownloadCancelled(f"The download of {option.repo_id} {option.label} was stopped.")
            had = _size(part_file)
            digest = self._fetch(option, remote, part_file, digest, meter, cancel)
            if _size(part_file) < remote.size:
                failures = 1 if _size(part_file) > had else failures + 1
        meter.phase = "verifying"
        if _size(part_file) != remote.size or not digest.matches():
            part_file.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"{remote.name} arrived damaged (its checksum does not match the one the Hub publishes), so it "
                "was deleted. Try the download again."
            )
        _refuse_contents(remote, read_head(part_file))
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part_file, path)
        return digest.sha256.hexdigest()

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
                    digest = _Digest(remote)
                head = None if append else b""  # a resumed part's first bytes were checked before
                with part_file.open("ab" if append else "wb") as out:
                    for block in response.iter_bytes():  # as they arrive: a break loses none already received
                        if cancel.is_set():
                            raise DownloadCancelled(f"The download of {option.repo_id} {option.label} was stopped.")
                        if head is not None:  # stop a pickle at its first bytes, not after gigabytes
                            head += block[: HEAD_BYTES - len(head)]
                            if len(head) == HEAD_BYTES:
                                _refuse_contents(remote, head)
                                head = None
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


class _Digest:
    """The checksums of one part as its bytes arrive.

    The sha256 always (the registry records it); the git blob sha1 as well
    when that is all the Hub publishes for the file (``git hash-object``:
    sha1 of ``b"blob <size>\\0"`` and the content; the Hub serves the file
    over TLS, so this guards against damage in transfer and on disk).
    """

    def __init__(self, remote: RemoteFile) -> None:
        self._remote = remote
        self.sha256 = hashlib.sha256()
        self.git_sha1 = None
        if not remote.sha256 and remote.git_sha1:
            self.git_sha1 = hashlib.sha1(b"blob %d\0" % remote.size, usedforsecurity=False)

    def update(self, block: bytes) -> None:
        self.sha256.update(block)
        if self.git_sha1 is not None:
            self.git_sha1.update(block)

    def matches(self) -> bool:
        """Whether the bytes so far are the file the Hub describes (its size is checked by the caller)."""
        if self._remote.sha256:
            return self.sha256.hexdigest() == self._remote.sha256
        if self.git_sha1 is not None:
            return self.git_sha1.hexdigest() == self._remote.git_sha1
        log.warning("The Hub publishes no checksum for %s; checked by its size only", self._remote.name)
        return True


def _finished_sha256(path: Path, remote: RemoteFile) -> str:
    """The sha256 of ``path`` when it already is the finished, verified ``remote``; else ""."""
    if not path.exists() or path.stat().st_size != remote.size:
        return ""
    if remote.sha256:
        found = sha256_of_file(path)
        return found if found == remote.sha256 else ""
    digest = _Digest(remote)
    with path.open("rb") as file:
        while block := file.read(CHUNK):
            digest.update(block)
    return digest.sha256.hexdigest() if digest.matches() else ""


def _refuse_code_carrying_names(option: ModelOption) -> None:
    """Refuse a download with a part named like a pickle or PyTorch file, before anything is fetched."""
    for remote in option.parts:
        reason = code_carrying_reason(remote.name)
        if reason:
            raise CodeCarryingFileError(reason)


def _refuse_contents(remote: RemoteFile, head: bytes, *, discard: Path | None = None) -> None:
    """Refuse a part whose first bytes are a pickle's or a zip's; ``discard`` (a finished file) is deleted."""
    reason = code_carrying_reason(remote.name, head)
    if reason:
        if discard is not None:
            discard.unlink(missing_ok=True)
        raise CodeCarryingFileError(reason)


def _hash_into(path: Path, digest: _Digest, meter: _Meter, cancel: threading.Event) -> None:
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

