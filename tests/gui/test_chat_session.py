"""The conversation on screen: what is shown, what the model sees, and what reaches the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from gui.chat_session import SAVE_INTERVAL_S, ChatSession
from model_store.conversations import ConversationStore
from model_store.store_writer import StoreWriter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stores(tmp_path: Path):
    path = tmp_path / "conversations.db"
    store = ConversationStore(path)
    writer = StoreWriter(path, on_error=lambda exc: (_ for _ in ()).throw(exc))
    yield store, writer
    writer.close()
    store.close()


def test_a_new_conversation_is_created_with_its_first_message(stores) -> None:
    store, writer = stores
    session = ChatSession(store, writer)
    assert session.conversation_id is None
    question = session.add_user_message("What is the tallest   mountain on Earth, please?")
    reply = session.start_reply(question.id, model="demo")
    session.append_reply_text(reply.id, "Everest.  ")
    session.finish_reply(reply.id, "complete")
    writer.flush()
    saved = store.conversation(session.conversation_id)
    assert saved.title == "What is the tallest mountain on Earth, please?"
    assert [(m.role, m.content, m.status) for m in store.messages(saved.id)] == [
        ("user", "What is the tallest   mountain on Earth, please?", "complete"),
        ("assistant", "Everest.", "complete"),
    ]


def test_a_streaming_reply_is_saved_about_once_a_second(stores) -> None:
    store, writer = stores
    clock = FakeClock()
    session = ChatSession(store, writer, clock=clock)
    reply = session.start_reply(session.add_user_message("Count").id, model="demo")
    session.append_reply_text(reply.id, "one ")
    writer.flush()
    assert store.messages(session.conversation_id)[-1].content == ""  # not yet a second
    clock.now += SAVE_INTERVAL_S
    session.append_reply_text(reply.id, "two ")
    writer.flush()
    last = store.messages(session.conversation_id)[-1]
    assert (last.content, last.status) == ("one two ", "streaming")


def test_edit_and_regenerate_make_branches_and_the_model_sees_the_branch_on_screen(stores) -> None:
    store, writer = stores
    session = ChatSession(store, writer)
    session.update_settings(system_prompt="Be brief.", model="demo", settings={"temperature": 0.2})
    first = session.add_user_message("Capital of France?")
    reply = session.start_reply(first.id, model="demo")
    session.append_reply_text(reply.id, "Paris")
    session.finish_reply(reply.id, "complete")
    edited = session.add_user_message("Capital of Italy?", instead_of=first.id)
    assert session.tree.position(edited.id) == (2, 2)
    assert session.prompt_for(edited) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of Italy?"},
    ]
    session.switch_sibling(edited.id, -1)
    assert [m.content for m in session.branch()] == ["Capital of France?", "Paris"]
    writer.flush()
    reopened = ChatSession(store, writer, store.conversation(session.conversation_id))
    assert [m.content for m in reopened.branch()] == ["Capital of France?", "Paris"]
    assert reopened.system_prompt == "Be brief."
    assert len(reopened.tree) == 3


def test_an_interrupted_reply_can_be_continued(stores) -> None:
    store, writer = stores
    session = ChatSession(store, writer)
    reply = session.start_reply(session.add_user_message("Story?").id, model="demo")
    session.append_reply_text(reply.id, "Once upon")
    session.finish_reply(reply.id, "interrupted")
    session.resume_reply(reply.id)
    session.append_reply_text(reply.id, " a time.")
    session.finish_reply(reply.id, "complete")
    writer.flush()
    assert store.messages(session.conversation_id)[-1].content == "Once upon a time."
    assert session.prompt_for(session.tree.get(reply.id))[-1] == {"role": "assistant", "content": "Once upon a time."}


def test_thinking_is_saved_as_it_streams_and_never_sent_back_unless_asked(stores) -> None:
    store, writer = stores
    clock = FakeClock()
    session = ChatSession(store, writer, clock=clock)
    question = session.add_user_message("2+2?")
    reply = session.start_reply(question.id, model="demo")
    clock.now += SAVE_INTERVAL_S
    session.set_reply_text(reply.id, content="", thinking="Two and two")
    writer.flush()
    assert store.messages(session.conversation_id)[-1].thinking == "Two and two"
    session.set_reply_text(reply.id, content="4. ", thinking="Two and two make four. ")
    session.finish_reply(reply.id, "complete")
    writer.flush()
    saved = store.messages(session.conversation_id)[-1]
    assert (saved.content, saved.thinking, saved.status) == ("4.", "Two and two make four.", "complete")
    follow_up = session.add_user_message("And 3+3?")
    assert session.prompt_for(follow_up) == [
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3+3?"}]
    assert session.prompt_for(follow_up, with_thinking=True)[1] == {
        "role": "assistant", "content": "4.", "reasoning_content": "Two and two make four."}
