"""Which files can run code when opened: pickles, PyTorch checkpoints, joblib, and such files named .gguf.

PyTorch checkpoints (``.bin``, ``.pt``, ``.pth``, ``.ckpt``), pickles and
joblib files are Python pickles, or zip files holding one: unpickling runs
whatever the file says. Hearth never unpickles anything; it recognises these
files by name and by their first bytes so that import, download and load can
refuse them before opening them, and say why. Pure functions, no errors of
their own: the loader (inference/gguf_info.py) and the store
(model_store/model_files.py) raise their own.
"""

from __future__ import annotations

import re
from pathlib import Path

GGUF_MAGIC = b"GGUF"
HEAD_BYTES = 64  # enough for every signature below
CODE_CARRYING_SUFFIXES = frozenset({
    ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".dill", ".npy", ".npz", ".mar",
})
DANGER = "This is a PyTorch/pickle file, which can run code when opened; Hearth only opens GGUF files."

# First bytes of files that are, or usually hold, a pickle.
_SIGNATURES = (
    re.compile(rb"\x80[\x02-\x05]"),  # pickle protocols 2-5 (torch.save before 1.6, joblib, plain pickle)
    re.compile(rb"c[A-Za-z_][\w.]*\n[\w.]+\n"),  # a protocol 0 pickle opening with GLOBAL: the classic exploit
    re.compile(rb"\((dp|lp|tp)\d*\n|\(i[\w.]+\n|[\]}]q\x00"),  # protocol 0 and 1 dicts, lists, instances
    re.compile(rb"PK(\x03\x04|\x05\x06|\x07\x08)"),  # zip: torch.save since 1.6, TorchScript, .npz, .keras
    re.compile(rb"\x93NUMPY"),  # .npy, whose object arrays are pickles
    re.compile(rb"\x1f\x8b|BZh[1-9]|\xfd7zXZ\x00|\x04\x22\x4d\x18|\x78[\x01\x5e\x9c\xda]"),  # compressed joblib
)


def looks_code_carrying(head: bytes) -> bool:
    """True when ``head`` (a file's first bytes) starts like a pickle or a container of one."""
    return not head.startswith(GGUF_MAGIC) and any(signature.match(head) for signature in _SIGNATURES)


def code_carrying_reason(name: str, head: bytes = b"") -> str | None:
    """The sentence refusing a file named ``name`` whose first bytes are ``head``, or None if it is not such a file.

    A name with a code-carrying extension is refused whatever its bytes; a
    ``.gguf`` (or any) name is refused when its bytes are a pickle's or a zip's.
    """
    shown = name.replace("\\", "/").rsplit("/", 1)[-1]
    if Path(shown).suffix.lower() in CODE_CARRYING_SUFFIXES:
        return f"Hearth refused {shown}. {DANGER}"
    if looks_code_carrying(head):
        return f"Hearth refused {shown}: its name says GGUF but its contents do not. {DANGER}"
    return None


def read_head(path: Path) -> bytes:
    """The first :data:`HEAD_BYTES` bytes of ``path`` (raw bytes: nothing is parsed); empty if unreadable."""
    try:
        with path.open("rb") as file:
            return file.read(HEAD_BYTES)
    except OSError:
        return b""
