"""Chat with documents in the window: attachments, collections, retrieval before a reply, the passage panel.

The index itself (``model_store.documents.DocumentIndex``) is Qt-free; this
module runs every call into it off the GUI thread. Indexing and attaching run
one at a time on one worker thread (a queue); each retrieval runs on a thread
of its own, which the index allows while it indexes.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from gui.messages import describe_error
from inference.document_prompt import DocumentPrompt, Source, prompt_with_documents

log = logging.getLogger(__name__)


def problem_sentence(path: Path, reason: str) -> str:
    """One sentence for a file the index could not read."""
    return f"{Path(path).name} was not added: {reason.rstrip('.')}."


def note_sentence(path: Path, note: str) -> str:
    """One sentence for a file that was indexed with a caveat (e.g. only its beginning)."""
    return f"{Path(path).name}: {note.rstrip('.')}."


def report_sentences(report, *, limit: int = 8) -> list[str]:
    """The sentences an IndexReport gives the user: files left out, then caveats; past ``limit``, a count."""
    sentences = [problem_sentence(p, r) for p, r in getattr(report, "problems", ())] + \
        [note_sentence(p, n) for p, n in getattr(report, "notes", ())]
    if len(sentences) > limit:
        rest = len(sentences) - limit + 1
        sentences = sentences[:limit - 1] + [f"…and {rest:,} more files were left out or only partly read."]
    return sentences


class DocumentTasks(QObject):
    """Owns the document index's slow calls; results come back as queued signals.

    Args:
        index: a ``DocumentIndex`` (or anything with its methods).

    Signals:
        progress(str): a status-bar sentence, e.g. "Indexing 312 of 1,000 files…".
        attached(str, object): (conversation id, IndexReport) after an attach.
        attachments_listed(str, object): (conversation id, list of Attachment) for the chips.
        indexed(str, object): (collection id, IndexReport) after (re-)indexing a collection.
        collection_added(str): a collection was added (its indexing follows).
        collections_listed(object): the list of Collection, for the collections dialog.
        retrieved(int, object): (request id, DocumentPrompt) for a reply about to start.
        passage_ready(object, object): (Source, Passage or None) for the passage panel.
        failed(str): a sentence for the user.
    """

    progress = Signal(str)
    attached = Signal(str, object)
    attachments_listed = Signal(str, object)
    indexed = Signal(str, object)
    retrieved = Signal(int, object)
    collections_listed = Signal(object)
    collection_added = Signal(str)
    passage_ready = Signal(object, object)
    failed = Signal(str)

    def __init__(self, index, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.index = index
        self._jobs: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._embedder = None  # the embedding model use_embedder found (closed with the tasks)
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._work, name="document-index", daemon=True)
        self._thread.start()

    # --------------------------------------------------------------- asking

    def attach(self, conversation_id: str, paths: Sequence[Path]) -> None:
        """Extract and index ``paths`` (a folder: its files, recursively) for a conversation (queued)."""
        def job() -> None:
            files: list[Path] = []
            for path in paths:  # listing a big folder is slow too: here, not on the GUI thread
                files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
            report = self.index.attach(conversation_id, files, progress=self._report, cancel=self._cancel,
                                       embed_progress=self._report_embedding)
            self._emit2(self.attached, conversation_id, report)
            self._emit2(self.attachments_listed, conversation_id, self.index.attachments(conversation_id))

        self._submit(job)

    def detach(self, conversation_id: str, path: str) -> None:
        """Take one file off a conversation (when the index can), then list what is left."""
        def job() -> None:
            detach = getattr(self.index, "detach", None)
            if detach is not None:
                detach(conversation_id, Path(path))
            self._emit2(self.attachments_listed, conversation_id, self.index.attachments(conversation_id))

        self._submit(job)

    def list_attachments(self, conversation_id: str) -> None:
        """Read a conversation's attachments (for its chips) off the GUI thread."""
        self._submit(lambda: self._emit2(self.attachments_listed, conversation_id,
                                         self.index.attachments(conversation_id)))

    def index_collection(self, collection_id: str) -> None:
        """Re-index one collection, incrementally (queued)."""
        self._submit(lambda: self._emit2(self.indexed, collection_id, self.index.index_collection(
            collection_id, progress=self._report, cancel=self._cancel, embed_progress=self._report_embedding)))

    def add_collection(self, name: str, folder: Path) -> None:
        """Add a folder as a named collection and index it (queued); ``collection_added``, then ``indexed``."""
        def job() -> None:
            collection = self.index.add_collection(name, folder)
            self._emit1(self.collection_added, collection.id)
            self.index_collection(collection.id)

        self._submit(job)

    def remove_collection(self, collection_id: str) -> None:
        """Forget a collection and its passages (the folder itself is left alone)."""
        def job() -> None:
            self.index.remove_collection(collection_id)
            self._emit1(self.collections_listed, self.index.collections())

        self._submit(job)

    def rebuild(self) -> None:
        """Read every collection and attachment again from its file (queued); ``indexed`` follows with ""."""
        self._submit(lambda: self._emit2(self.indexed, "", self.index.rebuild(
            progress=self._report, cancel=self._cancel, embed_progress=self._report_embedding)))

    def forget_other_conversations(self, kept: set[str]) -> None:
        """Drop, in the background, the attachments of conversations not in ``kept`` (deleted for good)."""
        self._submit(lambda: self.index.forget_other_conversations(kept))

    def list_collections(self) -> None:
        """Read the collections (queued behind indexing, so the counts are fresh)."""
        self._submit(lambda: self._emit1(self.collections_listed, self.index.collections()))

    def index_all(self) -> None:
        """Re-index every collection (at start-up and on demand)."""
        self._submit(lambda: [self.index_collection(c.id) for c in self.index.collections()])

    def use_embedder(self, find: Callable[[], object | None]) -> None:
        """Search by meaning too when ``find`` (called on the worker thread) gives an embedding model.

        Passages without vectors are embedded then, with progress in the status bar.
        """
        def job() -> None:
            embedder = find()
            if embedder is not None:
                self._embedder = embedder
                self.index.use_embedder(embedder)
                self.index.embed_pending(progress=self._report_embedding, cancel=self._cancel)

        self._submit(job)

    def retrieve(self, request_id: int, messages, *, conversation_id: str | None, collection_ids: Sequence[str],
                 n_ctx: int, max_tokens: int, cancel: threading.Event, earlier: Sequence[Source] = ()) -> None:
        """Build the reply's prompt with its documents on a thread of its own; ``retrieved`` carries it.

        ``earlier``: the sources already given on this branch (named, not sent again).
        """
        def work() -> None:
            try:
                prompt = prompt_with_documents(messages, self.index, conversation_id=conversation_id,
                                               collection_ids=collection_ids, n_ctx=n_ctx, max_tokens=max_tokens,
                                               earlier=earlier)
            except Exception as exc:  # noqa: BLE001 - the reply goes on without documents, and says why
                log.warning("Document search failed: %s", exc)
                prompt = DocumentPrompt(messages=tuple(messages),
                                        notices=(f"Your documents could not be searched: {describe_error(exc)}",))
            if not cancel.is_set():
                self._emit2(self.retrieved, request_id, prompt)
            else:
                self._emit2(self.retrieved, request_id, None)

        threading.Thread(target=work, name="document-search", daemon=True).start()

    def fetch_passage(self, source: Source) -> None:
        """Read the passage behind a citation off the GUI thread; ``passage_ready`` carries it."""
        def work() -> None:
            passage = None
            if source.chunk_id is not None:
                try:
                    passage = self.index.passage(source.chunk_id)
                except Exception as exc:  # noqa: BLE001 - the stored excerpt is shown instead
                    log.info("Passage %s is no longer in the index: %s", source.chunk_id, exc)
            self._emit2(self.passage_ready, source, passage)

        threading.Thread(target=work, name="document-passage", daemon=True).start()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until queued indexing is done (tests and shutdown)."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop indexing, end the worker thread and close the index."""
        self._cancel.set()
        self._jobs.put(None)
        self._thread.join(timeout)
        self.index.close()
        if self._embedder is not None:
            self._embedder.close()

    # ------------------------------------------------------------ internals

    def _submit(self, job: Callable[[], object]) -> None:
        self._idle.clear()
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception as exc:  # noqa: BLE001 - reported to the window as a sentence
                log.warning("Document indexing failed: %s", exc)
                self._emit1(self.failed, describe_error(exc))
            if self._jobs.empty():
                self._emit1(self.progress, "")
                self._idle.set()

    def _report(self, progress) -> None:
        self._emit1(self.progress, f"Indexing {progress.done_files:,} of {progress.total_files:,} files…")

    def _report_embedding(self, done: int, total: int) -> None:
        self._emit1(self.progress, f"Reading {done:,} of {total:,} passages for meaning…")

    def _emit1(self, signal, value) -> None:
        try:
            signal.emit(value)
        except RuntimeError:
            pass  # the window is gone

    def _emit2(self, signal, first, second) -> None:
        try:
            signal.emit(first, second)
        except RuntimeError:
            pass


class AttachmentChips(QWidget):
    """A row of attached files above the message box, each with a remove ×.

    Signals:
        remove_requested(str): the × of this path was clicked.
    """

    remove_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Attached files")
        self._row = QHBoxLayout(self)
        self._row.setContentsMargins(16, 4, 16, 0)
        self._row.setSpacing(6)
        self._row.addStretch(1)
        self.titles: list[str] = []
        self.hide()

    def show_attachments(self, attachments: Sequence) -> None:
        """Replace the chips with these ``Attachment`` objects (hidden when empty)."""
        while self._row.count() > 1:
            item = self._row.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.titles = []
        for attachment in attachments:
            chip = QToolButton()
            chip.setText(f"{attachment.title}  ×")
            chip.setToolTip(f"{attachment.path}\nabout {attachment.tokens_estimate:,} tokens. Click to remove it.")
            chip.setAccessibleName(f"Remove {attachment.title}")
            chip.clicked.connect(lambda _=False, p=str(attachment.path): self.remove_requested.emit(p))
            self._row.insertWidget(self._row.count() - 1, chip)
            self.titles.append(attachment.title)
        self.setVisible(bool(self.titles))


class PassagePanel(QDockWidget):
    """The side panel showing a cited passage: its file, page, surrounding text and an Open file button."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Source", parent)
        self.setObjectName("passage-panel")
        self.setAccessibleName("Source passage")
        body = QWidget()
        column = QVBoxLayout(body)
        self.heading = QLabel()
        self.heading.setWordWrap(True)
        self.text = QTextBrowser()
        self.text.setAccessibleName("Passage text")
        self.open_button = QPushButton("Open file")
        self.open_button.clicked.connect(self._open_file)
        column.addWidget(self.heading)
        column.addWidget(self.text, 1)
        column.addWidget(self.open_button, 0, Qt.AlignmentFlag.AlignRight)
        self.setWidget(body)
        self.path: str = ""
        self.hide()

    @Slot(object, object)
    def show_passage(self, source: Source, passage) -> None:
        """Show ``passage`` (from the index), or the excerpt stored with the reply when it is gone."""
        self.path = str(passage.path if passage is not None else source.path)
        page = (passage.page if passage is not None else source.page) or None
        self.heading.setText(f"[{source.number}] {source.title}" + (f" · page {page}" if page else ""))
        if passage is not None:
            self.text.setPlainText(passage.text)
        elif source.chunk_id is None:
            self.text.setPlainText(f"{source.excerpt}\n\n(The whole document went with the question; this is "
                                   "its beginning.)")
        else:
            self.text.setPlainText(f"{source.excerpt}\n\n(The file is no longer in the index: this is the "
                                   "excerpt kept with the reply.)")
        self.open_button.setEnabled(bool(self.path) and Path(self.path).exists())
        self.show()
        self.raise_()

    @Slot()
    def _open_file(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(self.path))


def _dropped_paths(mime) -> list[Path]:
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()] if mime.hasUrls() else []


class DocumentsController(QObject):
    """Wires documents into a main window: the paperclip, drops, pasted paths, chips, notices, the passage panel.

    Args:
        window: the ``MainWindow`` (its ``panel``, ``statusBar()`` and ``context_length()`` are used).
        tasks: the :class:`DocumentTasks` that owns the index.
    """

    def __init__(self, window, tasks: DocumentTasks) -> None:
        super().__init__(window)
        self.window = window
        self.tasks = tasks
        self.panel = window.panel
        self.passage_panel = PassagePanel(window)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.passage_panel)
        self.passage_panel.hide()
        self.status = QLabel()
        self.status.setAccessibleName("Indexing")
        window.statusBar().addWidget(self.status)
        self._pending_folder: Path | None = None
        self.panel.set_documents(tasks, window.context_length)
        self.panel.attach_requested.connect(self.choose_files)
        self.panel.detach_requested.connect(self._detach)
        self.panel.citation_clicked.connect(self._show_citation)
        self.panel.conversation_shown.connect(self._refresh_chips)
        self.panel.composer.file_path_pasted.connect(self._offer_pasted)
        self.panel.composer.offer_attach = True
        tasks.progress.connect(self.status.setText)
        tasks.attached.connect(self._on_attached)
        tasks.attachments_listed.connect(self._show_chips)
        tasks.passage_ready.connect(self.passage_panel.show_passage)
        tasks.failed.connect(self._say)
        tasks.collection_added.connect(self._use_new_collection)
        self._adding = 0  # collections added from this window that the open conversation should use
        window.setAcceptDrops(True)
        window.installEventFilter(self)
        self._refresh_chips()

    # ------------------------------------------------------------- attaching

    def attach(self, paths: Sequence[Path]) -> None:
        """Attach files (a folder's files, recursively) to the open conversation, creating it if needed."""
        session = self.panel.session
        if session is None or not paths:
            return
        if session.conversation is None:  # attaching first: the conversation is created now
            session.update_settings(system_prompt=session.system_prompt, model=session.model, settings={})
            self.panel.conversation_changed.emit()
        self.status.setText("Adding your files…")
        self.tasks.attach(session.conversation_id, list(paths))

    @Slot()
    def choose_files(self) -> None:
        """The paperclip: pick files to attach (a non-blocking file dialog)."""
        from PySide6.QtWidgets import QFileDialog

        dialog = QFileDialog(self.window, "Attach files")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
        dialog.filesSelected.connect(lambda names: self.attach([Path(n) for n in names]))
        dialog.open()

    def dropped(self, paths: Sequence[Path]) -> None:
        """Files dropped on the window are attached; a folder asks: attach its files, or keep it as a collection."""
        folders = [p for p in paths if p.is_dir()]
        files = [p for p in paths if p not in folders]  # a missing file is reported by the index, as a sentence
        if files:
            self.attach(files)
        for folder in folders:
            self._ask_about_folder(folder)

    def keep_as_collection(self, folder: Path, name: str | None = None) -> None:
        """Add ``folder`` as a named collection, index it, and let the open conversation use it."""
        self._adding += 1
        self.tasks.add_collection(name or folder.name, folder)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt override
        from PySide6.QtCore import QEvent

        if watched is self.window and event.type() in (QEvent.Type.DragEnter, QEvent.Type.DragMove):
            if _dropped_paths(event.mimeData()):
                event.acceptProposedAction()
                return True
        elif watched is self.window and event.type() == QEvent.Type.Drop:
            paths = _dropped_paths(event.mimeData())
            if paths:
                event.acceptProposedAction()
                self.dropped(paths)
                return True
        return False

    # ------------------------------------------------------------ internals

    def _ask_about_folder(self, folder: Path) -> None:
        from PySide6.QtWidgets import QMessageBox

        box = QMessageBox(QMessageBox.Icon.Question, "Add a folder",
                          f"Attach the files in {folder.name} to this conversation, or keep the folder as a "
                          "document collection that any conversation can use (and that Hearth keeps indexed)?",
                          parent=self.window)
        attach = box.addButton("Attach its files", QMessageBox.ButtonRole.AcceptRole)
        keep = box.addButton("Keep as a collection", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setObjectName("folder-question")

        def answered(_result: int) -> None:
            if box.clickedButton() is attach:
                self.attach([folder])
            elif box.clickedButton() is keep:
                self.keep_as_collection(folder)

        box.finished.connect(answered)
        box.open()

    @Slot(str)
    def _offer_pasted(self, path: str) -> None:
        from PySide6.QtWidgets import QMessageBox

        box = QMessageBox(QMessageBox.Icon.Question, "Attach a file",
                          f"Attach {Path(path).name} to this conversation?", parent=self.window)
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        box.setObjectName("paste-question")
        box.finished.connect(lambda result: self.attach([Path(path)]) if result == QMessageBox.StandardButton.Yes
                             else self.panel.composer.insertPlainText(path))
        box.open()

    @Slot(str)
    def _use_new_collection(self, collection_id: str) -> None:
        session = self.panel.session
        if session is None or self._adding == 0:
            return
        self._adding -= 1
        settings = dict(session.conversation.settings) if session.conversation else {}
        settings["collections"] = sorted(set(settings.get("collections", [])) | {collection_id})
        session.update_settings(system_prompt=session.system_prompt, model=session.model, settings=settings)

    @Slot(str, object)
    def _on_attached(self, conversation_id: str, report) -> None:
        if self.panel.session is None or self.panel.session.conversation_id != conversation_id:
            return
        for sentence in report_sentences(report):
            self.panel.chat_view.add_notice(sentence)

    @Slot(str, object)
    def _show_chips(self, conversation_id: str, attachments) -> None:
        if self.panel.session is not None and self.panel.session.conversation_id == conversation_id:
            self.panel.chips.show_attachments(attachments)

    @Slot()
    def _refresh_chips(self) -> None:
        session = self.panel.session
        self.panel.chips.show_attachments([])
        if session is not None and session.conversation_id is not None:
            self.tasks.list_attachments(session.conversation_id)

    @Slot(str)
    def _detach(self, path: str) -> None:
        if self.panel.session is not None and self.panel.session.conversation_id is not None:
            self.tasks.detach(self.panel.session.conversation_id, path)

    @Slot(object)
    def _show_citation(self, source: Source) -> None:
        self.tasks.fetch_passage(source)

    def open_collections(self) -> None:
        """File › Document collections…."""
        from gui.collections_dialog import CollectionsDialog

        dialog = CollectionsDialog(self.tasks, self.panel.session, parent=self.window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        self.dialog = dialog

    @Slot(str)
    def _say(self, sentence: str) -> None:
        self.panel.chat_view.add_notice(sentence)
