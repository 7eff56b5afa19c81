"""Conversation storage figures (issue 4). The last line printed is one JSON object.

    python tests/benchmarks/storage_figures.py [--kills N] [--quick]

- kill_during_stream: the real app (stream_driver.py) is SIGKILLed at a random
  moment while a reply streams, N times on the same profile. After each kill:
  ``PRAGMA integrity_check``, every message seen committed before the kill is
  still there (a streaming one at least as long), and how many seconds of the
  streaming reply's text were lost (from the text the window showed).
- open_10k_ms: process start to the window shown with its newest conversation
  rendered, on a 10,000-message database; the same on an empty one as baseline.
- search_ms_p95: full-text search over those 10,000 messages (100 queries);
  a plain ``LIKE`` scan counting the same words as baseline (words from a
  20-word vocabulary, so most queries match thousands of messages: a hard case).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from model_store.conversations import ConversationStore  # noqa: E402
from tests.benchmarks.startup import app_start_times  # noqa: E402
from tests.gguf_factory import write_random_gemma3  # noqa: E402

WORDS = ("river mountain bread music owl garden tea snow star train harbour lantern copper meadow violin "
         "glacier orchard falcon canyon velvet").split()


def snapshot(db_path: Path) -> dict[str, tuple[str, str]]:
    """Committed messages right now: id -> (content, status)."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        return {row[0]: (row[1], row[2]) for row in db.execute("SELECT id, content, status FROM messages")}
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()


def one_kill(home: Path, model: Path, rng: random.Random) -> dict:
    """Start the app, kill it mid-reply, and check what the database kept."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    child = subprocess.Popen([sys.executable, str(REPO / "tests" / "benchmarks" / "stream_driver.py"),
                              "--home", str(home), "--model", str(model)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    chunks: list[tuple[float, str, int]] = []
    reader = threading.Thread(target=lambda: [chunks.append((float(t), mid, int(n))) for _, t, mid, n in
                                              (line.split() for line in child.stdout if line.startswith("chunk"))],
                              daemon=True)
    reader.start()
    deadline = time.time() + 120
    while not chunks and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.1, 3.0))
    before = snapshot(home / "conversations.db")
    killed_at = time.time()
    child.send_signal(signal.SIGKILL)
    child.wait()
    reader.join(5)

    db = sqlite3.connect(home / "conversations.db")
    integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    after = {row[0]: row[1] for row in db.execute("SELECT id, content FROM messages")}
    db.close()
    lost = [mid for mid, (content, _) in before.items() if not after.get(mid, "").startswith(content)]
    streaming_id = chunks[-1][1] if chunks else None
    saved = len(after.get(streaming_id, ""))
    shown = [(t, n) for t, mid, n in chunks if mid == streaming_id and t <= killed_at]
    first_unsaved = next((t for t, n in shown if n > saved), None)
    return {"integrity": integrity, "lost_messages": len(lost),
            "lost_seconds": max(0.0, killed_at - first_unsaved) if first_unsaved else 0.0,
            "shown_chars": shown[-1][1] if shown else 0, "saved_chars": saved}


def kill_during_stream(kills: int, model: Path) -> dict:
    rng = random.Random(4)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        for index in range(kills):
            rows.append(one_kill(home, model, rng))
            print(f"kill {index + 1}/{kills}: {rows[-1]}", file=sys.stderr, flush=True)
        messages = len(snapshot(home / "conversations.db"))
    seconds = sorted(row["lost_seconds"] for row in rows)
    return {
        "kills": kills,
        "integrity_ok": sum(row["integrity"] == "ok" for row in rows),
        "committed_messages_lost": sum(row["lost_messages"] for row in rows),
        "partial_reply_lost_s_p95": round(seconds[int(len(seconds) * 0.95) - (len(seconds) >= 20)], 3),
        "partial_reply_lost_s_max": round(seconds[-1], 3),
        "messages_at_end": messages,
    }


def fill_database(path: Path, conversations: int = 50, per_conversation: int = 200) -> None:
    """10,000 messages of varied text in 50 conversations."""
    store = ConversationStore(path)
    rng = random.Random(1)
    store._db.execute("BEGIN")
    for index in range(conversations):
        conversation = store._db.execute(
            "INSERT INTO conversations (id, title, created_at, updated_at) VALUES (?, ?, ?, ?) RETURNING id",
            (f"c{index}", f"Chat {index} about {rng.choice(WORDS)}", index, index)).fetchone()[0]
        parent = None
        for number in range(per_conversation):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 80)))
            message_id = f"{conversation}-m{number}"
            store._db.execute(
                "INSERT INTO messages (id, conversation_id, parent_id, role, content, status, created_at) "
                "VALUES (?, ?, ?, ?, ?, 'complete', ?)",
                (message_id, conversation, parent, ("user", "assistant")[number % 2], text, index + number / 1e4))
            parent = message_id
        store._db.execute("UPDATE conversations SET current_leaf_id = ? WHERE id = ?", (parent, conversation))
    store._db.execute("COMMIT")
    store.close()


def search_figures(path: Path, queries: int = 100) -> dict:
    store = ConversationStore(path)
    rng = random.Random(2)
    fts, like = [], []
    for _ in range(queries):
        query = " ".join(rng.sample(WORDS, 2))
        started = time.perf_counter()
        store.search(query)
        fts.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        store._db.execute("SELECT count(*) FROM messages WHERE content LIKE ? AND content LIKE ?",
                          tuple(f"%{word}%" for word in query.split())).fetchall()
        like.append((time.perf_counter() - started) * 1000)
    store.close()
    return {"search_ms_p95": round(sorted(fts)[int(queries * 0.95)], 2),
            "search_ms_median": round(statistics.median(fts), 2),
            "like_scan_ms_p95": round(sorted(like)[int(queries * 0.95)], 2)}


def open_figures(runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        full, empty = Path(tmp) / "full", Path(tmp) / "empty"
        for home in (full, empty):
            (home / "data").mkdir(parents=True)
        fill_database(full / "data" / "conversations.db")
        timings = {"full": [], "empty": []}
        for _ in range(runs):  # interleaved, so load drifts hit both
            for name, home in (("full", full), ("empty", empty)):
                timings[name].append(app_start_times(home)["window_shown_s"])
        search = search_figures(full / "data" / "conversations.db")
    full_ms = statistics.median(timings["full"]) * 1000
    empty_ms = statistics.median(timings["empty"]) * 1000
    return {"open_10k_ms": round(full_ms), "open_empty_ms": round(empty_ms),
            "open_10k_ratio": round(full_ms / empty_ms, 2), **search}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="20 kills and one start-up run")
    args = parser.parse_args()
    figures = open_figures(runs=1 if args.quick else 3)
    print(json.dumps(figures), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = write_random_gemma3(Path(tmp) / "random-gemma-3-270m-it.gguf", hidden=640, layers=18, heads=4,
                                    kv_heads=1, head_dim=256, ff=2048, sliding_window=512, vocab_size=262144)
        figures.update(kill_during_stream(20 if args.quick else args.kills, model))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
