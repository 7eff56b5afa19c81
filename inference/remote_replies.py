"""Replies from a provider's model (a remote OpenAI-compatible server), each on a thread of its own.

They do not queue behind the local model: the provider's server does its
own scheduling. :meth:`RemoteReplies.stop` cancels and joins them all, so
nothing is left running when Hearth quits.
"""

from __future__ import annotations

import logging
import threading

from inference.engine import ReplySink
from inference.model_owner import ReplyRequest

log = logging.getLogger(__name__)


class RemoteReplies:
    """Runs provider replies on their own threads; use :meth:`stop` before quitting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[threading.Thread, threading.Event] = {}

    def start(self, request: ReplyRequest, sink: ReplySink, *, chunk_interval_s: float = 0.0) -> None:
        """Stream ``request``'s reply from ``request.remote`` into ``sink``, on a new thread."""
        thread = threading.Thread(target=self._run, args=(request, sink, chunk_interval_s),
                                  name=f"remote-reply-{request.request_id}", daemon=True)
        with self._lock:
            self._running[thread] = request.cancel
        thread.start()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Cancel every reply in progress and wait for their threads; False if one did not end in time."""
        with self._lock:
            running = dict(self._running)
        for cancel in running.values():
            cancel.set()
        for thread in running:
            thread.join(timeout_s)
        return not any(thread.is_alive() for thread in running)

    def _run(self, request: ReplyRequest, sink: ReplySink, chunk_interval_s: float) -> None:
        try:
            from inference.remote_engine import stream_remote_reply  # the openai client: once a provider is used

            # The target, or how to get it: reading the provider's key from the keyring may wait, so it is done here.
            target = request.remote() if callable(request.remote) else request.remote
            stream_remote_reply(target, request.messages, request.params, request.cancel, sink,
                                chunk_interval_s=chunk_interval_s)
        except Exception as exc:  # noqa: BLE001 - whatever it was, the window hears of it
            log.exception("A provider's reply failed unexpectedly")
            sink.failed(exc)
        finally:
            with self._lock:
                self._running.pop(threading.current_thread(), None)
