"""Branches: editing and regenerating add siblings; moving between them shows each branch's newest leaf."""

from __future__ import annotations

from itertools import count

from model_store.conversation_tree import ConversationTree
from model_store.conversations import Message

_clock = count()


def message(message_id: str, parent: str | None, role: str = "user") -> Message:
    return Message(id=message_id, conversation_id="c", parent_id=parent, role=role, content=message_id,
                   created_at=float(next(_clock)))


def test_branch_and_sibling_navigation() -> None:
    tree = ConversationTree([message("q", None), message("a1", "q", "assistant"), message("q2", "a1")])
    assert [m.id for m in tree.branch()] == ["q", "a1", "q2"]
    tree.add(message("a2", "q", "assistant"))  # regenerate the first reply
    assert [m.id for m in tree.branch()] == ["q", "a2"]
    assert tree.position("a2") == (2, 2)
    assert tree.switch_sibling("a2", -1) == "q2"  # back to the first reply, continued to its newest leaf
    assert [m.id for m in tree.branch()] == ["q", "a1", "q2"]
    assert [m.id for m in tree.siblings("a1")] == ["a1", "a2"]
    tree.switch_sibling("a1", +1)
    assert tree.current_leaf_id == "a2"


def test_editing_the_first_message_makes_a_new_root() -> None:
    tree = ConversationTree([message("q", None), message("a", "q", "assistant")], current_leaf_id="a")
    tree.add(message("q-edited", None))
    assert tree.position("q-edited") == (2, 2)
    assert [m.id for m in tree.branch()] == ["q-edited"]
    assert len(tree) == 3  # nothing was destroyed


def test_update_and_unknown_leaf() -> None:
    tree = ConversationTree([message("q", None)], current_leaf_id="missing")
    assert tree.current_leaf_id == "q"
    assert tree.update("q", content="changed", status="complete").content == "changed"
    assert tree.branch()[0].content == "changed"
    assert ConversationTree([]).branch() == []
