"""Downloads running in the background, several at once, each cancellable; resumed at the next start."""

from __future__ import annotations

import logging
import threading

from PySide6.QtCore import QObject, Signal

from gui.messages import describe_error
from model_store.downloads import DownloadCancelled, DownloadProgress, ModelDownloader
from model_store.hub import ModelOption

log = logging.getLogger(__name__)


class DownloadManager(QObject):
    """Runs :class:`ModelDownloader` jobs on threads and reports on the GUI thread.

    Signals:
        started(str, object): a download began (key, ModelOption).
        progress(str, object): bytes so far (key, DownloadProgress), at most ten times a second.
        finished(str, object): verified and installed (key, InstalledModel).
        failed(str, str): it stopped with an error (key, sentence); a partial file is kept for a retry.
        cancelled(str): the user cancelled it; its partial file was deleted.
    """

    started = Signal(str, object)
    progress = Signal(str, object)
    finished = Signal(str, object)
    failed = Signal(str, str)
    cancelled = Signal(str)

    def __init__(self, downloader: ModelDownloader, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._downloader = downloader
        self._jobs: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self._discard: set[str] = set()

    def active(self) -> list[str]:
        """Keys of downloads in progress."""
        return [key for key, (thread, _) in self._jobs.items() if thread.is_alive()]

    def start(self, option: ModelOption) -> None:
        """Download ``option`` unless it is already downloading."""
        if option.key in self.active():
            return
        stop = threading.Event()
        thread = threading.Thread(target=self._run, args=(option, stop), name=f"download {option.key}", daemon=True)
        self._jobs[option.key] = (thread, stop)
        self.started.emit(option.key, option)
        thread.start()

    def resume_pending(self) -> int:
        """Continue the downloads an earlier run left unfinished; returns how many."""
        pending = self._downloader.pending()
        for option in pending:
            self.start(option)
        return len(pending)

    def cancel(self, key: str) -> None:
        """Stop a download and delete what it had fetched."""
        if key in self._jobs:
            self._discard.add(key)
            self._jobs[key][1].set()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every download, keeping partial files so the next start resumes them."""
        for thread, stop in self._jobs.values():
            stop.set()
        for thread, _ in self._jobs.values():
            thread.join(timeout)

    def _run(self, option: ModelOption, stop: threading.Event) -> None:
        key = option.key
        try:
            model = self._downloader.download(option, progress=lambda p: self.progress.emit(key, p), cancel=stop)
        except DownloadCancelled:
            if key in self._discard:
                self._discard.discard(key)
                self._downloader.discard(option)
                self.cancelled.emit(key)
            return
        except Exception as exc:  # noqa: BLE001 - every failure is shown; the app stays up
            log.warning("Download %s failed: %s", key, exc)
            self.failed.emit(key, describe_error(exc))
            return
        self.finished.emit(key, model)


def progress_text(progress: DownloadProgress) -> str:
    """E.g. ``312 / 491 MB · 5.2 MB/s · 35 s left`` (or the checking phases)."""
    done, total = progress.done_bytes / 1e6, progress.total_bytes / 1e6
    if progress.phase == "checking":
        return f"Checking the part already downloaded… {done:,.0f} / {total:,.0f} MB"
    if progress.phase == "verifying":
        return "Verifying the checksum…"
    text = f"{done:,.0f} / {total:,.0f} MB · {progress.bytes_per_s / 1e6:.1f} MB/s"
    eta = progress.eta_s
    if eta is not None:
        text += f" · {eta / 60:.0f} min left" if eta >= 90 else f" · {eta:.0f} s left"
    return text
