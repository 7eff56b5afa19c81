"""File › Providers…: add, edit and remove providers against a real local server and a real Secret Service."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer

from gui.providers_dialog import ProviderEditor, ProvidersDialog
from model_store.credentials import TokenStore
from model_store.providers import Provider, ProviderStore, key_account
from tests.openai_error_server import MODELS, OpenAIErrorServer, free_port

KEY = "sk-dialog-Secret-5521"


@pytest.fixture
def server():
    with OpenAIErrorServer() as running:
        yield running


@pytest.fixture
def store(secret_service) -> ProviderStore:
    providers_file = Path(os.environ["HEARTH_HOME"]) / "config" / "providers.json"
    return ProviderStore(providers_file, keys=lambda pid: TokenStore(secret_service, account=key_account(pid)))


def fill(editor: ProviderEditor, *, name: str, url: str, key: str = "") -> None:
    editor.name.setText(name)
    editor.base_url.setText(url)
    editor.api_key.setText(key)


def test_add_a_provider_fetching_its_models_off_the_gui_thread(qtbot, server, store) -> None:
    dialog = ProvidersDialog(store)
    qtbot.addWidget(dialog)
    assert dialog.list.count() == 0 and not dialog.edit.isEnabled() and not dialog.remove.isEnabled()
    dialog.add.click()
    editor = dialog.editor
    assert editor is not None and editor.windowTitle() == "Add provider"
    assert editor.api_key.echoMode() == editor.api_key.EchoMode.Password
    fill(editor, name="Lab box", url=server.base_url("ok"), key=KEY)

    server.models_delay_s = 0.5
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    with qtbot.waitSignal(editor.models_listed, timeout=5000) as listed:
        started = time.monotonic()
        editor.fetch.click()
        assert time.monotonic() - started < 0.2  # the click returned at once: the request runs elsewhere
        assert not editor.fetch.isEnabled() and "Asking Lab box" in editor.status.text()
    timer.stop()
    assert len(ticks) >= 10  # the event loop kept turning while the server took its time
    assert listed.args == [sorted(MODELS)]
    editor.model.setCurrentText("alpha-1b")
    assert editor.context_window.value() == 0 and "Not known" in editor.context_window.text()
    assert [editor.model.itemText(i) for i in range(editor.model.count())] == sorted(MODELS)
    assert editor.fetch.isEnabled() and "3 models available" in editor.status.text()
    assert server.requests[-1]["authorization"] == f"Bearer {KEY}"

    editor.model.setCurrentText("mid-3b")
    assert editor.context_window.value() == 32768  # the server said so (vLLM's max_model_len)
    with qtbot.waitSignal(dialog.changed, timeout=5000):
        editor.buttons.button(editor.buttons.StandardButton.Ok).click()
    editor.wait()
    [saved] = store.list()
    assert (saved.name, saved.base_url, saved.model, saved.context_window) == (
        "Lab box", server.base_url("ok"), "mid-3b", 32768)
    assert saved.usable_context == 32768
    assert store.api_key(saved.id) == KEY
    assert dialog.list.count() == 1 and "Lab box — mid-3b" in dialog.list.item(0).text()
    assert dialog.selected_id() == saved.id and dialog.edit.isEnabled()
    for path in Path(os.environ["HEARTH_HOME"]).rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_editing_with_an_empty_key_keeps_the_saved_one(qtbot, server, store) -> None:
    store.save(Provider("p1", "Lab", server.base_url("ok"), "alpha-1b"), KEY)
    dialog = ProvidersDialog(store)
    qtbot.addWidget(dialog)
    dialog.edit.click()
    editor = dialog.editor
    assert editor.windowTitle() == "Edit provider" and editor.api_key.text() == ""
    assert "keep the saved key" in editor.api_key.placeholderText()
    assert editor.model.currentText() == "alpha-1b"
    with qtbot.waitSignal(editor.models_listed, timeout=5000):
        editor.fetch.click()
    assert server.requests[-1]["authorization"] == f"Bearer {KEY}"  # the saved key was used
    assert editor.model.currentText() == "alpha-1b"  # the chosen model stays chosen
    editor.name.setText("Lab renamed")
    editor.model.setCurrentText("zeta-7b")
    with qtbot.waitSignal(editor.saved, timeout=5000):
        editor.buttons.button(editor.buttons.StandardButton.Ok).click()
    editor.wait()
    assert store.get("p1") == Provider("p1", "Lab renamed", server.base_url("ok"), "zeta-7b")
    assert store.api_key("p1") == KEY


def test_fetch_failures_are_shown_as_the_sentence(qtbot, server, store) -> None:
    editor = ProviderEditor(store)
    qtbot.addWidget(editor)
    fill(editor, name="Lab box", url=server.base_url("status401"), key=KEY)
    with qtbot.waitSignal(editor.problem_shown, timeout=5000) as shown:
        editor.fetch.click()
    assert "key is wrong or missing" in shown.args[0] and "Lab box" in shown.args[0]
    assert editor.status.text() == shown.args[0] and KEY not in shown.args[0] and editor.fetch.isEnabled()

    editor.base_url.setText(f"http://127.0.0.1:{free_port()}/v1")
    with qtbot.waitSignal(editor.problem_shown, timeout=5000) as shown:
        editor.fetch.click()
    assert "refused the connection" in shown.args[0]
    editor.wait()


def test_bad_fields_are_explained_before_anything_is_sent(qtbot, server, store) -> None:
    editor = ProviderEditor(store)
    qtbot.addWidget(editor)
    fill(editor, name="x", url="localhost:8000/v1")
    with qtbot.waitSignal(editor.problem_shown, timeout=1000) as shown:
        editor.fetch.click()
    assert "must start with http://" in shown.args[0]
    editor.base_url.setText(server.base_url("ok"))
    with qtbot.waitSignal(editor.problem_shown, timeout=1000) as shown:
        editor.buttons.button(editor.buttons.StandardButton.Ok).click()
    assert "Choose a model" in shown.args[0]
    assert server.requests == [] and store.list() == []


def test_remove_deletes_the_provider_and_its_key(qtbot, server, store) -> None:
    store.save(Provider("p1", "One", server.base_url("ok"), "alpha-1b"), KEY)
    store.save(Provider("p2", "Two", server.base_url("ok"), "mid-3b"), "sk-two")
    dialog = ProvidersDialog(store)
    qtbot.addWidget(dialog)
    assert dialog.list.count() == 2 and dialog.selected_id() == "p1"
    with qtbot.waitSignal(dialog.changed, timeout=5000):
        dialog.remove.click()
    dialog.wait()
    assert [p.id for p in store.list()] == ["p2"] and store.api_key("p1") is None
    assert dialog.list.count() == 1 and dialog.selected_id() == "p2"
