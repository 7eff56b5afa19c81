"""What the model sees when a conversation chats with documents: the user's question with its passages.

Qt-free. Small attachments that fit the context window go in whole; otherwise
the index is searched and the best passages go in, numbered ``[1]..[k]`` with
file and page. They are added to the user message they answer, never to the
system prompt, and each reply stores the passages it was given (with their
text, :func:`sources_json`). Later turns rebuild those earlier questions
exactly as the model saw them (:func:`question_with_sources`), so the
conversation's prefix stays in the engine's prompt cache, and a passage or
document already in the conversation is not sent again: the new question
only names it by its number, or, when all its passages were given earlier,
goes as typed. A follow-up about the same passages therefore costs about what
a plain follow-up costs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

CHARS_PER_TOKEN = 4  # a rough estimate that errs on the safe side for English prose
RESERVE_TOKENS = 96  # chat-template markup and the instruction itself
EXCERPT_CHARS = 240
DEFAULT_PASSAGES = 6

INSTRUCTION = (
    "Answer the question from the numbered passages below. Cite each passage you use as [n]. "
    "If the passages do not contain the answer, say so."
)


def estimate_tokens(text: str) -> int:
    """About how many tokens ``text`` takes (4 characters a token, rounded up)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class Source:
    """One numbered passage (or whole document) given to the model.

    ``chunk_id`` is None for a whole document; ``page`` is None where the file has no pages.
    """

    number: int
    path: str
    title: str
    page: int | None = None
    chunk_id: int | None = None
    excerpt: str = ""
    text: str = ""  # what the model was given (to rebuild the question in later turns)
    whole: bool = False  # a whole document rather than a passage
    earlier: bool = False  # given in an earlier turn: this turn only names it

    @property
    def key(self) -> tuple[str, int | None]:
        """What makes two sources the same document text: a passage's id, or a whole document's path."""
        return (self.path, None) if self.whole else ("", self.chunk_id)

    @property
    def label(self) -> str:
        """"report.pdf · page 3" (or just the title)."""
        return f"{self.title} · page {self.page}" if self.page else self.title


@dataclass(frozen=True)
class DocumentPrompt:
    """The messages to send, the sources they carry, and sentences to show the user.

    ``mode`` is "none" (nothing was added), "whole" (attachments in whole) or "retrieval".
    """

    messages: tuple[dict[str, Any], ...]
    sources: tuple[Source, ...] = ()
    notices: tuple[str, ...] = ()
    mode: str = "none"


class _Index(Protocol):  # what this module needs of model_store.documents.DocumentIndex
    def attachments(self, conversation_id: str) -> list: ...
    def attachment_texts(self, conversation_id: str) -> list[tuple[Any, str]]: ...  # (path, text)
    def search(self, query: str, *, collection_ids=(), conversation_id=None, k: int = 5) -> list: ...


def passage_budget(messages: Sequence[dict[str, Any]], *, n_ctx: int, max_tokens: int) -> int:
    """Tokens left for documents: the context window less the reply, the conversation and a reserve (≥ 0)."""
    used = sum(estimate_tokens(str(m.get("content", ""))) + 4 for m in messages)
    reply = min(max_tokens, n_ctx // 2)  # a reply limit as long as the window would leave no room at all
    return max(0, n_ctx - reply - used - RESERVE_TOKENS)


def with_documents(
    messages: Sequence[dict[str, Any]],
    *,
    whole: Sequence[tuple[str, str, str]] = (),
    passages: Sequence[Any] = (),
    budget: int,
    earlier: Sequence[Source] = (),
) -> DocumentPrompt:
    """Put whole documents and/or passages into the last user message, within ``budget`` tokens.

    Args:
        messages: the conversation as the model would see it; the last one is the user's question.
        whole: (path, title, text) of documents that go in whole (the caller checked they fit).
        passages: search results (``Passage``-shaped: chunk_id, path, title, page, text), best first;
            those that do not fit what is left of ``budget`` are left out.
        budget: tokens the documents may take (see :func:`passage_budget`).
        earlier: the sources already in the conversation (earlier turns): those are named by their
            number instead of being sent again; new ones are numbered after them.

    Returns:
        The new messages (the others unchanged), the sources (earlier ones marked), and notices.
    """
    messages = [dict(m) for m in messages]
    if not messages or messages[-1].get("role") != "user" or not (whole or passages):
        return DocumentPrompt(messages=tuple(messages))
    given = {source.key: source for source in earlier}
    number = max((source.number for source in earlier), default=0)
    sources: list[Source] = []
    notices: list[str] = []
    left = budget
    for path, title, text in whole:
        known = given.get((str(path), None))
        if known is not None:
            sources.append(replace(known, earlier=True, text=""))
            continue
        number += 1
        source = Source(number=number, path=str(path), title=title, excerpt=_excerpt(text), text=text.strip(),
                        whole=True)
        sources.append(source)
        left -= estimate_tokens(source.text)
        notices.append(f"{title} goes in whole ({estimate_tokens(source.text):,} tokens).")
    left_out = 0
    for passage in passages:
        known = given.get(("", passage.chunk_id))
        if known is not None:
            sources.append(replace(known, earlier=True, text=""))
            continue
        page = getattr(passage, "page", None) or None
        source = Source(number=number + 1, path=str(passage.path), title=str(passage.title), page=page,
                        chunk_id=passage.chunk_id, excerpt=_excerpt(passage.text), text=str(passage.text).strip())
        cost = estimate_tokens(_block(source)) + 2
        if cost > left:
            left_out += 1
            continue
        left -= cost
        number += 1
        sources.append(source)
    if passages and not whole:
        found = len(sources)
        notices.append(f"{found} passage{'s' if found != 1 else ''} from your documents go with the question"
                       + (f" ({left_out} more did not fit the context window)." if left_out else "."))
    if not sources:
        return DocumentPrompt(messages=tuple(messages), notices=tuple(notices))
    messages[-1]["content"] = question_with_sources(str(messages[-1].get("content", "")), sources)
    return DocumentPrompt(messages=tuple(messages), sources=tuple(sources), notices=tuple(notices),
                          mode="whole" if whole else "retrieval")


def question_with_sources(question: str, sources: Sequence[Source]) -> str:
    """The user message the model sees: the instruction, the new passages in full, the earlier ones by number.

    When every source was given earlier, the question goes as typed: the passages and the
    instruction are in the conversation above it, and repeating even their numbers would cost
    more to compute than the question itself. Deterministic: a later turn rebuilds an earlier
    question from its stored sources to exactly the text the model saw then (so the engine's
    prompt cache still holds it).
    """
    new = [_block(source) for source in sources if not source.earlier]
    if not new:
        return question
    old = sorted(source.number for source in sources if source.earlier)
    parts = [INSTRUCTION, "\n\n".join(new)]
    if old:
        parts.append(f"Passages given earlier in this conversation that also apply: "
                     f"{', '.join(f'[{n}]' for n in old)}.")
    return "\n\n".join(parts) + f"\n\nQuestion: {question}"


def _block(source: Source) -> str:
    heading = f"[{source.number}] {source.title}" + (" (the whole document)" if source.whole else "")
    if source.page:
        heading += f", page {source.page}"
    return f"{heading}\n{source.text}"


def prompt_with_documents(
    messages: Sequence[dict[str, Any]],
    index: _Index,
    *,
    conversation_id: str | None,
    collection_ids: Sequence[str] = (),
    n_ctx: int,
    max_tokens: int,
    k: int = DEFAULT_PASSAGES,
    earlier: Sequence[Source] = (),
) -> DocumentPrompt:
    """The prompt for the last user message of ``messages``, with this conversation's documents.

    Attachments that all fit the budget go in whole; otherwise (or for
    collections) the index is searched with the user's question. ``earlier``: the
    sources already given in this conversation (see :func:`with_documents`). Slow
    (reads and searches the index): call it off the GUI thread.
    """
    if not messages or messages[-1].get("role") != "user":
        return DocumentPrompt(messages=tuple(messages))
    attached = index.attachments(conversation_id) if conversation_id else []
    if not attached and not collection_ids:
        return DocumentPrompt(messages=tuple(messages))
    budget = passage_budget(messages, n_ctx=n_ctx, max_tokens=max_tokens)
    whole: list[tuple[str, str, str]] = []
    already_whole = {source.path for source in earlier if source.whole}
    new_tokens = sum(a.tokens_estimate for a in attached if str(a.path) not in already_whole)
    if attached and new_tokens <= budget and not collection_ids:
        texts = {str(path): text for path, text in index.attachment_texts(conversation_id)}
        whole = [(str(a.path), a.title, texts.get(str(a.path), "")) for a in attached]
        return with_documents(messages, whole=whole, budget=budget, earlier=earlier)
    question = str(messages[-1].get("content", ""))
    found = index.search(question, collection_ids=tuple(collection_ids),
                         conversation_id=conversation_id if attached else None, k=k)
    return with_documents(messages, passages=found, budget=budget, earlier=earlier)


def sources_json(sources: Sequence[Source]) -> str:
    """The JSON stored on a reply's ``sources``."""
    return json.dumps([asdict(s) for s in sources], ensure_ascii=False)


def sources_from_json(text: str | None) -> list[Source]:
    """The sources stored on a reply (an empty list for none or unreadable JSON)."""
    try:
        items = json.loads(text or "[]")
        return [Source(**{k: v for k, v in item.items() if k in Source.__dataclass_fields__}) for item in items]
    except (ValueError, TypeError, AttributeError):
        return []


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[:EXCERPT_CHARS].rstrip() + "…"


def display_name(path: str | Path) -> str:
    """A file's name as shown in chips and citations."""
    return Path(path).name
