"""The engine's own process: owns the model and answers requests over a pipe.

llama.cpp aborts its process on some errors (GGML_ASSERT) and the OS kills a
process that runs out of memory. Running the engine here keeps either from
taking Hearth down: the parent sees the pipe close and reports why.

Messages are tuples whose first item names them.
Parent to engine: ``("load", path, plan)``, ``("tune_threads", candidates, then_use)``,
``("chat", request_id, messages, params)``, ``("exit",)``.
Engine to parent: ``("loaded", chat_format_name, decode_mode, cpu_variant)``, ``("tuned", {threads: tokens_per_s})``, ``("chunk", request_id, text)``,
``("done", request_id, stats)``, ``("error", request_id_or_None, error_type, message)``.
An error travels as its class name and message (``inference.errors.to_wire``); the
parent raises the same inference error class again, never unpickles one.
The parent sets the shared ``cancel`` event to stop a reply; the engine checks it between tokens.
"""

from __future__ import annotations

import logging
import signal
from multiprocessing.connection import Connection
from pathlib import Path

from inference.engine import EngineOptions
from inference.errors import GenerationError, to_wire

log = logging.getLogger(__name__)


def serve(conn: Connection, cancel, options: EngineOptions, log_file: str | None = None) -> None:
    """Answer requests until the parent says exit or goes away; log to ``log_file`` (the app's log) when given."""
    # Ctrl+C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log_file:
        _log_to(log_file)
    from inference.gguf_info import read_gguf_info
    from inference.session import create_local_engine

    engine = None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break  # the parent is gone
        kind = message[0]
        if kind == "exit":
            break
        if kind == "load":
            _, path, plan = message
            if engine is not None:
                engine.close()
                engine = None
            try:
                engine = create_local_engine(plan, options)
                engine.load(read_gguf_info(Path(path)))
                conn.send(("loaded", engine.chat_format_name, getattr(engine, "decode_mode", ""),
                           getattr(engine, "cpu_variant", "")))
            except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent, by class name
                engine = None
                _send_error(conn, None, exc)
        elif kind == "tune_threads":
            # ("tune_threads", candidates, then_use): measure, then run with then_use; cancel stops it early.
            try:
                if engine is None:
                    raise GenerationError("No model is loaded.")
                then_use = message[2] if len(message) > 2 else None
                conn.send(("tuned", engine.tune_threads(message[1], then_use=then_use, cancel=cancel)))
            except Exception as exc:  # noqa: BLE001
                _send_error(conn, None, exc)
        elif kind == "chat":
            _, request_id, messages, params = message
            try:
                if engine is None:
                    raise GenerationError("No model is loaded.")
                stream = engine.stream_chat(messages, params=params, cancel=cancel)
                for text in stream:
                    conn.send(("chunk", request_id, text))
                conn.send(("done", request_id, stream.stats))
            except Exception as exc:  # noqa: BLE001
                _send_error(conn, request_id, exc)
    if engine is not None:
        engine.close()


def _log_to(log_file: str) -> None:
    """Log to the app's file (appending; the window's process rotates it), never to the user's terminal."""
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s engine %(name)s: %(message)s"))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(handler)


def _send_error(conn: Connection, request_id: int | None, exc: Exception) -> None:
    log.exception("Engine request failed")
    try:
        conn.send(("error", request_id, *to_wire(exc)))
    except (OSError, EOFError):
        pass
