"""A real corpus for retrieval tests: Python's own documentation, as shipped in every Python install.

``pydoc_data.topics.topics`` maps a help topic ("nonlocal", "typesseq", ...) to the text of that section of
the Language Reference or the Library Reference (about 80 topics, half a megabyte). Each topic becomes one
plain-text file. ``questions.json`` beside this file holds questions a person might ask of it, each with
the topic that answers it and a short phrase of that answer: a passage holds the answer when it contains
the phrase (whitespace normalised). Some sections are repeated in a larger topic ("compound" holds "if",
"while", "try", ...; "specialnames" holds "customization"), so any passage that holds the phrase counts.

The phrases were checked against the topics of Python 3.11, 3.13 and 3.14, whose wording differs here
and there; ``tests/retrieval/test_recall.py`` checks them against the running Python.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydoc_data.topics import topics

QUESTIONS_FILE = Path(__file__).with_name("questions.json")

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Question:
    """A question, the topic (file stem) that answers it, and a short phrase of the answer."""

    question: str
    topic: str
    answer: str


def topic_texts() -> dict[str, str]:
    """Every topic's text, by topic name, in name order."""
    return {name: topics[name] for name in sorted(topics)}


def write_corpus(folder: Path, topic_names: Sequence[str] | None = None) -> list[Path]:
    """Write each topic (or only ``topic_names``) as ``<topic>.txt`` under ``folder``; returns the files.

    ``folder`` is created if missing. The same Python writes the same files, byte for byte, in name order.

    Raises:
        KeyError: a name in ``topic_names`` is not a topic.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    texts = topic_texts()
    names = sorted(texts) if topic_names is None else sorted(set(topic_names))
    written = []
    for name in names:
        path = folder / f"{name}.txt"
        path.write_text(texts[name], encoding="utf-8", newline="\n")
        written.append(path)
    return written


def load_questions() -> list[Question]:
    """The question set, in file order."""
    return [Question(**entry) for entry in json.loads(QUESTIONS_FILE.read_text(encoding="utf-8"))]


def normalise(text: str) -> str:
    """``text`` with every run of whitespace made one space (line breaks differ between Python versions)."""
    return _SPACE.sub(" ", text).strip()


def holds(text: str, answer: str) -> bool:
    """Whether ``text`` contains ``answer``, whitespace normalised on both sides."""
    return normalise(answer) in normalise(text)


def answer_rank(passages: Sequence, answer: str) -> int | None:
    """The 0-based rank of the first passage (anything with ``.text``) that holds ``answer``, or None."""
    for rank, passage in enumerate(passages):
        if holds(passage.text, answer):
            return rank
    return None


def recall_at(index, collection_ids: Sequence[str], questions: Sequence[Question], k: int = 5
              ) -> tuple[float, list[Question]]:
    """Fraction of ``questions`` whose top ``k`` passages from ``index`` hold the answer, and those missed."""
    missed = [q for q in questions
              if answer_rank(index.search(q.question, collection_ids=collection_ids, k=k), q.answer) is None]
    return 1 - len(missed) / len(questions), missed
