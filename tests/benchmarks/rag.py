"""Figures for chatting with documents, in the real window with the built-in model.

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/rag.py [--files 1000] [--trials 3]

Prints one JSON object:
- ``rag_ttft_overhead``: time from Send to the first token of a follow-up question about the same
  passages (the second turn of a conversation whose long file is searched), divided by the same two
  questions without documents (same model; the history prefix is cached in both). The first question's
  passages stay in the history exactly as sent, so they are cached; the follow-up only names them.
  Measured in the window, so the search itself counts (``search_s`` alone).
- ``rag_ttft_overhead_whole``: the same with a small file that goes in whole.
- ``rag_ttft_overhead_new_passages``: a second question about another part of the file, whose passages
  are new and must be prefilled (about 1,200 tokens here): the cost of retrieval when nothing is cached.
- ``index_ui_gap_max_ms``: the longest the GUI thread was late (tests/gui/heartbeat.py) while a folder of
  ``index_files`` files was indexed as a collection, in ``index_s`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from PySide6.QtWidgets import QApplication  # noqa: E402

from gui.app import shut_down  # noqa: E402
from gui.documents import DocumentsController, DocumentTasks  # noqa: E402
from inference.document_prompt import prompt_with_documents  # noqa: E402
from model_store.builtin_model import ensure_builtin_model, packaged_gemma_chunks  # noqa: E402
from model_store.paths import AppPaths  # noqa: E402
from model_store.registry import ModelRegistry  # noqa: E402
from tests.benchmarks.gui_figures import open_window, send, wait_until  # noqa: E402
from tests.gui.heartbeat import Heartbeat  # noqa: E402
from model_store.documents.index import DocumentIndex  # noqa: E402
from tests.gui.test_documents_window import _long_document  # noqa: E402

FOLLOW_UP = ("What colour was the Vallorn lighthouse painted?", "Which keeper painted the Vallorn lighthouse?")
NEW_PASSAGES = ("Tell me about the harbour ledger.", "What colour was the Vallorn lighthouse painted?")
SMALL_FILE = "The Vallorn lighthouse was painted green in 1911 by the keeper Ada Morrow.\n" * 6


def time_to_first_token(app: QApplication, window, text: str) -> float:
    """Seconds from Send to the first text of the reply; waits for the reply to end."""
    start = time.perf_counter()
    send(app, window, text)
    wait_until(app, lambda: window.panel.active is None or bool(window.panel.session.branch()[-1].content))
    first = time.perf_counter() - start
    wait_until(app, lambda: window.panel.active is None)
    return first


def second_turn_ttft(app: QApplication, window, document: Path | None, trial: int,
                     questions: tuple[str, str]) -> float:
    """Each trial asks new questions (of a new file): nothing is cached from an earlier trial but the history."""
    window.new_conversation()
    if document is not None:
        window.documents.attach([document])
        wait_until(app, lambda: window.panel.chips.titles != [])
    time_to_first_token(app, window, f"{questions[0]} (trial {trial})")
    return time_to_first_token(app, window, f"{questions[1]} (trial {trial})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    app = QApplication(sys.argv)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        paths = AppPaths.under(home / "builtin")
        paths.create()
        model = ensure_builtin_model(ModelRegistry(paths.registry_file), paths.models_dir, packaged_gemma_chunks())
        ui = open_window(model.path, home, max_tokens=8, temperature=0.0, seed=1)
        tasks = DocumentTasks(DocumentIndex(home / "documents.db"))
        window = ui.window
        window.documents = DocumentsController(window, tasks)
        wait_until(app, lambda: window.panel.model_name is not None)
        runs: dict[str, list[float]] = {name: [] for name in ("plain", "follow_up", "plain_new", "new", "whole")}
        for trial in range(args.trials):
            long_file = _long_document(home / f"harbour-{trial}.md", trial)
            small_file = home / f"small-{trial}.md"
            small_file.write_text(SMALL_FILE.replace("1911", str(1900 + trial)), encoding="utf-8")
            runs["plain"].append(second_turn_ttft(app, window, None, trial, FOLLOW_UP))
            runs["follow_up"].append(second_turn_ttft(app, window, long_file, trial, FOLLOW_UP))
            runs["whole"].append(second_turn_ttft(app, window, small_file, trial, FOLLOW_UP))
            runs["plain_new"].append(second_turn_ttft(app, window, None, trial + 100, NEW_PASSAGES))
            runs["new"].append(second_turn_ttft(app, window, long_file, trial + 100, NEW_PASSAGES))
        median = {name: statistics.median(values) for name, values in runs.items()}
        conversation_id = window.panel.session.conversation_id
        history = window.panel.session.prompt_for(window.panel.session.branch()[-2])
        searches = []
        for _ in range(5):
            start = time.perf_counter()
            prompt_with_documents(history, tasks.index, conversation_id=conversation_id,
                                  n_ctx=window.context_length(), max_tokens=8)
            searches.append(time.perf_counter() - start)

        folder = home / "library"
        folder.mkdir()
        for i in range(args.files):
            (folder / f"note-{i:04}.md").write_text(f"# Note {i}\n\n" + f"Paragraph about topic {i}. " * 150,
                                                    encoding="utf-8")
        heartbeat = Heartbeat()
        start = time.perf_counter()
        window.documents.keep_as_collection(folder, "Library")
        wait_until(app, lambda: window.documents.status.text().startswith("Indexing"), timeout_s=60)
        wait_until(app, lambda: tasks.wait_idle(0) and window.documents.status.text() == "", timeout_s=1800)
        index_s = time.perf_counter() - start
        heartbeat.stop()
        tasks.close()
        shut_down(ui)
    print(json.dumps({
        "rag_ttft_overhead": round(median["follow_up"] / median["plain"], 2),
        "rag_ttft_overhead_whole": round(median["whole"] / median["plain"], 2),
        "rag_ttft_overhead_new_passages": round(median["new"] / median["plain_new"], 2),
        "ttft_s": {name: round(value, 3) for name, value in median.items()},
        "search_s": round(statistics.median(searches), 4),
        "index_ui_gap_max_ms": round(max(heartbeat.lateness_ms), 1), "index_files": args.files,
        "index_s": round(index_s, 2), "index": type(tasks.index).__name__,
    }))


if __name__ == "__main__":
    main()
