"""The sidebar: a new-chat button, search over every message, and the list of conversations."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, QPoint, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QLineEdit, QListView, QMenu, QPushButton, QVBoxLayout, QWidget

from model_store.conversations import Conversation, SearchHit

ID_ROLE = Qt.ItemDataRole.UserRole
PINNED_ROLE = Qt.ItemDataRole.UserRole + 1
MESSAGE_ROLE = Qt.ItemDataRole.UserRole + 2
SEARCH_DELAY_MS = 150

Index = QModelIndex | QPersistentModelIndex


class ConversationListModel(QAbstractListModel):
    """Conversations as list rows; the title can be edited in place.

    Signals:
        renamed(str, str): the user edited a title (conversation id, new title).
    """

    renamed = Signal(str, str)

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[Conversation] = []

    def set_conversations(self, conversations: list[Conversation]) -> None:
        """Replace the rows (pinned first, newest first, as the store orders them).

        The same conversations in the same order only update the rows that
        changed: a message sent in the newest conversation redraws nothing.
        """
        conversations = list(conversations)
        if [c.id for c in conversations] != [c.id for c in self._rows]:
            self.beginResetModel()
            self._rows = conversations
            self.endResetModel()
            return
        changed = [row for row, (old, new) in enumerate(zip(self._rows, conversations)) if old != new]
        self._rows = conversations
        for row in changed:
            self.dataChanged.emit(self.index(row), self.index(row))

    def rows(self) -> list[Conversation]:
        """The conversations shown, in their order."""
        return list(self._rows)

    def row_of(self, conversation_id: str) -> int:
        """The row showing ``conversation_id``, or -1."""
        return next((row for row, c in enumerate(self._rows) if c.id == conversation_id), -1)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802 - Qt API
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        conversation = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return ("★ " if conversation.pinned else "") + conversation.title  # a glyph every font has
        if role == Qt.ItemDataRole.EditRole:
            return conversation.title
        if role == Qt.ItemDataRole.ToolTipRole:
            return conversation.title + (" (pinned)" if conversation.pinned else "")
        if role == ID_ROLE:
            return conversation.id
        if role == PINNED_ROLE:
            return conversation.pinned
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEditable

    def setData(self, index: Index, value, role: int = Qt.ItemDataRole.EditRole) -> bool:  # noqa: N802
        if role != Qt.ItemDataRole.EditRole or not index.isValid() or not str(value).strip():
            return False
        row = index.row()
        self._rows[row] = replace(self._rows[row], title=str(value).strip())
        self.dataChanged.emit(index, index, [Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole])
        self.renamed.emit(self._rows[row].id, self._rows[row].title)
        return True


class SearchResultsModel(QAbstractListModel):
    """Search hits as list rows: conversation title and the matching words."""

    def __init__(self) -> None:
        super().__init__()
        self._hits: list[SearchHit] = []

    def set_hits(self, hits: list[SearchHit]) -> None:
        """Replace the rows."""
        self.beginResetModel()
        self._hits = list(hits)
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802 - Qt API
        return 0 if parent.isValid() else len(self._hits)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._hits):
            return None
        hit = self._hits[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{hit.title}\n{hit.snippet}"
        if role == Qt.ItemDataRole.ToolTipRole:
            return hit.snippet
        if role == ID_ROLE:
            return hit.conversation_id
        if role == MESSAGE_ROLE:
            return hit.message_id
        return None


class Sidebar(QWidget):
    """New chat, search and the conversation list.

    Signals:
        new_chat_requested(): the user wants an empty conversation.
        conversation_chosen(str): a conversation was clicked.
        search_changed(str): the search text settled (the window runs the search and calls :meth:`show_hits`).
        hit_chosen(str, str): a search hit was clicked (conversation id, message id).
        rename_requested(str, str): a title was edited.
        pin_requested(str, bool): pin or unpin a conversation.
        delete_requested(str): delete a conversation (the window offers undo).
    """

    new_chat_requested = Signal()
    conversation_chosen = Signal(str)
    search_changed = Signal(str)
    hit_chosen = Signal(str, str)
    rename_requested = Signal(str, str)
    pin_requested = Signal(str, bool)
    delete_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.conversations = ConversationListModel()
        self.conversations.renamed.connect(self.rename_requested)
        self.hits = SearchResultsModel()
        self.new_button = QPushButton("New chat")
        self.new_button.setAccessibleName("New chat")
        self.new_button.setToolTip("Start a new conversation (Ctrl+N)")
        self.new_button.clicked.connect(self.new_chat_requested)
        self.search_box = QLineEdit()
        self.search_box.setPlaceholderText("Search all chats (Ctrl+F)")
        self.search_box.setAccessibleName("Search conversations")
        self.search_box.setClearButtonEnabled(True)
        self.list_view = QListView()
        self.list_view.setAccessibleName("Conversations")
        self.list_view.setModel(self.conversations)
        self.list_view.setEditTriggers(QListView.EditTrigger.EditKeyPressed | QListView.EditTrigger.SelectedClicked)
        self.list_view.setWordWrap(True)
        self.list_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list_view.customContextMenuRequested.connect(self._context_menu)
        self.list_view.clicked.connect(self._clicked)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self._emit_search)
        self.search_box.textChanged.connect(self._search_text_changed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 4, 8)
        layout.addWidget(self.new_button)
        layout.addWidget(self.search_box)
        layout.addWidget(self.list_view, 1)

    def show_conversations(self, conversations: list[Conversation], current_id: str | None) -> None:
        """Refresh the list and select the current conversation."""
        self.conversations.set_conversations(conversations)
        if not self.search_box.text().strip():
            self.list_view.setModel(self.conversations)
        self.select(current_id)

    def select(self, conversation_id: str | None) -> None:
        """Highlight the row of ``conversation_id`` (or nothing)."""
        row = self.conversations.row_of(conversation_id) if conversation_id else -1
        if self.list_view.model() is self.conversations and row >= 0:
            if self.list_view.currentIndex().row() != row or not self.list_view.selectionModel().isRowSelected(row):
                self.list_view.setCurrentIndex(self.conversations.index(row))
        else:
            self.list_view.clearSelection()

    def show_hits(self, hits: list[SearchHit]) -> None:
        """Show search results in place of the conversation list."""
        self.hits.set_hits(hits)
        self.list_view.setModel(self.hits)

    def focus_search(self) -> None:
        """Put the cursor in the search box, selecting what is there."""
        self.search_box.setFocus()
        self.search_box.selectAll()

    @Slot(str)
    def _search_text_changed(self, text: str) -> None:
        if text.strip():
            self._search_timer.start()
        else:
            self._search_timer.stop()
            self.list_view.setModel(self.conversations)

    @Slot()
    def _emit_search(self) -> None:
        self.search_changed.emit(self.search_box.text().strip())

    @Slot(QModelIndex)
    def _clicked(self, index: QModelIndex) -> None:
        if self.list_view.model() is self.hits:
            self.hit_chosen.emit(index.data(ID_ROLE), index.data(MESSAGE_ROLE))
        else:
            self.conversation_chosen.emit(index.data(ID_ROLE))

    @Slot(QPoint)
    def _context_menu(self, point: QPoint) -> None:
        index = self.list_view.indexAt(point)
        if not index.isValid() or self.list_view.model() is not self.conversations:
            return
        conversation_id, pinned = index.data(ID_ROLE), index.data(PINNED_ROLE)
        menu = QMenu(self)
        menu.addAction("Rename", lambda: self.list_view.edit(index))
        menu.addAction("Unpin" if pinned else "Pin to top", lambda: self.pin_requested.emit(conversation_id, not pinned))
        menu.addAction("Delete", lambda: self.delete_requested.emit(conversation_id))
        menu.exec(self.list_view.viewport().mapToGlobal(point))
