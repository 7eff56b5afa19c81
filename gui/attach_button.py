"""The composer's Attach button, with a paper clip drawn by Qt (no emoji font needed)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QPushButton, QWidget

_GRID = 24.0  # the clip is drawn on a 24 × 24 grid, then scaled


def paperclip_path() -> QPainterPath:
    """A paper clip as one open stroke on a 24 × 24 grid: three straight legs joined by half circles."""
    path = QPainterPath(QPointF(17.0, 8.0))
    path.lineTo(17.0, 16.0)
    path.arcTo(QRectF(7.0, 11.0, 10.0, 10.0), 0.0, -180.0)  # outer bend at the bottom, right leg to left leg
    path.lineTo(7.0, 6.5)
    path.arcTo(QRectF(7.0, 3.0, 7.0, 7.0), 180.0, -180.0)  # bend at the top, to the middle leg
    path.lineTo(14.0, 15.0)
    path.arcTo(QRectF(10.0, 13.0, 4.0, 4.0), 0.0, -180.0)  # inner bend, to the short inner leg
    path.lineTo(10.0, 8.0)
    return path


def paperclip_icon(colour: QColor, size: int = 20) -> QIcon:
    """The paper clip in this colour, sharp at 1× and 2× device pixel ratios."""
    icon = QIcon()
    for ratio in (1, 2):
        pixmap = QPixmap(size * ratio, size * ratio)
        pixmap.setDevicePixelRatio(ratio)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.scale(size / _GRID, size / _GRID)
        painter.setPen(QPen(colour, 1.6, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin))
        painter.drawPath(paperclip_path())
        painter.end()
        icon.addPixmap(pixmap)
    return icon


class AttachButton(QPushButton):
    """A button showing a paper clip in the palette's button text colour, redrawn when the theme changes."""

    ICON_SIZE = 20

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Attach files")
        self.setToolTip("Attach files to this conversation (or drop them on the window)")
        self.setIconSize(QSize(self.ICON_SIZE, self.ICON_SIZE))
        self._draw_icon()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt's name)
        """Redraw the clip in the new colours when the palette changes (light and dark themes)."""
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.EnabledChange):
            self._draw_icon()
        super().changeEvent(event)

    def _draw_icon(self) -> None:
        group = QPalette.ColorGroup.Active if self.isEnabled() else QPalette.ColorGroup.Disabled
        self.setIcon(paperclip_icon(self.palette().color(group, QPalette.ColorRole.ButtonText), self.ICON_SIZE))
