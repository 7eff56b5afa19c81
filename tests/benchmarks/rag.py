"""Figures for chatting with documents, in the real window with the built-in model (or ``--model``).

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/rag.py [--files 1000] [--trials 3] [--no-llama-server]
        [--model PATH]

Prints one JSON object:
- ``rag_ttft_overhead``: time from Send to the first token of a follow-up question about the same
  passages (the second turn of a conversation whose long file is searched), divided by the same two
  questions without documents (same model; the history prefix is cached in both). The first question's
  passages stay in the history exactly as sent, so they are cached; the follow-up goes as typed.
  Measured in the window, so the search itself counts (``search_s`` alone).
- ``rag_ttft_overhead_same_context``: the same follow-up with retrieval ÷ without it, over the same
  history: the second conversation has its file detached before the follow-up, so nothing is searched
  and the model sees the same tokens. What retrieval itself adds when its passages are in the cache.
- ``llama_server_context_ratio``: the reference for ``rag_ttft_overhead``. The prompts the window sent
  (the follow-ups, with documents and without) are replayed to llama.cpp's own ``llama-server`` (built
  natively from the same source, tests/benchmarks/native_llama.py, attention set as Hearth's engine
  sets it): the history up to the question first, then the whole prompt for one token, timed; divided
  the same way. That is what computing the same new tokens after the longer history costs in llama.cpp
  itself (``llama_server_follow_up_tokens``: how many it evaluated). ``hearth_over_llama_server`` is
  the ratio of the two ratios.
- ``rag_ttft_overhead_whole``: the same with a small file that goes in whole.
- ``rag_ttft_overhead_new_passages``: a second question about another part of the file, whose passages
  are new and must be prefilled (about 1,200 tokens here): the cost of retrieval when nothing is cached.
- ``index_ui_gap_max_ms``: the longest the GUI thread was late (tests/gui/heartbeat.py) while a folder of
  ``index_files`` files was indexed as a collection (``index_files_indexed`` of them), in ``index_s`` seconds.
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

import httpx  # noqa: E402

from gui.app import shut_down  # noqa: E402
from gui.documents import DocumentsController, DocumentTasks  # noqa: E402
from inference.document_prompt import estimate_tokens, prompt_with_documents  # noqa: E402
from inference.hardware import CpuFacts  # noqa: E402
from model_store.builtin_model import ensure_builtin_model, packaged_gemma_chunks  # noqa: E402
from model_store.paths import AppPaths  # noqa: E402
from model_store.registry import ModelRegistry  # noqa: E402
from tests.benchmarks.api import start_llama_server  # noqa: E402
from tests.benchmarks.gui_figures import open_window, send, wait_until  # noqa: E402
from tests.benchmarks.native_llama import build_llama_server  # noqa: E402
from tests.gui.heartbeat import Heartbeat  # noqa: E402
from model_store.documents.index import DocumentIndex  # noqa: E402
from tests.gui.test_documents_window import _long_document  # noqa: E402

FOLLOW_UP = ("What colour was the Vallorn lighthouse painted?", "Which keeper painted the Vallorn lighthouse?")
NEW_PASSAGES = ("Tell me about the harbour ledger.", "What colour was the Vallorn lighthouse painted?")
SMALL_FILE = "The Vallorn lighthouse was painted green in 1911 by the keeper Ada Morrow.\n" * 6


class SentPrompts:
    """The messages of every reply the window asked the engine for (after its retrieval)."""

    def __init__(self, panel) -> None:
        self.messages: list[list[dict]] = []
        panel.reply_requested.connect(self._add)

    def _add(self, request) -> None:
        self.messages.append([{"role": m["role"], "content": m["content"]} for m in request.messages])

    def last_two(self) -> list[list[dict]]:
        return self.messages[-2:]


def tagged(question: str, trial: int) -> str:
    """The question of one trial: a tag of fixed width, so every trial's prompts are as long."""
    return f"{question} (trial {trial:03})"


def time_to_first_token(app: QApplication, window, text: str) -> float:
    """Seconds from Send to the first text of the reply; waits for the reply to end."""
    start = time.perf_counter()
    send(app, window, text)
    wait_until(app, lambda: window.panel.active is None or bool(window.panel.session.branch()[-1].content))
    first = time.perf_counter() - start
    wait_until(app, lambda: window.panel.active is None)
    return first


def second_turn_ttft(app: QApplication, window, document: Path | None, trial: int,
                     questions: tuple[str, str], *, detach_before_follow_up: bool = False) -> float:
    """Each trial asks new questions (of a new file): nothing is cached from an earlier trial but the history.

    ``detach_before_follow_up``: the file is detached after the first answer, so the follow-up is not
    searched (its history still carries the first question's passages).
    """
    window.new_conversation()
    if document is not None:
        window.documents.attach([document])
        wait_until(app, lambda: window.panel.chips.titles != [])
    time_to_first_token(app, window, tagged(questions[0], trial))
    if detach_before_follow_up:
        window.panel.detach_requested.emit(str(document))
        wait_until(app, lambda: window.panel.chips.titles == [])
    return time_to_first_token(app, window, tagged(questions[1], trial))


def llama_server_follow_up(root: str, follow_up: list[dict]) -> tuple[float, int]:
    """Seconds llama-server takes to answer the follow-up with one token, once all before its question is cached.

    The prompt is rendered by the server's own chat template; everything up to the last question is
    sent first, so its cache holds the same history Hearth's did. Returns the seconds and how many
    prompt tokens the server evaluated for the follow-up.
    """
    text = httpx.post(f"{root}/apply-template", json={"messages": follow_up}, timeout=60).json()["prompt"]
    history = text[: text.rindex(follow_up[-1]["content"])]
    httpx.post(f"{root}/completion", json={"prompt": history, "n_predict": 0}, timeout=600).raise_for_status()
    start = time.perf_counter()
    answer = httpx.post(f"{root}/completion", json={"prompt": text, "n_predict": 1, "temperature": 0.0}, timeout=600)
    seconds = time.perf_counter() - start
    answer.raise_for_status()
    return seconds, answer.json()["timings"]["prompt_n"]


def reference_ratio(model: Path, context: int, conversations: dict[str, list[list[list[dict]]]]) -> dict:
    """The follow-up's first token with documents ÷ without, through llama-server on the window's own prompts."""
    server, url = start_llama_server(build_llama_server(), model, CpuFacts.probe().physical_cores, context)
    root = url.removesuffix("/v1")
    try:
        times: dict[str, list[float]] = {"plain": [], "follow_up": []}
        evaluated: dict[str, list[int]] = {"plain": [], "follow_up": []}
        for _ in range(3):  # each conversation several times: one first token here is ~50 ms, within the noise
            for plain, documents in zip(conversations["plain"], conversations["follow_up"]):
                for name, conversation in (("plain", plain), ("follow_up", documents)):
                    seconds, tokens = llama_server_follow_up(root, conversation[1])
                    times[name].append(seconds)
                    evaluated[name].append(tokens)
    finally:
        server.terminate()
        server.wait(10)
    median = {name: statistics.median(values) for name, values in times.items()}
    return {"llama_server_context_ratio": round(median["follow_up"] / median["plain"], 2),
            "llama_server_ttft_s": {name: round(value, 3) for name, value in median.items()},
            "llama_server_follow_up_tokens": {name: max(values) for name, values in evaluated.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--no-llama-server", action="store_true", help="leave out the llama-server reference")
    parser.add_argument("--model", type=Path, help="a GGUF to chat with instead of the built-in model")
    args = parser.parse_args()
    app = QApplication(sys.argv)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        paths = AppPaths.under(home / "builtin")
        paths.create()
        model = args.model or ensure_builtin_model(ModelRegistry(paths.registry_file), paths.models_dir,
                                                   packaged_gemma_chunks()).path
        ui = open_window(model, home, max_tokens=8, temperature=0.0, seed=1)
        tasks = DocumentTasks(DocumentIndex(home / "documents.db"))
        window = ui.window
        window.documents = DocumentsController(window, tasks)
        sent = SentPrompts(window.panel)
        wait_until(app, lambda: window.panel.model_name is not None)
        names = ("plain", "follow_up", "same_context", "plain_new", "new", "whole")
        runs: dict[str, list[float]] = {name: [] for name in names}
        prompts: dict[str, list[list[list[dict]]]] = {name: [] for name in names}
        for trial in range(args.trials):
            long_file = _long_document(home / f"harbour-{trial}.md", trial)
            small_file = home / f"small-{trial}.md"
            small_file.write_text(SMALL_FILE.replace("1911", str(1900 + trial)), encoding="utf-8")
            turns = {
                "plain": lambda: second_turn_ttft(app, window, None, trial, FOLLOW_UP),
                "follow_up": lambda: second_turn_ttft(app, window, long_file, trial, FOLLOW_UP),
                "same_context": lambda: second_turn_ttft(app, window, long_file, trial + 200, FOLLOW_UP,
                                                         detach_before_follow_up=True),
                "whole": lambda: second_turn_ttft(app, window, small_file, trial, FOLLOW_UP),
                "plain_new": lambda: second_turn_ttft(app, window, None, trial + 100, NEW_PASSAGES),
                "new": lambda: second_turn_ttft(app, window, long_file, trial + 100, NEW_PASSAGES),
            }
            for name, turn in turns.items():
                runs[name].append(turn())
                prompts[name].append(sent.last_two())
        median = {name: statistics.median(values) for name, values in runs.items()}
        context = window.context_length()
        conversation_id = window.panel.session.conversation_id
        history = window.panel.session.prompt_for(window.panel.session.branch()[-2])
        searches = []
        for _ in range(5):
            start = time.perf_counter()
            prompt_with_documents(history, tasks.index, conversation_id=conversation_id, n_ctx=context, max_tokens=8)
            searches.append(time.perf_counter() - start)

        folder = home / "library"
        folder.mkdir()
        for i in range(args.files):
            (folder / f"note-{i:04}.md").write_text(f"# Note {i}\n\n" + f"Paragraph about topic {i}. " * 150,
                                                    encoding="utf-8")
        indexed = []
        tasks.indexed.connect(lambda _collection_id, report: indexed.append(report))
        heartbeat = Heartbeat()
        start = time.perf_counter()
        window.documents.keep_as_collection(folder, "Library")
        wait_until(app, lambda: bool(indexed) and window.documents.status.text() == "", timeout_s=1800)
        index_s = time.perf_counter() - start
        heartbeat.stop()
        tasks.close()
        shut_down(ui)
        overhead = median["follow_up"] / median["plain"]
        figures = {
            "rag_ttft_overhead": round(overhead, 2),
            "rag_ttft_overhead_same_context": round(median["follow_up"] / median["same_context"], 2),
            "rag_ttft_overhead_whole": round(median["whole"] / median["plain"], 2),
            "rag_ttft_overhead_new_passages": round(median["new"] / median["plain_new"], 2),
            "model": model.name,
            "ttft_s": {name: round(value, 3) for name, value in median.items()},
            "history_tokens": {name: estimate_tokens(" ".join(m["content"] for m in prompts[name][0][1]))
                               for name in ("plain", "follow_up")},
            "follow_up_sent_as_typed": all(conversation[1][-1]["content"] == tagged(FOLLOW_UP[1], trial)
                                           for trial, conversation in enumerate(prompts["follow_up"])),
            "search_s": round(statistics.median(searches), 4),
            "index_ui_gap_max_ms": round(max(heartbeat.lateness_ms), 1), "index_files": args.files,
            "index_s": round(index_s, 2), "index_files_indexed": indexed[0].indexed,
            "index": type(tasks.index).__name__,
        }
        if not args.no_llama_server:
            reference = reference_ratio(model, context, prompts)
            figures.update(reference)
            figures["hearth_over_llama_server"] = round(overhead / reference["llama_server_context_ratio"], 2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
