"""An engine that runs in a child process, so that the engine dying never takes Hearth down.

:class:`ProcessEngine` has the same interface as the in-process engines. It
starts ``engine_host.serve`` in a spawned process and forwards requests. When
the child dies (a llama.cpp abort, the OS killing it for memory, a segfault),
every waiting call raises :class:`EngineCrashedError` with the reason, and
the next ``load`` starts a fresh child.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from multiprocessing.connection import wait

from inference.chat_format import Message
from inference.engine import EngineOptions, ExecutionPlan, ReplyStats, SamplingParams
from inference.errors import EngineCrashedError, GenerationError, InferenceError, ModelLoadError, from_wire
from inference.gguf_info import GgufInfo
from inference.template_sandbox import HUNG_EXIT_CODE

log = logging.getLogger(__name__)

POLL_S = 0.01  # how often a waiting call looks at the user's cancel flag


def _log_file() -> str | None:
    """The file this process logs to (main.py's handler), for the engine process to log to as well."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename != os.path.abspath(os.devnull):
            return handler.baseFilename
    return None


def exit_reason(exitcode: int | None) -> str:
    """A sentence explaining how the engine process ended."""
    if exitcode is None:
        return "it stopped answering"
    if exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        if number == getattr(signal, "SIGKILL", 9):
            return f"it was killed ({name}), most likely because the computer ran out of memory"
        if number == getattr(signal, "SIGABRT", 6):
            return f"llama.cpp aborted ({name}) after an internal check failed"
        if number == getattr(signal, "SIGSEGV", 11):
            return f"it crashed ({name})"
        return f"it was ended by {name}"
    if exitcode == HUNG_EXIT_CODE:
        return "the model's chat template got stuck and was stopped"
    return f"it exited with code {exitcode}"


class ProcessEngine:
    """Runs the engine named by ``plan`` in a child process. Use from one thread.

    Args:
        plan: the execution plan the child loads with.
        options: resources the engine may use (state cache, converted-weights cache).
    """

    def __init__(self, plan: ExecutionPlan, *, options: EngineOptions | None = None) -> None:
        self.plan = plan
        self.chat_format_name = ""
        self.decode_mode = ""
        self._options = options or EngineOptions()
        self._context = multiprocessing.get_context("spawn")
        self._process = None
        self._conn = None
        self._cancel = self._context.Event()

    @property
    def pid(self) -> int | None:
        """The engine process's id while it runs."""
        return self._process.pid if self._process is not None and self._process.is_alive() else None

    def load(self, info: GgufInfo) -> None:
        """Start the engine process if needed and load the model there.

        Raises:
            ModelLoadError: the engine refused the model.
            EngineCrashedError: the engine process died while loading.
        """
        self._ensure_process()
        self._conn.send(("load", str(info.path), self.plan))
        reply = self._receive(None)
        if reply[0] == "loaded":
            self.chat_format_name, self.decode_mode = reply[1], reply[2]
            self.plan = replace(self.plan, cpu_variant=reply[3])
            return
        raise self._rebuild_error(reply, default=ModelLoadError)

    def tune_threads(
        self, candidates: Sequence[int], *, then_use: int | None = None, cancel: threading.Event | None = None
    ) -> dict[int, float]:
        """Measure decode tokens/s at each thread count in the engine, then run with ``then_use``.

        ``then_use`` defaults to the plan's count; with no candidates the call
        only switches to it. Setting ``cancel`` (a reply is waiting) stops
        the measurement within a token; the count cut short is left out.

        Raises:
            EngineCrashedError: the engine process died.
            GenerationError: no model is loaded, or the engine failed.
        """
        if self._process is None:
            raise GenerationError("No model is loaded.")
        self._cancel.clear()
        if cancel is not None and cancel.is_set():
            self._cancel.set()  # a reply already waits: the engine must see it before it starts measuring
        self._conn.send(("tune_threads", list(candidates), then_use))
        reply = self._receive(cancel)
        self._cancel.clear()
        if reply[0] != "tuned":
            raise self._rebuild_error(reply, default=GenerationError)
        self.plan = replace(self.plan, n_threads=then_use or self.plan.n_threads)
        return reply[1]

    def stream_chat(
        self, messages: Sequence[Message], *, params: SamplingParams, cancel: threading.Event
    ) -> ProcessReplyStream:
        """Ask the engine for a reply; iterate the result for text chunks."""
        if self._process is None:
            raise GenerationError("No model is loaded.")
        return ProcessReplyStream(self, list(messages), params, cancel)

    def close(self) -> None:
        """Ask the engine process to exit; kill it if it does not within a few seconds."""
        if self._process is None:
            return
        try:
            self._conn.send(("exit",))
        except (OSError, EOFError):
            pass
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._conn.close()
        self._process = None
        self._conn = None

    # ------------------------------------------------------------------ internals

    def _ensure_process(self) -> None:
        if self._process is not None and self._process.is_alive():
            return
        self._discard_process()
        from inference.engine_host import serve

        parent_conn, child_conn = self._context.Pipe()
        process = self._context.Process(
            target=serve, args=(child_conn, self._cancel, self._options, _log_file()), name="hearth-engine",
            daemon=True,
        )
        process.start()
        child_conn.close()
        self._process, self._conn = process, parent_conn
        log.info("Engine process %d started", process.pid)

    def _discard_process(self) -> None:
        if self._process is not None:
            self._process.join(1)
            self._conn.close()
        self._process = None
        self._conn = None

    def _receive(self, cancel: threading.Event | None):
        """The next message from the engine, watching the user's cancel flag while waiting.

        Raises:
            EngineCrashedError: the engine process died.
        """
        while True:
            # Checked before every wait: while chunks stream in, a wait never times out.
            if cancel is not None and cancel.is_set() and not self._cancel.is_set():
                self._cancel.set()
            ready = wait([self._conn, self._process.sentinel], timeout=POLL_S)
            if self._conn in ready:
                try:
                    return self._conn.recv()
                except (EOFError, OSError):
                    pass  # the pipe closed: the process is dying; fall through to the crash report
            if self._process.sentinel in ready or not self._process.is_alive():
                self._process.join(1)
                reason = exit_reason(self._process.exitcode)
                log.error("Engine process %d stopped: %s", self._process.pid, reason)
                self._discard_process()
                raise EngineCrashedError(f"The engine stopped: {reason}.")

    @staticmethod
    def _rebuild_error(reply: tuple, *, default: type[InferenceError]) -> InferenceError:
        """The engine's ``("error", …)`` reply as the inference error it was (``default`` for any other)."""
        _, _, type_name, message = reply
        return from_wire(type_name, message, default=default)


class ProcessReplyStream:
    """A reply streamed from the engine process; ``stats`` is set once iteration ends."""

    def __init__(
        self, engine: ProcessEngine, messages: list[Message], params: SamplingParams, cancel: threading.Event
    ) -> None:
        self._engine = engine
        self._messages = messages
        self._params = params
        self._cancel = cancel
        self.stats: ReplyStats | None = None

    def __iter__(self) -> Iterator[str]:
        engine = self._engine
        request_id = id(self)
        engine._cancel.clear()
        engine._conn.send(("chat", request_id, self._messages, self._params))
        finished = False
        try:
            while True:
                reply = engine._receive(self._cancel)
                kind = reply[0]
                if kind == "chunk":
                    yield reply[2]
                elif kind == "done":
                    finished = True
                    self.stats = reply[2]
                    return
                elif kind == "error":
                    finished = True
                    raise ProcessEngine._rebuild_error(reply, default=GenerationError)
        finally:
            if not finished and engine._process is not None:
                # Abandoned early: stop the reply and drain it so the next request starts clean.
                engine._cancel.set()
                while engine._process is not None and engine._receive(None)[0] == "chunk":
                    pass
