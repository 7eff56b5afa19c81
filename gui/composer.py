"""The message input: Enter sends, Shift+Enter starts a new line; a pasted file path offers to attach the file."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QPlainTextEdit, QWidget


class Composer(QPlainTextEdit):
    """A growing text box for the next message.

    Signals:
        submitted(): Enter was pressed without Shift.
        file_path_pasted(str): the pasted text was one line naming an existing file (it was not inserted).
    """

    submitted = Signal()
    file_path_pasted = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Message")
        self.setTabChangesFocus(True)
        self.offer_attach = False  # True once something listens to file_path_pasted
        self.document().contentsChanged.connect(self._fit_height)
        self._fit_height()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
            event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            self.submitted.emit()
            return
        super().keyPressEvent(event)

    def insertFromMimeData(self, source: QMimeData) -> None:  # noqa: N802 - Qt override
        text = source.text().strip() if source.hasText() else ""
        if text and "\n" not in text and len(text) < 4096 and self.offer_attach:
            path = Path(text.strip('"').strip("'")).expanduser()
            try:
                is_file = path.is_absolute() and path.is_file()
            except OSError:
                is_file = False
            if is_file:
                self.file_path_pasted.emit(str(path))
                return
        super().insertFromMimeData(source)

    def _fit_height(self) -> None:
        """Grow with the text from one line up to eight, then scroll."""
        # A plain-text document's height is counted in (wrapped) lines.
        lines = max(1, min(8, round(self.document().size().height())))
        line_height = self.fontMetrics().lineSpacing()
        margins = self.contentsMargins().top() + self.contentsMargins().bottom()
        height = lines * line_height + margins + 2 * int(self.document().documentMargin()) + 4
        if (self.minimumHeight(), self.maximumHeight()) != (height, height):
            self.setFixedHeight(height)
