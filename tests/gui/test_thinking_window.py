"""The real window showing a reasoning model's thinking: live, then collapsed, stored apart, never sent back.

The model is a tiny random-weight Llama whose chat template declares thinking and reads it back; its
output is random, so the reply is scripted: the window's reply requests are held here (no engine
call), and the worker's reply signals are emitted as the engine would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QObject, QUrl, Slot

from gui.app import shut_down
from inference.engine import ReplyStats
from inference.session import ModelChoice
from model_store.paths import AppPaths
from tests.gguf_factory import write_random_llama
from tests.gui.test_chat_window import open_window, send

pytestmark = [pytest.mark.gui]

TEMPLATE = (
    "{% for message in messages %}<|{{ message.role }}|>{{ message.content }}"
    "{% if message.reasoning_content %}[thought: {{ message.reasoning_content }}]{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% if enable_thinking is defined and not enable_thinking %}"
    "<think></think>{% endif %}{% endif %}"
)


class Requests(QObject):
    """Keeps the window's reply requests instead of the engine."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = []

    @Slot(object)
    def keep(self, request) -> None:
        self.seen.append(request)


@pytest.fixture
def window(qtbot, tmp_path: Path, app_paths: AppPaths):
    model = write_random_llama(tmp_path / "thinker.gguf", chat_template=TEMPLATE)
    ui = open_window(qtbot, lambda: ModelChoice(path=model, display_name="Thinker"), app_paths, model=model)
    qtbot.waitUntil(lambda: ui.window.panel.model_name is not None, timeout=60_000)
    requests = Requests()
    panel = ui.window.panel
    panel.reply_requested.disconnect()
    panel.reply_requested.connect(requests.keep)
    yield ui, requests
    shut_down(ui)


def test_thinking_streams_collapses_expands_and_stays_out_of_the_answer(qtbot, window) -> None:
    ui, requests = window
    worker, panel = ui.worker_thread.worker, ui.window.panel
    view = panel.chat_view
    assert (panel.thinking_format, panel.thinking_replay) == ("think-tags", True)
    send(qtbot, ui.window, "What is 2+2?")
    qtbot.waitUntil(lambda: len(requests.seen) == 1)
    request = requests.seen[0]
    reply_id = panel._reply_id
    for piece in ("<thi", "nk>\nTwo and ", "two <make> fo", "ur.\n</th"):
        worker.reply_chunk.emit(request.request_id, piece)
    qtbot.waitUntil(lambda: "Thinking…" in view.toPlainText())
    assert "Two and two <make> four." in view.toPlainText()
    worker.reply_chunk.emit(request.request_id, "ink>\n\n**Four.**")
    qtbot.waitUntil(lambda: "Thought for" in view.toPlainText())
    text = view.toPlainText()
    assert "Two and two" not in text and "Four." in text and "**" not in text  # collapsed; answer is Markdown
    assert view.thinking_seconds(reply_id) is not None

    view.anchorClicked.emit(QUrl(f"thinking:{reply_id}"))
    assert "Two and two <make> four." in view.toPlainText() and "Four." in view.toPlainText()
    view.anchorClicked.emit(QUrl(f"thinking:{reply_id}"))
    assert "Two and two" not in view.toPlainText()

    worker.reply_finished.emit(request.request_id, _stats())
    qtbot.waitUntil(lambda: panel.active is None)
    assert view.message_text(reply_id) == "**Four.**"  # Copy and the Markdown hold the answer only
    ui.writer.flush()
    stored = [m for m in ui.store.messages(panel.session.conversation_id) if m.id == reply_id][0]
    assert (stored.content, stored.thinking) == ("**Four.**", "Two and two <make> four.")
    assert stored.thinking_seconds == pytest.approx(view.thinking_seconds(reply_id))
    seconds_label = f"Thought for {stored.thinking_seconds:.0f} s"

    send(qtbot, ui.window, "And 3+3?")
    qtbot.waitUntil(lambda: len(requests.seen) == 2)
    history = list(requests.seen[1].messages)
    assert history[1]["content"] == "**Four.**" and "<think>" not in str(history)
    # This model's template reads thinking back, so it travels apart, as reasoning_content.
    assert history[1]["reasoning_content"] == "Two and two <make> four."
    panel.thinking_replay = False  # a template that does not read it: thinking stays out altogether
    panel.stop_reply()
    worker.reply_cancelled.emit(requests.seen[1].request_id, _stats("cancelled"))
    qtbot.waitUntil(lambda: panel.active is None)
    panel.regenerate()
    qtbot.waitUntil(lambda: len(requests.seen) == 3)
    assert all(set(m) == {"role", "content"} for m in requests.seen[2].messages)
    panel.stop_reply()
    worker.reply_cancelled.emit(requests.seen[2].request_id, _stats("cancelled"))
    qtbot.waitUntil(lambda: panel.active is None)

    # Reopened later (a new view, as after a restart), the answer still says how long the model thought.
    ui.writer.flush()
    conversation_id = panel.session.conversation_id
    ui.window.open_conversation(None)
    qtbot.waitUntil(lambda: panel.session is None or panel.session.conversation_id != conversation_id)
    ui.window.open_conversation(conversation_id)
    qtbot.waitUntil(lambda: panel.session is not None and panel.session.conversation_id == conversation_id)
    reopened = [m for m in panel.session.branch() if m.id == reply_id]
    assert reopened and reopened[0].thinking_seconds == stored.thinking_seconds
    view._thinking_times.clear()  # what a new window knows: only what was stored
    panel.show_branch()
    assert seconds_label in view.toPlainText()


def test_stop_while_thinking_keeps_the_thought(qtbot, window) -> None:
    ui, requests = window
    worker, panel = ui.worker_thread.worker, ui.window.panel
    send(qtbot, ui.window, "Think hard")
    qtbot.waitUntil(lambda: len(requests.seen) == 1)
    request = requests.seen[0]
    reply_id = panel._reply_id
    worker.reply_chunk.emit(request.request_id, "<think>Hmm, let me see")
    qtbot.waitUntil(lambda: "Thinking…" in panel.chat_view.toPlainText())
    panel.stop_reply()
    worker.reply_cancelled.emit(request.request_id, _stats("cancelled"))
    qtbot.waitUntil(lambda: panel.active is None)
    stored = panel.session.tree.get(reply_id)
    assert (stored.content, stored.thinking) == ("", "Hmm, let me see")
    text = panel.chat_view.toPlainText()
    assert "[Stopped]" in text and "Thought (15 characters)" in text


def _stats(reason: str = "stop") -> ReplyStats:
    return ReplyStats(finish_reason=reason, prompt_tokens=10, completion_tokens=12, ttft_s=0.1, total_s=1.0)
