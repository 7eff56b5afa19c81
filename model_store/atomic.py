"""Write files so that a crash or a full disk never leaves half a file behind."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from model_store.errors import DiskFullError


def write_text_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: write a temporary file, fsync, rename.

    Raises:
        DiskFullError: the disk is full; the old file is left untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except OSError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(f"The disk is full: could not save {path.name}.") from exc
        raise
