"""File › Document collections…: folders of documents that any conversation can chat with (GPT4All's LocalDocs)."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.documents import DocumentTasks, report_sentences


class CollectionsDialog(QDialog):
    """Lists the collections (files, chunks, last indexed); adds, re-indexes and removes them.

    The box in front of each collection says whether the open conversation uses it; the
    choice is kept in the conversation's settings (``settings["collections"]``).
    """

    def __init__(self, tasks: DocumentTasks, session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Document collections")
        self.resize(720, 460)
        self._tasks = tasks
        self._session = session
        self.table = QTreeWidget()
        self.table.setAccessibleName("Collections")
        self.table.setHeaderLabels(["Name", "Folder", "Files", "Passages", "Last indexed"])
        self.table.setRootIsDecorated(False)
        self.table.itemChanged.connect(self._on_checked)
        self.problems = QListWidget()
        self.problems.setAccessibleName("Files that could not be indexed")
        add = QPushButton("Add folder…")
        add.clicked.connect(self._choose_folder)
        self.reindex_button = QPushButton("Re-index")
        self.reindex_button.clicked.connect(self._reindex)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self._remove)
        self.rebuild_button = QPushButton("Rebuild index")
        self.rebuild_button.setToolTip("Read every collection and attached file again from the disk "
                                       "(the files themselves are not changed).")
        self.rebuild_button.clicked.connect(self._rebuild)
        buttons = QHBoxLayout()
        for button in (add, self.reindex_button, self.remove_button, self.rebuild_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        column = QVBoxLayout(self)
        hint = QLabel("Tick the collections this conversation answers from. Hearth keeps them indexed: "
                      "new and changed files are read again when Hearth starts and on Re-index.")
        hint.setWordWrap(True)
        column.addWidget(hint)
        column.addWidget(self.table, 1)
        column.addLayout(buttons)
        column.addWidget(QLabel("Problems"))
        column.addWidget(self.problems)
        column.addWidget(close)
        tasks.collections_listed.connect(self.show_collections)
        tasks.indexed.connect(self._on_indexed)
        tasks.collection_added.connect(self._on_added)
        tasks.list_collections()

    @Slot(object)
    def show_collections(self, collections) -> None:
        """Fill the table (``collections`` from ``DocumentIndex.collections``)."""
        used = set(self._used())
        self.table.blockSignals(True)
        self.table.clear()
        for c in collections:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.updated_at)) if c.updated_at else "never"
            item = QTreeWidgetItem([c.name, str(c.folder), f"{c.files:,}", f"{c.chunks:,}", when])
            item.setData(0, Qt.ItemDataRole.UserRole, c.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(0, Qt.CheckState.Checked if c.id in used else Qt.CheckState.Unchecked)
            self.table.addTopLevelItem(item)
        self.table.blockSignals(False)

    def add_folder(self, folder: Path, name: str | None = None) -> None:
        """Add ``folder`` as a collection and index it in the background."""
        self._tasks.add_collection(name or folder.name, folder)

    # ------------------------------------------------------------ internals

    def _used(self) -> list[str]:
        conversation = self._session.conversation if self._session else None
        return list(conversation.settings.get("collections", [])) if conversation else []

    @Slot()
    def _choose_folder(self) -> None:
        dialog = QFileDialog(self, "Add a folder of documents")
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.fileSelected.connect(lambda name: self.add_folder(Path(name)))
        dialog.open()

    def _selected(self) -> str | None:
        item = self.table.currentItem()
        return item.data(0, Qt.ItemDataRole.UserRole) if item else None

    @Slot()
    def _reindex(self) -> None:
        if self._selected():
            self._tasks.index_collection(self._selected())

    @Slot()
    def _rebuild(self) -> None:
        self.problems.clear()
        self._tasks.rebuild()

    @Slot()
    def _remove(self) -> None:
        if self._selected():
            self._tasks.remove_collection(self._selected())

    @Slot(str, object)
    def _on_indexed(self, _collection_id: str, report) -> None:
        for sentence in report_sentences(report, limit=500):
            self.problems.addItem(sentence)
        self._tasks.list_collections()

    @Slot(str)
    def _on_added(self, _collection_id: str) -> None:
        self._tasks.list_collections()

    @Slot(QTreeWidgetItem, int)
    def _on_checked(self, item: QTreeWidgetItem, _column: int) -> None:
        session = self._session
        if session is None:
            return
        used = set(self._used())
        collection_id = item.data(0, Qt.ItemDataRole.UserRole)
        if item.checkState(0) == Qt.CheckState.Checked:
            used.add(collection_id)
        else:
            used.discard(collection_id)
        settings = dict(session.conversation.settings) if session.conversation else {}
        settings["collections"] = sorted(used)
        session.update_settings(system_prompt=session.system_prompt, model=session.model, settings=settings)
