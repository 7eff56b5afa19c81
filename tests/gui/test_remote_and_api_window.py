"""The real window answering through a provider (a real OpenAI-compatible server: Hearth's own, on the built-in
model, started here), with Stop, a server that goes away mid-reply, and the local API server switched on and off
in the running app while the window keeps its model."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from keyring.backends import fail
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from openai import OpenAI

from gui.app import build_ui, shut_down
from gui.model_picker import LOCAL, provider_key
from inference.api.config import ServerConfig
from inference.api.server import ApiServer
from inference.hardware import probe_hardware
from inference.model_owner import LoadRequest, ModelOwner
from inference.selector import Preferences
from inference.session import ModelChoice
from model_store.api_token import ApiTokenStore
from model_store.credentials import TokenStore
from model_store.paths import AppPaths
from model_store.providers import Provider, ProviderStore
from model_store.settings import Settings, SettingsStore
from tests.gui.test_chat_window import WorkerEvents, branch, send
from tests.serve_process import hearth_serve

pytestmark = [pytest.mark.gui, pytest.mark.slow]

REMOTE_KEY = "remote-secret-key-1234"


@pytest.fixture
def remote_server(builtin_model_path: Path):
    """A real OpenAI-compatible server on 127.0.0.1: Hearth's own, with its own model owner."""
    owner = ModelOwner(lambda: ModelChoice(path=builtin_model_path), probe_hardware)
    owner.start()
    owner.load(LoadRequest(None, Preferences(n_threads=1)))
    ready = owner.wait_for_model(60)
    server = ApiServer(owner, ServerConfig(token=REMOTE_KEY, port=0))
    server.start()
    yield server, ready.model_id
    server.stop()
    owner.stop()


def memory_keys(account: str) -> TokenStore:
    return TokenStore(backend=fail.Keyring(), account=account)


@pytest.fixture
def window_with_provider(qtbot, builtin_model_path: Path, app_paths: AppPaths, remote_server):
    server, model_id = remote_server
    providers = ProviderStore(app_paths.providers_file, keys=lambda pid: memory_keys(f"provider-key:{pid}"))
    providers.save(Provider(id="lab", name="Lab server", base_url=server.url, model=model_id, context_window=8192),
                   REMOTE_KEY)
    store = SettingsStore(app_paths.settings_file)
    store.save(Settings(temperature=0.7, seed=7, max_tokens=48, n_threads=1))
    ui = build_ui(choose_model=lambda: ModelChoice(path=builtin_model_path, display_name="Demo", is_demo=True),
                  probe_hardware=probe_hardware, settings=store, conversations_file=app_paths.conversations_file,
                  providers=providers, api_tokens=ApiTokenStore(memory_keys("api-token")))
    qtbot.addWidget(ui.window)
    ui.window.show()
    qtbot.waitUntil(lambda: ui.window.panel.model_name is not None, timeout=60_000)
    ui.providers = providers
    yield ui, server, model_id
    shut_down(ui)


def choose(window, key: str) -> None:
    picker = window.model_picker
    index = picker.findData(key)
    assert index >= 0, [picker.itemData(i) for i in range(picker.count())]
    picker.setCurrentIndex(index)
    picker.activated.emit(index)


def test_a_conversation_answers_through_a_provider_and_keeps_it(qtbot, window_with_provider) -> None:
    ui, server, model_id = window_with_provider
    window = ui.window
    events = WorkerEvents(ui.worker_thread.worker)
    assert window.demo_notice.isVisible()
    choose(window, provider_key("lab"))
    assert window.engine_label.text() == "Lab server · remote"
    assert not window.demo_notice.isVisible()  # the demo model does not answer here
    assert window.panel.model_name == f"{model_id} · Lab server"
    # Documents are fitted into the provider's window, not the local model's (4,096 here).
    assert window.context_length() == 8192
    with qtbot.waitSignal(events.reply_finished, timeout=60_000) as finished:
        send(qtbot, window, "Hello over there")
    stats = finished.args[1]
    assert stats.completion_tokens > 0 and stats.ttft_s > 0
    reply = window.panel.session.branch()[-1]
    assert reply.role == "assistant" and reply.content and reply.model == f"{model_id} · Lab server"
    assert "tok/s" in window.speed_label.text() and "first token" in window.speed_label.text()
    # The choice is the conversation's: stored with it, and shown again when it is reopened.
    conversation_id = window.panel.session.conversation_id
    window.new_conversation()
    assert window.model_picker.currentData() == LOCAL and "remote" not in window.engine_label.text()
    window.open_conversation(conversation_id)
    qtbot.waitUntil(lambda: window.panel.session.conversation_id == conversation_id, timeout=10_000)
    assert window.model_picker.currentData() == provider_key("lab")
    # Its conversation settings keep the provider (Chat › Conversation settings…, OK).
    seen = []

    def accept_settings() -> None:
        dialog = QApplication.activeModalWidget()
        seen.append((dialog.keep_model.isChecked(), dialog.keep_model.text()))
        dialog.accept()

    QTimer.singleShot(200, accept_settings)
    window.open_conversation_settings()
    assert seen == [(True, f"Always answer this conversation with {model_id} · Lab server")]
    assert window.model_picker.currentData() == provider_key("lab")

    # Stop works as with the local model; Continue-style history goes with the next turn.
    window.apply_settings(replace(window.settings, max_tokens=400))
    with qtbot.waitSignal(events.reply_chunk, timeout=60_000):
        send(qtbot, window, "Tell me a long story")
    with qtbot.waitSignal(events.reply_cancelled, timeout=30_000):
        window.panel.stop_reply()
    assert branch(window)[-2] == ("user", "Tell me a long story")


def test_a_provider_killed_mid_reply_leaves_the_reply_interrupted_and_explained(
        qtbot, window_with_provider, builtin_model_path: Path, tmp_path: Path) -> None:
    ui, _, model_id = window_with_provider
    window = ui.window
    events = WorkerEvents(ui.worker_thread.worker)
    with hearth_serve(builtin_model_path, REMOTE_KEY, tmp_path / "remote-home") as (url, process):
        ui.providers.save(Provider(id="box", name="Box server", base_url=url, model=model_id), REMOTE_KEY)
        window.set_providers(ui.providers, lambda: None)  # what closing File › Providers… does
        choose(window, provider_key("box"))
        window.apply_settings(replace(window.settings, max_tokens=600))
        with qtbot.waitSignal(events.reply_chunk, timeout=60_000):
            send(qtbot, window, "Tell me a very long story about the sea")
        process.kill()  # the server machine goes away mid-reply
        qtbot.waitUntil(lambda: window.panel.active is None, timeout=30_000)
    transcript = window.panel.chat_view.toPlainText()
    assert "[Interrupted]" in transcript and "Box server" in transcript
    reply = window.panel.session.branch()[-1]
    assert reply.status == "interrupted" and reply.content  # the partial reply is kept
    assert REMOTE_KEY not in transcript


def test_the_api_server_switched_on_in_the_app_shares_the_window_s_model(qtbot, window_with_provider) -> None:
    ui, _, _ = window_with_provider
    window = ui.window
    events = WorkerEvents(ui.worker_thread.worker)
    window.apply_settings(replace(window.settings, api_server_enabled=True, api_port=0))
    qtbot.waitUntil(lambda: window.api_label.text() == "API on", timeout=30_000)
    url = window.api_label.toolTip().split(" at ", 1)[1].split(",", 1)[0]
    token = ui.api.token()
    client = OpenAI(base_url=url, api_key=token, max_retries=0)
    model = client.models.list().data[0].id
    assert model == ui.worker_thread.worker.owner.ready.model_id
    answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=8)
    assert answer.usage.completion_tokens > 0
    # The window chats on with the same model meanwhile.
    with qtbot.waitSignal(events.reply_finished, timeout=60_000):
        send(qtbot, window, "Are you shared?")
    # A new token refuses the old one; switching off stops the server.
    ui.api.regenerate_token()
    qtbot.waitUntil(lambda: _status(url, token) == 401 or _status(url, token) is None, timeout=30_000)
    window.apply_settings(replace(window.settings, api_server_enabled=False))
    qtbot.waitUntil(lambda: not window.api_label.isVisible(), timeout=30_000)
    assert _status(url, ui.api.token()) is None


def _status(url: str, token: str) -> int | None:
    try:
        return httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code
    except httpx.TransportError:
        return None


def test_a_port_already_taken_is_said_and_the_window_chats_on(qtbot, window_with_provider) -> None:
    ui, _, _ = window_with_provider
    window = ui.window
    events = WorkerEvents(ui.worker_thread.worker)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        window.apply_settings(replace(window.settings, api_server_enabled=True, api_port=taken.getsockname()[1]))
        qtbot.waitUntil(lambda: window.api_label.text() == "API off", timeout=30_000)
    notice = window.panel.chat_view.toPlainText()
    assert "The local API server could not start" in notice and "Something unexpected" not in notice
    with qtbot.waitSignal(events.reply_finished, timeout=60_000):
        send(qtbot, window, "Still here?")
