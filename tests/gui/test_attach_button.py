"""The Attach button draws its paper clip itself: it shows on systems without an emoji font, in either theme."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QColor, QImage, QPalette

from gui.attach_button import AttachButton
from gui.theme import dark_palette

pytestmark = pytest.mark.gui


def _drawn_colours(button: AttachButton) -> set[tuple[int, int, int]]:
    """The opaque colours of the button's icon as drawn at 1×."""
    image = button.icon().pixmap(button.iconSize(), 1.0).toImage().convertToFormat(QImage.Format.Format_ARGB32)
    return {(image.pixelColor(x, y).red(), image.pixelColor(x, y).green(), image.pixelColor(x, y).blue())
            for x in range(image.width()) for y in range(image.height()) if image.pixelColor(x, y).alpha() == 255}


def test_the_clip_is_drawn_in_the_button_text_colour_without_any_font(qtbot) -> None:
    button = AttachButton()
    qtbot.addWidget(button)
    assert button.text() == ""
    assert button.accessibleName() == "Attach files"
    text = button.palette().color(QPalette.ColorGroup.Active, QPalette.ColorRole.ButtonText)
    colours = _drawn_colours(button)
    assert (text.red(), text.green(), text.blue()) in colours
    assert len(colours) == 1  # nothing but the clip's own colour is opaque


def test_the_clip_follows_a_switch_to_the_dark_theme(qtbot) -> None:
    button = AttachButton()
    qtbot.addWidget(button)
    button.setPalette(dark_palette())
    light_text = QColor("#e8eaed")
    assert _drawn_colours(button) == {(light_text.red(), light_text.green(), light_text.blue())}
