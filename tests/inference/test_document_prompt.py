"""The prompt built from documents: whole attachments or numbered passages, in the last user message only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inference.document_prompt import (
    INSTRUCTION,
    estimate_tokens,
    passage_budget,
    prompt_with_documents,
    question_with_sources,
    sources_from_json,
    sources_json,
    with_documents,
)


@dataclass
class Passage:
    chunk_id: int
    path: Path
    title: str
    page: int | None
    start: int
    end: int
    text: str
    score: float = 1.0


@dataclass
class Attachment:
    path: Path
    title: str
    chars: int
    tokens_estimate: int


class FakeIndex:
    """Answers like DocumentIndex from fixed data, and records the searches."""

    def __init__(self, texts: dict[str, str], passages: list[Passage]) -> None:
        self.texts, self.passages, self.searches = texts, passages, []

    def attachments(self, conversation_id):
        return [Attachment(Path("/d") / t, t, len(x), estimate_tokens(x)) for t, x in self.texts.items()]

    def attachment_texts(self, conversation_id):
        return [(Path("/d") / t, x) for t, x in self.texts.items()]

    def search(self, query, *, collection_ids=(), conversation_id=None, k=5):
        self.searches.append((query, tuple(collection_ids), conversation_id, k))
        return self.passages[:k]


HISTORY = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi."},
    {"role": "user", "content": "When was the bridge built?"},
]


def _passages(n: int, size: int = 200) -> list[Passage]:
    return [Passage(i, Path(f"/docs/f{i}.pdf"), f"f{i}.pdf", i + 1, 0, size, f"passage {i} " + "x" * size)
            for i in range(n)]


def test_small_attachments_go_in_whole_and_say_so():
    index = FakeIndex({"notes.md": "The bridge was built in 1932."}, [])
    prompt = prompt_with_documents(HISTORY, index, conversation_id="c", n_ctx=4096, max_tokens=512)
    assert prompt.mode == "whole"
    assert index.searches == []
    assert "The bridge was built in 1932." in prompt.messages[-1]["content"]
    assert "[1] notes.md (the whole document)" in prompt.messages[-1]["content"]
    assert prompt.notices[0].startswith("notes.md goes in whole (")
    assert [s.number for s in prompt.sources] == [1] and prompt.sources[0].chunk_id is None


def test_large_attachments_are_searched_with_the_question():
    index = FakeIndex({"book.txt": "y" * 100_000}, _passages(3))
    prompt = prompt_with_documents(HISTORY, index, conversation_id="c", n_ctx=4096, max_tokens=512)
    assert prompt.mode == "retrieval"
    assert index.searches[0][0] == "When was the bridge built?" and index.searches[0][2] == "c"
    last = prompt.messages[-1]["content"]
    assert "[1] f0.pdf, page 1" in last and "[3] f2.pdf, page 3" in last
    assert last.startswith(INSTRUCTION) and last.endswith("Question: When was the bridge built?")
    assert [s.chunk_id for s in prompt.sources] == [0, 1, 2]


def test_only_the_last_user_message_changes_so_the_prefix_stays_cached():
    index = FakeIndex({}, _passages(2))
    prompt = prompt_with_documents(HISTORY, index, conversation_id="c", collection_ids=["k"], n_ctx=4096,
                                   max_tokens=256)
    assert list(prompt.messages[:-1]) == HISTORY[:-1]
    assert HISTORY[-1]["content"] == "When was the bridge built?"  # the caller's (stored) text is untouched
    assert index.searches[0][1] == ("k",) and index.searches[0][2] is None


def test_passages_are_cut_to_the_context_window():
    passages = _passages(20, size=400)  # about 100 tokens each
    budget = passage_budget(HISTORY, n_ctx=1024, max_tokens=512)
    prompt = with_documents(HISTORY, passages=passages, budget=budget)
    added = estimate_tokens(prompt.messages[-1]["content"]) - estimate_tokens(HISTORY[-1]["content"])
    assert 0 < len(prompt.sources) < 20
    assert added <= budget + estimate_tokens(INSTRUCTION) + 10
    assert "did not fit the context window" in prompt.notices[0]
    assert [s.number for s in prompt.sources] == list(range(1, len(prompt.sources) + 1))


def test_no_documents_changes_nothing():
    prompt = prompt_with_documents(HISTORY, FakeIndex({}, []), conversation_id="c", n_ctx=4096, max_tokens=256)
    assert prompt.mode == "none" and list(prompt.messages) == HISTORY and prompt.sources == ()


def test_sources_round_trip_through_json():
    prompt = with_documents(HISTORY, passages=_passages(2), budget=2000)
    assert sources_from_json(sources_json(prompt.sources)) == list(prompt.sources)
    assert prompt.sources[1].label == "f1.pdf · page 2"
    assert sources_from_json("not json") == [] and sources_from_json(None) == []


def test_a_follow_up_names_the_passages_already_given_instead_of_sending_them_again():
    index = FakeIndex({"book.txt": "y" * 100_000}, _passages(3))
    first = prompt_with_documents(HISTORY, index, conversation_id="c", n_ctx=4096, max_tokens=512)
    # The next turn: the first question as the model saw it, its answer, a follow-up.
    history = [*first.messages, {"role": "assistant", "content": "In 1932 [1]."},
               {"role": "user", "content": "Who built it?"}]
    index.passages = [_passages(5)[4], _passages(3)[1]]  # one new passage, one already given
    second = prompt_with_documents(history, index, conversation_id="c", n_ctx=4096, max_tokens=512,
                                   earlier=first.sources)
    assert list(second.messages[:-1]) == history[:-1]
    last = second.messages[-1]["content"]
    assert "[4] f4.pdf, page 5" in last and "passage 1 " not in last
    assert "Passages given earlier in this conversation that also apply: [2]." in last
    assert [(s.number, s.earlier) for s in second.sources] == [(4, False), (2, True)]
    assert second.sources[1].text == "" and second.sources[1].chunk_id == 1


def test_a_follow_up_about_the_same_passages_goes_as_typed():
    index = FakeIndex({"book.txt": "y" * 100_000}, _passages(3))
    first = prompt_with_documents(HISTORY, index, conversation_id="c", n_ctx=4096, max_tokens=512)
    history = [*first.messages, {"role": "assistant", "content": "In 1932 [1]."},
               {"role": "user", "content": "Who built it?"}]
    second = prompt_with_documents(history, index, conversation_id="c", n_ctx=4096, max_tokens=512,
                                   earlier=first.sources)
    assert list(second.messages) == history  # the passages and the instruction are just above it
    assert [(s.number, s.earlier) for s in second.sources] == [(1, True), (2, True), (3, True)]
    assert question_with_sources("Who built it?", second.sources) == "Who built it?"  # rebuilt the same


def test_a_stored_question_is_rebuilt_exactly_as_the_model_saw_it():
    prompt = with_documents(HISTORY, passages=_passages(3), budget=2000)
    stored = sources_from_json(sources_json(prompt.sources))
    assert question_with_sources(HISTORY[-1]["content"], stored) == prompt.messages[-1]["content"]
    assert question_with_sources("plain", []) == "plain"


def test_attachments_given_whole_earlier_are_not_sent_again():
    index = FakeIndex({"notes.md": "The bridge was built in 1932. " * 50}, [])
    first = prompt_with_documents(HISTORY, index, conversation_id="c", n_ctx=4096, max_tokens=512)
    history = [*first.messages, {"role": "assistant", "content": "1932 [1]."},
               {"role": "user", "content": "And who paid?"}]
    second = prompt_with_documents(history, index, conversation_id="c", n_ctx=4096, max_tokens=512,
                                   earlier=first.sources)
    assert second.mode == "whole" and index.searches == []
    assert second.messages[-1]["content"].count("The bridge was built") == 0
    assert [(s.number, s.whole, s.earlier) for s in second.sources] == [(1, True, True)]
