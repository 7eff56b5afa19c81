"""A save that fails before the window exists is shown once it does; the writer goes on saving meanwhile."""

from __future__ import annotations

from pathlib import Path

import pytest

from gui.app import StorageErrors
from gui.main_window import MainWindow
from inference.hardware import CpuFacts
from model_store.conversations import ConversationStore, new_id
from model_store.settings import SettingsStore
from model_store.store_writer import StoreWriter

pytestmark = pytest.mark.gui


def test_errors_before_the_window_exists_wait_for_it(qtbot, tmp_path: Path) -> None:
    path = tmp_path / "conversations.db"
    store = ConversationStore(path)
    errors = StorageErrors()
    writer = StoreWriter(store.path, on_error=errors.report)  # as build_ui wires it, before the window is made
    conversation_id = new_id()
    writer.submit("create_conversation", conversation_id=conversation_id, title="Early")
    writer.submit("add_message", conversation_id, parent_id=None, role="robot", content="refused before the window")
    assert writer.flush(timeout=30)  # the report ran on the writer's thread, with no window to tell

    window = MainWindow(SettingsStore(tmp_path / "settings.json"), CpuFacts.probe(), store, writer)
    qtbot.addWidget(window)
    errors.attach(window)
    transcript = window.panel.chat_view.toPlainText()
    assert transcript.count("Hearth keeps trying") == 1
    assert window.status_message.text()

    writer.submit("add_message", conversation_id, parent_id=None, role="robot", content="refused with a window")
    writer.submit("rename", conversation_id, "Saved after both errors")
    qtbot.waitUntil(lambda: window.panel.chat_view.toPlainText().count("Hearth keeps trying") == 2, timeout=10_000)
    assert writer.flush(timeout=30)
    assert store.conversation(conversation_id).title == "Saved after both errors"
    window.close_storage()
    writer.close()
    store.close()
