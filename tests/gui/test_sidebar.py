"""The sidebar's item models (checked with Qt's model tester) and one Hearth per profile."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gui.single_instance import SingleInstance
from gui.sidebar import ID_ROLE, ConversationListModel, SearchResultsModel
from model_store.conversations import Conversation, SearchHit


def conversations() -> list[Conversation]:
    return [Conversation(id=f"c{i}", title=f"Chat {i}", created_at=i, updated_at=i, pinned=i == 0) for i in range(3)]


def test_conversation_model_passes_the_model_tester(qtmodeltester) -> None:
    model = ConversationListModel()
    model.set_conversations(conversations())
    qtmodeltester.check(model)
    assert model.index(0).data() == "★ Chat 0"
    assert model.index(1).data(ID_ROLE) == "c1"


def test_renaming_in_place_reports_the_new_title(qtbot) -> None:
    model = ConversationListModel()
    model.set_conversations(conversations())
    with qtbot.waitSignal(model.renamed) as renamed:
        assert model.setData(model.index(2), "  Holiday plans ")
    assert renamed.args == ["c2", "Holiday plans"]
    assert not model.setData(model.index(2), "   ")  # an empty title is refused


def test_the_same_conversations_in_the_same_order_redraw_only_the_rows_that_changed(qtbot) -> None:
    model = ConversationListModel()
    model.set_conversations(conversations())
    touched = conversations()
    touched[1] = replace(touched[1], title="Chat 1, renamed", updated_at=9)
    with qtbot.assertNotEmitted(model.modelReset), qtbot.waitSignal(model.dataChanged) as changed:
        model.set_conversations(touched)
    assert changed.args[0].row() == changed.args[1].row() == 1
    assert model.index(1).data() == "Chat 1, renamed"
    with qtbot.assertNotEmitted(model.modelReset), qtbot.assertNotEmitted(model.dataChanged):
        model.set_conversations(touched)  # nothing changed: nothing to redraw

    with qtbot.waitSignal(model.modelReset):  # another order: the rows are replaced
        model.set_conversations(list(reversed(touched)))
    assert [model.index(row).data(ID_ROLE) for row in range(3)] == ["c2", "c1", "c0"]


def test_search_results_model_passes_the_model_tester(qtmodeltester) -> None:
    model = SearchResultsModel()
    model.set_hits([SearchHit("c1", "m1", "Chat 1", "user", "the [bread] was good")])
    qtmodeltester.check(model)
    assert "[bread]" in model.index(0).data()


def test_a_second_hearth_on_the_same_profile_hands_over_to_the_first(qtbot, tmp_path: Path) -> None:
    first = SingleInstance(tmp_path)
    assert first.acquire()
    second = SingleInstance(tmp_path)
    with qtbot.waitSignal(first.activated, timeout=5_000):
        assert not second.acquire()
    first.release()
    third = SingleInstance(tmp_path)
    assert third.acquire()  # the lock is free again
    third.release()
