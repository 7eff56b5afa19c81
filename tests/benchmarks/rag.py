"""Figures for chatting with documents, in the real window with the built-in model.

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/rag.py [--files 1000] [--trials 3]

Prints one JSON object:
- ``rag_ttft_overhead``: time from Send to the first token of the second turn of a conversation whose
  file is searched (retrieval), divided by the same without documents (same questions, same model;
  the history prefix is cached in both). Measured in the window, so the search itself counts.
  ``search_s`` is the search and prompt building alone; the rest of the difference is the prefill of the
  passages, which are new tokens on every turn.
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
from tests.gui.test_documents_window import _long_document, make_index  # noqa: E402

QUESTIONS = ("Tell me about the harbour.", "What colour was the Vallorn lighthouse painted?")


def time_to_first_token(app: QApplication, window, text: str) -> float:
    """Seconds from Send to the first text of the reply; waits for the reply to end."""
    start = time.perf_counter()
    send(app, window, text)
    wait_until(app, lambda: window.panel.active is None or bool(window.panel.session.branch()[-1].content))
    first = time.perf_counter() - start
    wait_until(app, lambda: window.panel.active is None)
    return first


def second_turn_ttft(app: QApplication, window, document: Path | None, trial: int) -> float:
    """Each trial asks new questions (of a new file): nothing is cached from an earlier trial but the history."""
    window.new_conversation()
    if document is not None:
        window.documents.attach([document])
        wait_until(app, lambda: window.panel.chips.titles != [])
    time_to_first_token(app, window, f"{QUESTIONS[0]} (trial {trial})")
    return time_to_first_token(app, window, f"{QUESTIONS[1]} (trial {trial})")


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
        tasks = DocumentTasks(make_index(home / "documents.db"))
        window = ui.window
        window.documents = DocumentsController(window, tasks)
        wait_until(app, lambda: window.panel.model_name is not None)
        plain, rag = [], []
        for trial in range(args.trials):
            plain.append(second_turn_ttft(app, window, None, trial))
            rag.append(second_turn_ttft(app, window, _long_document(home / f"harbour-{trial}.md", trial), trial))
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
        "rag_ttft_overhead": round(statistics.median(rag) / statistics.median(plain), 2),
        "rag_ttft_s": round(statistics.median(rag), 3), "plain_ttft_s": round(statistics.median(plain), 3),
        "search_s": round(statistics.median(searches), 4),
        "index_ui_gap_max_ms": round(max(heartbeat.lateness_ms), 1), "index_files": args.files,
        "index_s": round(index_s, 2), "index": type(tasks.index).__name__,
    }))


if __name__ == "__main__":
    main()
