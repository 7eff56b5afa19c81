"""Which files Hearth stores and opens as models: GGUF only, never a format that can run code when opened.

The recognising is inference/file_formats.py's; this module raises the
store's error for it, before a file is imported, downloaded or registered.
"""

from __future__ import annotations

from pathlib import Path

from inference.file_formats import CODE_CARRYING_SUFFIXES, DANGER, HEAD_BYTES, code_carrying_reason, read_head
from model_store.errors import CodeCarryingFileError

__all__ = ["CODE_CARRYING_SUFFIXES", "DANGER", "HEAD_BYTES", "CodeCarryingFileError", "code_carrying_reason",
           "read_head", "refuse_code_carrying"]


def refuse_code_carrying(path: Path) -> None:
    """Raise if ``path``'s name or first bytes say it can run code when opened. Reads at most 64 bytes.

    Raises:
        CodeCarryingFileError: a pickle, PyTorch checkpoint, joblib file, or one disguised as GGUF.
    """
    reason = code_carrying_reason(path.name, read_head(path) if path.is_file() else b"")
    if reason:
        raise CodeCarryingFileError(reason)
