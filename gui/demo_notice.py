"""A banner that tells the user the built-in model is a tiny demo model."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

DEMO_NOTICE_TEXT = (
    "<b>You are chatting with Hearth's built-in demo model.</b> Gemma 3 270M is tiny and "
    "not instruction-tuned, so its answers are short and often wrong. It ships with Hearth "
    "so that everything works offline from the first launch. For real conversations, get a "
    "chat model with <i>File › Models…</i> (Ctrl+M), which shows what fits this computer."
)


class DemoNotice(QFrame):
    """Dismissable notice about the demo model.

    Signals:
        dismissed(): the user closed the notice; it should not come back.
    """

    dismissed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("demoNotice")
        self.setAccessibleName("Demo model notice")
        self.setAutoFillBackground(True)
        palette = self.palette()
        palette.setColor(QPalette.ColorRole.Window, palette.color(QPalette.ColorRole.ToolTipBase))
        palette.setColor(QPalette.ColorRole.WindowText, palette.color(QPalette.ColorRole.ToolTipText))
        self.setPalette(palette)
        self.label = QLabel(DEMO_NOTICE_TEXT)
        self.label.setWordWrap(True)
        close = QPushButton("Got it")
        close.setAccessibleName("Dismiss demo model notice")
        close.clicked.connect(self._dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(16, 10, 16, 10)
        layout.setSpacing(12)
        layout.addWidget(self.label, 1)
        layout.addWidget(close)

    def _dismiss(self) -> None:
        self.hide()
        self.dismissed.emit()
