"""The one place that turns any error into a sentence a person understands. Qt-free: main.py's self-test uses it too.

Hearth's own errors (``inference.errors.InferenceError``,
``model_store.errors.ModelStoreError``) already carry such a sentence; common
system errors get one here; anything else is named and pointed to the log.
"""

from __future__ import annotations

import errno

from inference.errors import InferenceError
from model_store.errors import ModelStoreError


def describe_error(exc: BaseException) -> str:
    """A sentence for ``exc``, fit to show in the window or print from the self-test."""
    if isinstance(exc, (InferenceError, ModelStoreError)):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "Your computer ran out of memory. Close other programs or choose a smaller model."
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "The disk is full. Free some space and try again."
    if isinstance(exc, PermissionError):
        return f"Hearth is not allowed to open {exc.filename or 'a file it needs'}."
    return f"Something unexpected went wrong ({type(exc).__name__}: {exc}). Details are in Hearth's log file."
