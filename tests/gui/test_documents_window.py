"""Chat with documents in the real window with the real built-in model: attach, ask, cite, a responsive window."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, QUrl, Signal, Slot

from gui.app import shut_down
from gui.documents import DocumentsController, DocumentTasks
from inference.session import ModelChoice
from model_store.documents.index import DocumentIndex
from model_store.paths import AppPaths
from tests.gui.heartbeat import Heartbeat
from tests.gui.test_chat_window import WorkerEvents, open_window, send

pytestmark = [pytest.mark.gui, pytest.mark.slow]

MAX_UI_STALL_MS = 250  # as tests/gui/test_chat_window.py: catches freezes, not 2-core scheduler noise
FACT = "The Vallorn lighthouse was painted green in 1911 by the keeper Ada Morrow."


class Requests(QObject):
    """Records each ReplyRequest the panel sends to the model."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = []

    @Slot(object)
    def record(self, request) -> None:
        self.sent.append(request)


class Ready(QObject):
    """Re-emits the tasks' results on the GUI thread (waitSignal needs them there)."""

    listed = Signal(str, object)
    attached = Signal(str, object)

    def __init__(self, tasks: DocumentTasks) -> None:
        super().__init__()
        tasks.attachments_listed.connect(self._listed)
        tasks.attached.connect(self._attached)

    @Slot(str, object)
    def _listed(self, conversation_id, attachments) -> None:
        self.listed.emit(conversation_id, attachments)

    @Slot(str, object)
    def _attached(self, conversation_id, report) -> None:
        self.attached.emit(conversation_id, report)


@pytest.fixture
def docs(qtbot, builtin_model_path: Path, app_paths: AppPaths, tmp_path: Path):
    def choose() -> ModelChoice:
        return ModelChoice(path=builtin_model_path, display_name="Gemma 3 270M (demo)", is_demo=True)

    ui = open_window(qtbot, choose, app_paths)
    tasks = DocumentTasks(DocumentIndex(tmp_path / "documents.db"))
    ui.window.documents = DocumentsController(ui.window, tasks)
    requests = Requests()
    ui.window.panel.reply_requested.connect(requests.record)
    events = WorkerEvents(ui.worker_thread.worker)
    qtbot.waitUntil(lambda: ui.window.panel.model_name is not None, timeout=60_000)
    yield ui.window, tasks, events, requests, Ready(tasks)
    tasks.close()
    shut_down(ui)


def _long_document(path: Path, edition: int = 0) -> Path:
    filler = "\n\n".join(f"Section {i}. The harbour ledger {edition} lists cargo, tides and weather for week {i}." * 6
                         for i in range(120))
    path.write_text(f"# Harbour notes\n\n{filler}\n\n## The lighthouse\n\n{FACT}\n\n{filler}", encoding="utf-8")
    return path


def test_an_attached_file_is_searched_cited_and_its_passage_shown(qtbot, docs, tmp_path: Path) -> None:
    window, tasks, events, requests, ready = docs
    document = _long_document(tmp_path / "harbour.md")  # too long to go in whole: retrieval
    with qtbot.waitSignal(ready.listed, timeout=30_000):
        window.documents.dropped([document])
    assert window.panel.chips.titles == ["harbour.md"] and window.panel.chips.isVisible()

    question = "What colour was the Vallorn lighthouse painted, and by which keeper?"
    with qtbot.waitSignal(events.reply_finished, timeout=120_000):
        send(qtbot, window, question)
    prompt = requests.sent[-1].messages[-1]["content"]
    assert FACT in prompt and "[1] harbour.md" in prompt
    assert prompt.endswith(f"Question: {question}")
    stored_question = [m for m in window.panel.session.branch() if m.role == "user"][-1]
    assert stored_question.content == question  # the stored message is what the user typed

    reply = window.panel.session.branch()[-1]
    sources = window.panel._message_sources(reply.id)
    assert sources and sources[0].chunk_id is not None and sources[0].title == "harbour.md"
    transcript = window.panel.chat_view.toPlainText()
    assert "Sources:" in transcript and "harbour.md" in transcript
    assert f'href="cite:{reply.id}:1"' in window.panel.chat_view.toHtml()  # [1] and the Sources line are links

    passage_with_fact = next(s for s in sources if "Vallorn" in s.excerpt or "Vallorn" in
                             tasks.index.passage(s.chunk_id).text)
    window.panel.chat_view.anchorClicked.emit(QUrl(f"cite:{reply.id}:{passage_with_fact.number}"))
    qtbot.waitUntil(lambda: window.documents.passage_panel.isVisible(), timeout=10_000)
    assert FACT in window.documents.passage_panel.text.toPlainText()
    assert "harbour.md" in window.documents.passage_panel.heading.text()
    assert window.documents.passage_panel.open_button.isEnabled()

    qtbot.waitUntil(lambda: json.loads(window._store.messages(reply.conversation_id)[-1].sources or "[]") != [],
                    timeout=10_000)


def test_a_follow_up_keeps_the_earlier_passages_in_place_and_does_not_send_them_again(
        qtbot, docs, tmp_path: Path) -> None:
    window, tasks, events, requests, ready = docs
    with qtbot.waitSignal(ready.listed, timeout=30_000):
        window.documents.dropped([_long_document(tmp_path / "harbour.md")])
    with qtbot.waitSignal(events.reply_finished, timeout=120_000):
        send(qtbot, window, "What colour was the Vallorn lighthouse painted?")
    first = requests.sent[-1].messages
    with qtbot.waitSignal(events.reply_finished, timeout=120_000):
        send(qtbot, window, "Which keeper painted the Vallorn lighthouse?")
    second = requests.sent[-1].messages
    # The first question reads exactly as the model saw it: the engine's cached prefix still matches.
    assert second[:len(first)] == first
    follow_up = second[-1]["content"]
    # Every passage the follow-up finds was given with the first question: it goes as typed.
    assert follow_up == "Which keeper painted the Vallorn lighthouse?"
    reply = window.panel.session.branch()[-1]
    sources = window.panel._message_sources(reply.id)
    assert sources and all(s.earlier for s in sources) and any(s.number == 1 for s in sources)


def test_continue_gives_the_model_the_same_passages_as_the_interrupted_reply(qtbot, docs, tmp_path: Path) -> None:
    window, tasks, events, requests, ready = docs
    with qtbot.waitSignal(ready.listed, timeout=30_000):
        window.documents.dropped([_long_document(tmp_path / "harbour.md")])
    window.apply_settings(replace(window._settings, max_tokens=400, temperature=0.9))
    send(qtbot, window, "What colour was the Vallorn lighthouse painted? Tell me the whole story of it.")
    qtbot.waitUntil(lambda: window.panel.session.branch()[-1].content.strip() != "", timeout=120_000)
    os.kill(events.engine_pid(), signal.SIGKILL)  # the reply is interrupted: Continue is offered
    qtbot.waitUntil(lambda: window.panel.active is None
                    and "Your conversation is kept" in window.panel.chat_view.toPlainText(), timeout=30_000)
    first = requests.sent[-1].messages
    reply = window.panel.session.branch()[-1]
    assert reply.status == "interrupted" and reply.sources not in ("", "[]")
    qtbot.waitUntil(lambda: window.panel.model_name is not None, timeout=60_000)  # the model is back

    notes = []
    window.panel.notice.connect(notes.append)
    name = window.panel.model_name
    window.panel.set_loading("Loading the model…")
    window.panel.chat_view.action_requested.emit("continue", reply.id)  # while a model loads: a sentence
    assert notes == ["The model is still loading: try again when it is ready."] and len(requests.sent) == 1
    window.panel.set_model(name)

    window.apply_settings(replace(window._settings, max_tokens=16))
    with qtbot.waitSignal(events.reply_finished, timeout=120_000):
        window.panel.chat_view.action_requested.emit("continue", reply.id)
    resumed = requests.sent[-1].messages
    assert len(requests.sent) == 2
    assert resumed[:-1] == first  # the question with its passages, exactly as the model saw it
    assert FACT in resumed[-2]["content"]
    assert resumed[-1]["role"] == "assistant" and resumed[-1]["content"].strip()  # the answer so far goes on
    assert window.panel.session.branch()[-1].id == reply.id


def test_a_broken_file_is_a_sentence_and_the_rest_is_attached(qtbot, docs, tmp_path: Path) -> None:
    window, tasks, events, requests, ready = docs
    good = tmp_path / "notes.md"
    good.write_text(f"# Notes\n\n{FACT}\n", encoding="utf-8")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n\xff\xfe\x00\x9c garbage, no xref, no trailer")
    with qtbot.waitSignal(ready.listed, timeout=30_000):
        window.documents.attach([broken, good])
    assert window.panel.chips.titles == ["notes.md"]
    assert "broken.pdf was not added" in window.panel.chat_view.toPlainText()

    with qtbot.waitSignal(events.reply_finished, timeout=120_000):
        send(qtbot, window, "Who painted the lighthouse?")
    assert FACT in requests.sent[-1].messages[-1]["content"]
    assert "notes.md goes in whole (" in window.panel.chat_view.toPlainText()


def test_stop_while_searching_ends_the_reply_without_asking_the_model(qtbot, docs, tmp_path: Path) -> None:
    window, tasks, events, requests, ready = docs
    good = tmp_path / "notes.md"
    good.write_text(FACT, encoding="utf-8")
    with qtbot.waitSignal(ready.listed, timeout=30_000):
        window.documents.attach([good])
    sent_before = len(requests.sent)
    send(qtbot, window, "Who painted the lighthouse?")
    window.panel.stop_reply()
    assert window.panel.active is None and window.panel.send_button.isVisible()
    qtbot.wait(300)
    assert len(requests.sent) == sent_before


def test_the_window_stays_responsive_while_a_folder_is_indexed(qtbot, docs, tmp_path: Path) -> None:
    window, tasks, events, requests, ready = docs
    folder = tmp_path / "library"
    folder.mkdir()
    for i in range(300):
        (folder / f"note-{i:03}.md").write_text(f"# Note {i}\n\n" + f"Paragraph about topic {i}. " * 200,
                                                encoding="utf-8")
    said: list[str] = []
    tasks.progress.connect(said.append)
    heartbeat = Heartbeat()
    window.documents.keep_as_collection(folder, "Library")
    qtbot.waitUntil(lambda: bool(said) and tasks.wait_idle(0) and window.documents.status.text() == "",
                    timeout=120_000)
    assert "Indexing 300 of 300 files…" in said
    heartbeat.stop()
    worst = max(heartbeat.lateness_ms)
    print(f"UI lateness while indexing 300 files: max {worst:.1f} ms over {len(heartbeat.lateness_ms)} beats")
    assert worst < MAX_UI_STALL_MS
    assert window.panel.session.conversation.settings["collections"] == [tasks.index.collections()[0].id]
    assert tasks.index.collections()[0].files == 300


def test_a_pasted_file_path_offers_to_attach_the_file(qtbot, docs, tmp_path: Path) -> None:
    from PySide6.QtCore import QMimeData
    from PySide6.QtWidgets import QMessageBox

    window, tasks, events, requests, ready = docs
    good = tmp_path / "notes.md"
    good.write_text(FACT, encoding="utf-8")
    mime = QMimeData()
    mime.setText(str(good))
    window.panel.composer.insertFromMimeData(mime)
    assert window.panel.composer.toPlainText() == ""
    box = window.findChild(QMessageBox, "paste-question")
    assert box is not None and box.isVisible()
    with qtbot.waitSignal(ready.listed, timeout=30_000):
        box.button(QMessageBox.StandardButton.Yes).click()
    assert window.panel.chips.titles == ["notes.md"]
    mime.setText("just some words")
    window.panel.composer.insertFromMimeData(mime)
    assert window.panel.composer.toPlainText() == "just some words"


def test_the_collections_dialog_lists_collections_and_chooses_them_per_conversation(
        qtbot, docs, tmp_path: Path) -> None:
    from PySide6.QtCore import Qt

    from gui.collections_dialog import CollectionsDialog

    window, tasks, events, requests, ready = docs
    folder = tmp_path / "papers"
    folder.mkdir()
    (folder / "a.md").write_text(FACT, encoding="utf-8")
    (folder / "b.txt").write_bytes(b"\x00\x01binary" * 100)
    window.documents.keep_as_collection(folder, "Papers")
    qtbot.waitUntil(lambda: tasks.wait_idle(0) and bool(window.panel.session.conversation
                                                        and window.panel.session.conversation.settings), timeout=30_000)
    window.open_collections()
    dialog = window.findChild(CollectionsDialog)
    qtbot.waitUntil(lambda: dialog.table.topLevelItemCount() == 1, timeout=10_000)
    item = dialog.table.topLevelItem(0)
    assert item.text(0) == "Papers" and item.text(2) == "1"
    assert item.checkState(0) == Qt.CheckState.Checked
    dialog._tasks.index_collection(item.data(0, Qt.ItemDataRole.UserRole))
    qtbot.waitUntil(lambda: dialog.problems.count() >= 1, timeout=10_000)
    assert "b.txt was not added: it is a binary file" in dialog.problems.item(0).text()
    qtbot.waitUntil(lambda: tasks.wait_idle(0), timeout=10_000)
    qtbot.wait(100)  # the table is filled again from the fresh counts
    item = dialog.table.topLevelItem(0)
    collection_id = item.data(0, Qt.ItemDataRole.UserRole)
    item.setCheckState(0, Qt.CheckState.Unchecked)
    assert window.panel.session.conversation.settings["collections"] == []

    (folder / "a.md").write_text(FACT.replace("green", "blue"), encoding="utf-8")
    qtbot.mouseClick(dialog.rebuild_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tasks.wait_idle(0) and dialog.problems.count() >= 1, timeout=10_000)
    assert "blue" in tasks.index.search("painted blue", collection_ids=[collection_id])[0].text
    dialog.close()


def test_a_dropped_folder_asks_then_attaches_its_files(qtbot, docs, tmp_path: Path) -> None:
    from PySide6.QtCore import QMimeData, QPointF, Qt
    from PySide6.QtGui import QDropEvent
    from PySide6.QtWidgets import QMessageBox

    window, tasks, events, requests, ready = docs
    folder = tmp_path / "trip"
    (folder / "days").mkdir(parents=True)
    (folder / "plan.md").write_text("Day one: the coast.", encoding="utf-8")
    (folder / "days" / "two.txt").write_text("Day two: the hills.", encoding="utf-8")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    drop = QDropEvent(QPointF(100, 100), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    # Offscreen Qt delivers no synthetic drop events; hand it to the window's drop handler as Qt would.
    assert window.acceptDrops() and window.documents.eventFilter(window, drop)
    box = window.findChild(QMessageBox, "folder-question")
    assert box is not None and box.isVisible()
    attach = next(b for b in box.buttons() if b.text() == "Attach its files")
    with qtbot.waitSignal(ready.listed, timeout=30_000):
        attach.click()
    assert sorted(window.panel.chips.titles) == ["plan.md", "two.txt"]


def test_with_an_embedding_model_a_collection_is_searched_by_meaning_too(
        qtbot, docs, builtin_model_path: Path, tmp_path: Path) -> None:
    from inference.embeddings import LlamaEmbedder

    window, tasks, events, requests, ready = docs
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "lighthouse.md").write_text(FACT, encoding="utf-8")
    (folder / "tides.md").write_text("Spring tides at Vallorn reach four metres in March.", encoding="utf-8")
    # The built-in chat model stands in for an embedding model (none can be downloaded here).
    tasks.use_embedder(lambda: LlamaEmbedder(builtin_model_path, threads=1))
    said: list[str] = []
    tasks.progress.connect(said.append)
    window.documents.keep_as_collection(folder, "Notes")
    qtbot.waitUntil(lambda: tasks.wait_idle(0) and tasks.index._vectors.count() == 2, timeout=120_000)
    assert tasks.index.embedder_name.startswith(builtin_model_path.name)
    assert "Reading 2 of 2 passages for meaning…" in said
    with qtbot.waitSignal(events.reply_finished, timeout=120_000):
        send(qtbot, window, "Who painted the lighthouse?")
    assert FACT in requests.sent[-1].messages[-1]["content"]
