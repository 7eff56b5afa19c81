"""The conversation: a read-only rich-text document with one frame per message.

Streaming appends to the last message through a kept cursor, so each flush
costs the length of the new text, not of the reply. Text arriving between
frames is buffered and flushed at most every ``FLUSH_INTERVAL_MS``.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer, Slot
from PySide6.QtGui import QColor, QFont, QPalette, QTextCharFormat, QTextCursor, QTextFrameFormat
from PySide6.QtWidgets import QFrame, QTextBrowser, QWidget

FLUSH_INTERVAL_MS = 30


def _blend(base: QColor, tint: QColor, amount: float) -> QColor:
    """``base`` moved ``amount`` (0..1) of the way toward ``tint``."""
    return QColor(
        round(base.red() + (tint.red() - base.red()) * amount),
        round(base.green() + (tint.green() - base.green()) * amount),
        round(base.blue() + (tint.blue() - base.blue()) * amount),
    )


class ChatView(QTextBrowser):
    """Shows messages; a reply streams into the last one via :meth:`append_reply`."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setAccessibleName("Conversation")
        self.document().setDocumentMargin(16)
        font = self.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.setFont(font)
        self._reply_cursor: QTextCursor | None = None
        self._reply_parts: list[str] = []
        self._pending: list[str] = []
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(FLUSH_INTERVAL_MS)
        self._flush_timer.timeout.connect(self._flush)

    def add_message(self, role: str, author: str, text: str) -> None:
        """Append a finished message (``role`` is ``user`` or ``assistant``)."""
        cursor = self._new_message_frame(role, author)
        cursor.insertText(text, self._body_format())
        self._scroll_to_end()

    def begin_reply(self, author: str) -> None:
        """Start a new assistant message that :meth:`append_reply` will fill."""
        self._reply_cursor = self._new_message_frame("assistant", author)
        self._reply_parts = []
        self._scroll_to_end()

    def append_reply(self, text: str) -> None:
        """Queue text for the reply; it appears at the next flush (within ~30 ms)."""
        self._pending.append(text)
        self._reply_parts.append(text)
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def end_reply(self, note: str | None = None) -> str:
        """Finish the reply, optionally adding a grey note (e.g. "Stopped"); return its text."""
        self._flush()
        text = "".join(self._reply_parts).rstrip()
        if self._reply_cursor is not None and note:
            note_format = self._grey_format()
            note_format.setFontItalic(True)
            self._reply_cursor.insertText(f"{'  ' if text else ''}[{note}]", note_format)
        self._reply_cursor = None
        self._reply_parts = []
        self._scroll_to_end()
        return text

    def add_notice(self, text: str) -> None:
        """Append a grey line outside any message, e.g. an error about the model."""
        cursor = self._append_frame(self._frame_format(padding=6))
        cursor.insertText(text, self._grey_format())
        self._scroll_to_end()

    @Slot()
    def _flush(self) -> None:
        if not self._pending or self._reply_cursor is None:
            self._pending.clear()
            return
        at_bottom = self._is_at_bottom()
        self._reply_cursor.insertText("".join(self._pending), self._body_format())
        self._pending.clear()
        if at_bottom:
            self._scroll_to_end()

    def _new_message_frame(self, role: str, author: str) -> QTextCursor:
        frame_format = self._frame_format(padding=10)
        if role == "user":
            palette = self.palette()
            base, tint = palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Highlight)
            frame_format.setBackground(_blend(base, tint, 0.12))
            frame_format.setLeftMargin(64)
        else:
            frame_format.setRightMargin(64)
        cursor = self._append_frame(frame_format)
        author_format = self._grey_format()
        author_format.setFontWeight(QFont.Weight.DemiBold)
        cursor.insertText(author, author_format)
        cursor.insertBlock()
        return cursor

    def _append_frame(self, frame_format: QTextFrameFormat) -> QTextCursor:
        """Add a frame at the end of the document; return a cursor inside it."""
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertFrame(frame_format)
        return cursor

    @staticmethod
    def _frame_format(*, padding: int) -> QTextFrameFormat:
        frame_format = QTextFrameFormat()
        frame_format.setPadding(padding)
        frame_format.setBottomMargin(12)
        frame_format.setBorder(0)
        return frame_format

    def _grey_format(self) -> QTextCharFormat:
        char_format = self._body_format()
        char_format.setForeground(self.palette().color(QPalette.ColorRole.PlaceholderText))
        return char_format

    def _body_format(self) -> QTextCharFormat:
        char_format = QTextCharFormat()
        char_format.setForeground(self.palette().color(QPalette.ColorRole.Text))
        return char_format

    def _is_at_bottom(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - 4

    def _scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())
