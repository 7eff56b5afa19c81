"""The document index on a real SQLite file: attachments, collections kept up to date, search, kills, rebuilds."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from model_store.documents.chunking import chunk_spans
from model_store.documents import index as index_module
from model_store.documents.index import DocumentIndex, match_expression, query_words

REPO = Path(__file__).resolve().parents[3]

LIGHTHOUSE = (
    "The Vallorn lighthouse stands on the northern cape.\n\n"
    + "Fishing boats leave the harbour before dawn and return with the tide. " * 20
    + "\n\nIn 1911 the keepers painted the lighthouse a deep ochre so that ships could see it against the snow.\n\n"
    + "The harbour master keeps a ledger of every ship that enters. " * 20
)


@pytest.fixture
def index(tmp_path: Path):
    index = DocumentIndex(tmp_path / "data" / "documents.db")
    yield index
    index.close()


def _folder(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_the_attachments_of_conversations_deleted_for_good_are_forgotten(index: DocumentIndex,
                                                                         tmp_path: Path) -> None:
    doc = tmp_path / "vallorn.md"
    doc.write_text(LIGHTHOUSE, encoding="utf-8")
    for conversation_id in ("kept", "purged"):
        index.attach(conversation_id, [doc])
    collection = index.add_collection("Docs", doc.parent)
    index.index_collection(collection.id)
    assert index.forget_other_conversations({"kept", "never attached"}) == 1
    assert index.attachments("purged") == [] and index.search("ochre", conversation_id="purged") == []
    assert [a.title for a in index.attachments("kept")] == ["vallorn.md"]
    assert index.search("ochre", collection_ids=[collection.id])  # collections are not a conversation's
    assert index.forget_other_conversations({"kept"}) == 0


def test_an_attachment_is_searchable_and_reads_back_whole(index: DocumentIndex, tmp_path: Path) -> None:
    doc = tmp_path / "vallorn.md"
    doc.write_text(LIGHTHOUSE, encoding="utf-8")
    report = index.attach("c1", [doc])
    assert (report.indexed, report.problems) == (1, [])
    [attachment] = index.attachments("c1")
    assert (attachment.title, attachment.chars) == ("vallorn.md", len(LIGHTHOUSE))
    assert attachment.tokens_estimate == -(-len(LIGHTHOUSE) // 4)
    assert index.attachment_texts("c1") == [(doc.resolve(), LIGHTHOUSE)]

    [best, *_] = index.search("What colour was the lighthouse painted?", conversation_id="c1", k=3)
    assert "ochre" in best.text and best.path == doc.resolve() and best.page is None
    assert LIGHTHOUSE[best.start:best.end] == best.text
    assert index.passage(best.chunk_id) == type(best)(**{**best.__dict__, "score": 0.0})
    assert index.search("ochre", conversation_id="someone else") == []

    index.detach("c1", doc.resolve())
    assert index.attachments("c1") == [] and index.search("ochre", conversation_id="c1") == []
    with pytest.raises(KeyError):
        index.passage(best.chunk_id)


def test_a_collection_is_indexed_incrementally(index: DocumentIndex, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "notes", {
        "a.txt": "apples grow in the orchard", "b.md": "bananas ripen in the sun",
        "sub/c.py": "def cherry():\n    return 'cherries are red'\n",
        ".hidden/secret.txt": "never indexed", "__pycache__/x.txt": "never indexed",
    })
    collection = index.add_collection("Notes", folder)
    seen = []
    first = index.index_collection(collection.id, progress=seen.append)
    assert (first.indexed, first.skipped_unchanged, first.removed, first.problems) == (3, 0, 0, [])
    assert seen[-1].done_files == seen[-1].total_files == 3
    [listed] = index.collections()
    assert (listed.name, listed.files, listed.chunks) == ("Notes", 3, 3) and listed.updated_at > 0
    assert index.search("never indexed", collection_ids=[collection.id]) == []

    again = index.index_collection(collection.id)
    assert (again.indexed, again.skipped_unchanged) == (0, 3)

    (folder / "a.txt").write_text("apricots replaced the apples", encoding="utf-8")
    os.utime(folder / "b.md", ns=(time.time_ns(), time.time_ns() + 10**9))  # touched, same content
    (folder / "sub/c.py").unlink()
    third = index.index_collection(collection.id)
    assert (third.indexed, third.skipped_unchanged, third.removed) == (1, 1, 1)
    assert [p.title for p in index.search("apricots", collection_ids=[collection.id])] == ["a.txt"]
    assert index.search("cherries", collection_ids=[collection.id]) == []
    assert index.index_collection(collection.id).skipped_unchanged == 2  # the touch was recorded

    index.remove_collection(collection.id)
    assert index.collections() == [] and index.search("apricots", collection_ids=[collection.id]) == []


def test_bad_files_are_each_a_reason_and_the_rest_is_indexed(index: DocumentIndex, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "mixed", {"good.txt": "the good file mentions zebras"})
    (folder / "blob.bin").write_bytes(bytes(range(256)) * 64)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "fake.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(2000))
    (folder / "latin.txt").write_bytes("café crème brûlée, très bien".encode("cp1252"))
    collection = index.add_collection("Mixed", folder)
    report = index.index_collection(collection.id)
    reasons = {path.name: reason for path, reason in report.problems}
    assert set(reasons) >= {"empty.txt", "fake.pdf"} and "good.txt" not in reasons
    assert all(isinstance(r, str) and r and not r.endswith(".") for r in reasons.values())
    assert report.indexed >= 2
    assert [p.title for p in index.search("zebras", collection_ids=[collection.id])] == ["good.txt"]
    assert "crème" in index.search("brûlée", collection_ids=[collection.id])[0].text


def test_a_file_that_disappears_before_it_is_read_is_a_reason(index: DocumentIndex, tmp_path: Path) -> None:
    gone = tmp_path / "gone.txt"
    kept = tmp_path / "kept.txt"
    kept.write_text("still here", encoding="utf-8")
    report = index.attach("c1", [gone, kept])
    assert report.indexed == 1 and [p.name for p, _ in report.problems] == ["gone.txt"]


@pytest.mark.parametrize("query", ['"unbalanced', "AND OR NOT", "NEAR(a b)", "col:umn", "*", "()", "a", "",
                                   "ünïcödé ΕΛΛΗΝΙΚΆ 漢字", "x' OR 1=1 --", "^start", "a" * 5000])
def test_any_question_is_a_safe_search(index: DocumentIndex, tmp_path: Path, query: str) -> None:
    doc = tmp_path / "d.txt"
    doc.write_text("AND OR NOT NEAR column star unbalanced quotes ünïcödé 漢字", encoding="utf-8")
    index.attach("c1", [doc])
    assert isinstance(index.search(query, conversation_id="c1"), list)


def test_the_match_expression_quotes_every_word() -> None:
    assert match_expression(query_words('What is "NEAR" AND x*?')) == '"what" OR "is" OR "near" OR "and"'


def test_a_word_in_most_passages_is_left_out_of_a_search_over_many(index: DocumentIndex, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    files = {f"note-{i}.txt": f"the common walrus note number {i}" for i in range(30)}
    files["rare.txt"] = "the narwhal returns"
    many = index.add_collection("Many", _folder(tmp_path / "many", files))
    index.index_collection(many.id)
    with index._reading() as db:  # counted as the index stems them: "returning" is held as "return"
        assert index_module._passages_per_word(db, ["the", "narwhal", "returning", "absent"]) == [31, 1, 1, 0]
        assert index_module._passages_per_word(db, ["the_narwhal", "_"]) == [1, 0]  # a phrase: its rarest token
    assert index_module._within_budget(["the", "narwhal"], [31, 1]) == ["the", "narwhal"]
    question = "the narwhal returning walrus"
    every_word = {p.path.name: p.score for p in index.search(question, collection_ids=[many.id], k=40)}
    monkeypatch.setattr(index_module, "POSTINGS_BUDGET", 10)
    assert index_module._within_budget(["the", "narwhal", "returning"], [31, 1, 1]) == ["narwhal", "returning"]
    assert index_module._within_budget(["the"], [31]) == ["the"]  # one word is always searched for
    found = index.search(question, collection_ids=[many.id], k=40)
    assert [p.path.name for p in found] == ["rare.txt"]  # no passage is found by "the" or "walrus" alone
    assert [p.path.name for p in index.search("the_narwhal", collection_ids=[many.id])] == ["rare.txt"]
    assert found[0].score == pytest.approx(every_word["rare.txt"])  # "the" still counts in its score


def test_a_passage_that_holds_only_the_rarest_word_is_found_with_its_whole_score(
        index: DocumentIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {f"note-{i}.txt": f"the common walrus note number {i}" for i in range(30)}
    files.update({"tusk.txt": "a narwhal tusk", "both.txt": "a narwhal beside a walrus"})
    many = index.add_collection("Many", _folder(tmp_path / "many", files))
    index.index_collection(many.id)
    monkeypatch.setattr(index_module, "COMMON_SHARE", 1.0)  # "walrus" is in most passages: keep it
    every_word = {p.path.name: p.score for p in index.search("narwhal walrus", collection_ids=[many.id], k=40)}
    monkeypatch.setattr(index_module, "POSTINGS_BUDGET", 5)  # "narwhal" chooses, "walrus" only scores
    found = {p.path.name: p.score for p in index.search("narwhal walrus", collection_ids=[many.id], k=40)}
    assert set(found) == {"tusk.txt", "both.txt"}  # tusk.txt holds no other word of the question
    assert found == pytest.approx({name: every_word[name] for name in found})


def test_a_search_among_the_rarest_words_ranks_them_as_bm25_over_every_word(
        index: DocumentIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.retrieval.corpus import load_questions, write_corpus

    write_corpus(tmp_path / "docs")
    docs = index.add_collection("Docs", tmp_path / "docs")
    index.index_collection(docs.id)
    monkeypatch.setattr(index_module, "POSTINGS_BUDGET", 300)
    monkeypatch.setattr(index_module, "COMMON_SHARE", 1.0)
    rows = lambda db, words: db.execute(  # noqa: E731 - every passage holding a word, with its bm25 score
        "SELECT rowid, -bm25(chunk_text, 2.0, 1.0) FROM chunk_text WHERE chunk_text MATCH ?",
        (match_expression(words),))
    lacking_the_others = 0
    with index._reading() as db:
        for question in load_questions()[:15]:
            words = query_words(question.question)
            held = dict(zip(words, index_module._passages_per_word(db, words)))
            choosing = index_module._within_budget(words, [held[w] for w in words])
            among = {chunk_id for chunk_id, _ in rows(db, choosing)}
            scores = {chunk_id: score for chunk_id, score in rows(db, words) if chunk_id in among}
            expected = sorted(scores.values(), reverse=True)[:10]
            found = index._keyword_ranking(question.question, [(index_module.COLLECTION, docs.id)], 10)
            assert [score for _, score in found] == pytest.approx(expected)
            assert all(score == pytest.approx(scores[chunk_id]) for chunk_id, score in found)
            with_others = {chunk_id for chunk_id, _ in rows(db, [w for w in words if w not in choosing])}
            lacking_the_others += sum(chunk_id not in with_others for chunk_id, _ in found)
    assert lacking_the_others  # some of them were found by "chosen NOT <commonest>"


def test_the_words_a_question_is_scored_by() -> None:
    held = {"the": 40, "narwhal": 1, "absent": 0, "walrus": 35}
    assert index_module._informative(["the", "narwhal", "absent", "walrus"], held, 100) == ["narwhal", "walrus"]
    assert index_module._informative(["the", "absent"], held, 100) == ["the"]  # the rarest of common words stays
    assert index_module._informative(["absent"], held, 100) == []


def test_what_a_search_remembers_of_the_words_is_forgotten_when_passages_come(index: DocumentIndex,
                                                                            tmp_path: Path) -> None:
    first = _folder(tmp_path / "a", {"a.txt": "otters by the river"}) / "a.txt"
    later = _folder(tmp_path / "b", {"b.txt": "a zebra by the river"}) / "b.txt"
    index.attach("c1", [first])
    assert index.search("zebra river", conversation_id="c1")[0].title == "a.txt"  # "zebra": no passage yet
    index.attach("c1", [later])
    assert index.search("zebra river", conversation_id="c1")[0].title == "b.txt"


def test_search_sees_only_the_collections_and_conversation_asked_for(index: DocumentIndex, tmp_path: Path) -> None:
    one = index.add_collection("One", _folder(tmp_path / "one", {"x.txt": "walrus in collection one"}))
    two = index.add_collection("Two", _folder(tmp_path / "two", {"y.txt": "walrus in collection two"}))
    index.index_collection(one.id)
    index.index_collection(two.id)
    attached = _folder(tmp_path / "att", {"z.txt": "walrus attached to a chat"}) / "z.txt"
    index.attach("chat", [attached])
    titles = lambda **scope: sorted(p.title for p in index.search("walrus", **scope))  # noqa: E731
    assert titles(collection_ids=[one.id]) == ["x.txt"]
    assert titles(collection_ids=[one.id, two.id]) == ["x.txt", "y.txt"]
    assert titles(conversation_id="chat") == ["z.txt"]
    assert titles(collection_ids=[two.id], conversation_id="chat") == ["y.txt", "z.txt"]
    assert titles(collection_ids=[one.id, two.id], conversation_id="chat") == ["x.txt", "y.txt", "z.txt"]  # all
    assert titles() == []


def test_searches_run_while_a_folder_is_indexed(index: DocumentIndex, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "many", {f"f{i:04}.txt": f"file {i} talks about otters and rivers" for i in range(400)})
    collection = index.add_collection("Many", folder)
    errors: list[Exception] = []
    found: list[int] = []
    done = threading.Event()

    def search_meanwhile() -> None:
        while not done.is_set():
            try:
                found.append(len(index.search("otters", collection_ids=[collection.id], k=5)))
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

    searcher = threading.Thread(target=search_meanwhile)
    searcher.start()
    try:
        report = index.index_collection(collection.id)
    finally:
        done.set()
        searcher.join()
    assert errors == [] and report.indexed == 400 and found and max(found) <= 5
    assert len(index.search("otters", collection_ids=[collection.id], k=5)) == 5


def test_cancel_stops_between_files_and_the_next_run_finishes(index: DocumentIndex, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "c", {f"{i}.txt": f"text {i}" for i in range(50)})
    collection = index.add_collection("C", folder)
    cancel = threading.Event()
    cancel.set()
    assert index.index_collection(collection.id, cancel=cancel).cancelled
    report = index.index_collection(collection.id)
    assert report.indexed == 50 and not report.cancelled


KILLED_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from model_store.documents.index import DocumentIndex
    index = DocumentIndex(Path(sys.argv[1]))
    collection = index.add_collection("Big", Path(sys.argv[2]))
    print(collection.id, flush=True)
    index.index_collection(collection.id)
""")


def _files_kept(db_path: Path) -> int:
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT COUNT(*) FROM files").fetchone()[0]


def test_the_index_survives_a_kill_mid_indexing(tmp_path: Path) -> None:
    text = LIGHTHOUSE * 8  # ~70 MB in all: indexing takes seconds, so the kill lands in the middle
    folder = _folder(tmp_path / "big", {f"{i:05}.txt": text.replace("ochre", f"colour{i}") for i in range(3000)})
    db_path = tmp_path / "documents.db"
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(db_path), str(folder), str(REPO)],
                             stdout=subprocess.PIPE, text=True)
    collection_id = child.stdout.readline().strip()
    deadline = time.monotonic() + 60
    while _files_kept(db_path) == 0 and time.monotonic() < deadline:  # the first batch is committed
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    index = DocumentIndex(db_path)
    try:
        kept = index.collections()[0].files
        assert 0 < kept < 3000
        report = index.index_collection(collection_id)
        assert report.skipped_unchanged == kept and report.indexed == 3000 - kept
        assert index.search("colour2999", collection_ids=[collection_id])[0].title == "02999.txt"
    finally:
        index.close()


def test_rebuild_reads_every_file_again(index: DocumentIndex, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "r", {"a.txt": "original words"})
    collection = index.add_collection("R", folder)
    index.index_collection(collection.id)
    attached = _folder(tmp_path / "att", {"b.txt": "attached words"}) / "b.txt"
    index.attach("chat", [attached])
    stat = (folder / "a.txt").stat()
    (folder / "a.txt").write_text("replaced words", encoding="utf-8")  # same size and time: only a rebuild sees it
    os.utime(folder / "a.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert index.index_collection(collection.id).indexed == 0
    report = index.rebuild()
    assert report.indexed == 2
    assert index.search("replaced", collection_ids=[collection.id])[0].title == "a.txt"
    assert index.search("attached", conversation_id="chat")[0].title == "b.txt"


def test_chunks_cover_the_text_and_end_at_boundaries() -> None:
    text = LIGHTHOUSE * 3
    spans = chunk_spans(text)
    assert "".join(text[s:e] for s, e in spans) == text
    assert all(e - s <= 1000 for s, e in spans)
    assert all(text[e - 1] in " \n" for _, e in spans[:-1])
    assert chunk_spans("x" * 2500) == [(0, 1000), (1000, 2000), (2000, 2500)]
    assert chunk_spans("   \n\n  ") == []


class WordHashEmbedder:
    """A test double for an embedding model: words hashed into 64 buckets (similar words, similar vectors)."""

    name = "word-hash-64"
    dimensions = 64

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        rows = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in zip(rows, texts):
            for word in text.lower().split():
                row[hash(word.strip(".,?")) % self.dimensions] += 1
            row /= max(np.linalg.norm(row), 1e-9)
        return rows


def test_with_an_embedder_search_is_hybrid(tmp_path: Path) -> None:
    embedder = WordHashEmbedder()
    index = DocumentIndex(tmp_path / "documents.db", embedder=embedder)
    try:
        folder = _folder(tmp_path / "h", {"a.txt": LIGHTHOUSE, "b.txt": "nothing about boats at all"})
        collection = index.add_collection("H", folder)
        index.index_collection(collection.id)
        assert index._vectors.count() == len(chunk_spans(LIGHTHOUSE)) + 1
        [best, *_] = index.search("painted ochre lighthouse", collection_ids=[collection.id])
        assert "ochre" in best.text
        assert embedder.calls >= 2  # the passages, then the question
    finally:
        index.close()
    other = DocumentIndex(tmp_path / "documents.db", embedder=type("Other", (WordHashEmbedder,), {"name": "other"})())
    try:
        assert other._vectors.count() == 0  # another model's vectors are dropped, and made again
        assert other.embed_pending() == len(chunk_spans(LIGHTHOUSE)) + 1
    finally:
        other.close()


def test_a_damaged_index_file_is_put_aside_and_a_new_one_started(tmp_path: Path) -> None:
    from model_store.documents.index import open_index

    path = tmp_path / "documents.db"
    index, damaged = open_index(path)
    assert damaged is None
    index.close()
    path.write_bytes(b"this is not a database" * 100)
    index, damaged = open_index(path)
    try:
        assert damaged and "started a new one" in damaged and "Your files are untouched" in damaged
        kept = [p for p in tmp_path.iterdir() if p.name.startswith("documents.db.damaged-")]
        assert [p.read_bytes()[:22] for p in kept if not p.name.endswith(("-wal", "-shm"))] == [b"this is not a database"]
        assert index.collections() == []
    finally:
        index.close()


def test_a_folder_of_20000_files_is_indexed_and_then_skipped(index: DocumentIndex, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    for d in range(200):
        _folder(folder / f"d{d:03}", {f"n{i:03}.txt": f"note {d}-{i} about otters" for i in range(100)})
    (folder / "d000" / "photo.jpg").write_bytes(b"\xff\xd8\xff")  # skipped by name, without opening it
    collection = index.add_collection("Many", folder)
    seen: list = []
    report = index.index_collection(collection.id, progress=seen.append)
    assert (report.indexed, report.problems) == (20_000, [])
    assert len(seen) < 200 and seen[-1].done_files == seen[-1].total_files == 20_000  # a few a second at most
    assert index.index_collection(collection.id).skipped_unchanged == 20_000
    assert index.search("note 123-45", collection_ids=[collection.id], k=1)[0].title == "n045.txt"
