"""The Settings dialog's "Local API server" group: on/off, address, port, the network warning, the token."""

from __future__ import annotations

from dataclasses import asdict

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QLineEdit

from gui.settings_dialog import SettingsDialog
from model_store.settings import Settings


class Tokens:
    """A token provider that counts how often it is asked."""

    def __init__(self) -> None:
        self.current = "tok-first-0123456789"
        self.asked = 0

    def token(self) -> str:
        self.asked += 1
        return self.current

    def regenerate(self) -> str:
        self.current = "tok-second-9876543210"
        return self.current


def dialog_with(qtbot, settings: Settings, tokens: Tokens | None = None) -> SettingsDialog:
    tokens = tokens or Tokens()
    dialog = SettingsDialog(settings, max_threads=8, api_token=tokens.token, regenerate_api_token=tokens.regenerate)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def test_the_api_server_is_off_on_loopback_by_default_and_round_trips(qtbot) -> None:
    dialog = dialog_with(qtbot, Settings())
    api = dialog.api
    assert not api.switch.isChecked() and api.host.text() == "127.0.0.1" and api.port.value() == 8765
    assert api.warning.isHidden()
    assert api.address.text() == "http://127.0.0.1:8765/v1"
    qtbot.mouseClick(api.switch, Qt.MouseButton.LeftButton)
    api.port.setValue(9001)
    result = dialog.result_settings()
    assert (result.api_server_enabled, result.api_host, result.api_port) == (True, "127.0.0.1", 9001)
    again = dialog_with(qtbot, result)
    assert again.api.switch.isChecked() and again.api.port.value() == 9001


def test_a_network_address_shows_the_warning(qtbot) -> None:
    dialog = dialog_with(qtbot, Settings())
    api = dialog.api
    api.host.setText("0.0.0.0")
    assert not api.warning.isHidden() and api.warning.isVisible()
    assert "anyone on your network" in api.warning.text()
    for loopback in ("localhost", "::1", ""):
        api.host.setText(loopback)
        assert api.warning.isHidden()
    api.host.setText("")
    assert dialog.result_settings().api_host == "127.0.0.1"  # empty means the safe default


def test_the_token_is_masked_shown_on_request_copied_and_regenerated_never_stored(qtbot) -> None:
    tokens = Tokens()
    dialog = dialog_with(qtbot, Settings(), tokens)
    api = dialog.api
    assert api.token.echoMode() == QLineEdit.EchoMode.Password and api.token.text() == ""
    assert tokens.asked == 0  # not even read until the user asks
    qtbot.mouseClick(api.copy_token, Qt.MouseButton.LeftButton)  # read from the keyring off the GUI thread
    qtbot.waitUntil(lambda: QGuiApplication.clipboard().text() == "tok-first-0123456789", timeout=5_000)
    assert api.token.echoMode() == QLineEdit.EchoMode.Password and api.copy_token.isEnabled()
    qtbot.mouseClick(api.show_token, Qt.MouseButton.LeftButton)
    assert api.token.echoMode() == QLineEdit.EchoMode.Normal and api.token.text() == "tok-first-0123456789"
    qtbot.mouseClick(api.show_token, Qt.MouseButton.LeftButton)
    assert api.token.echoMode() == QLineEdit.EchoMode.Password
    qtbot.mouseClick(api.regenerate, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: api.token.text() == "tok-second-9876543210", timeout=5_000)
    assert api.token.echoMode() == QLineEdit.EchoMode.Password
    qtbot.mouseClick(api.copy_token, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == "tok-second-9876543210"
    saved = repr(asdict(dialog.result_settings()))
    assert "tok-first" not in saved and "tok-second" not in saved
    QGuiApplication.clipboard().clear()


def test_a_token_that_cannot_be_read_is_a_sentence(qtbot) -> None:
    def locked() -> str:
        raise RuntimeError("the keyring is locked")

    dialog = SettingsDialog(Settings(), max_threads=8, api_token=locked, regenerate_api_token=locked)
    qtbot.addWidget(dialog)
    qtbot.mouseClick(dialog.api.show_token, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "could not be read" in dialog.api.token.placeholderText(), timeout=5_000)
    assert "the keyring is locked" in dialog.api.token.placeholderText() and dialog.api.show_token.isEnabled()


def test_without_a_token_provider_the_buttons_are_off(qtbot) -> None:
    dialog = SettingsDialog(Settings(), max_threads=8)
    qtbot.addWidget(dialog)
    assert not dialog.api.show_token.isEnabled() and not dialog.api.copy_token.isEnabled()
    assert not dialog.api.regenerate.isEnabled() and dialog.api.token.placeholderText() == "Not available"
