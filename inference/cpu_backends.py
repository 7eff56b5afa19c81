"""Choose and load the fastest safe CPU kernels of llama.cpp for this processor.

Hearth's llama.cpp is built once for every x86-64 CPU: the CPU backend is
compiled in several variants (``libggml-cpu-haswell.so``, ``-zen4``,
``-icelake``…; ``GGML_BACKEND_DL`` with ``GGML_CPU_ALL_VARIANTS``), each a
loadable library that reports, through its ``ggml_backend_score()``, whether
this CPU can run it and how good a match it is. llama-cpp-python never loads
them, so the engine process calls :func:`load_cpu_backend` before its first
model. Variants with AMX kernels are never chosen: on Sapphire Rapids they
crash on the first token (``ggml_backend_amx_mul_mat``).

A build with the CPU backend linked in (the older single-variant wheels, or
macOS) needs nothing loaded: the function then says ``"built-in"``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from inference.errors import ModelLoadError

log = logging.getLogger(__name__)

# Variants whose kernels are known to crash: AMX tiles (llama.cpp's AMX matmul segfaults on the first token).
UNSAFE_VARIANTS = frozenset({"sapphirerapids"})
_VARIANT_FILE = re.compile(r"^(?:lib)?ggml-cpu-(?P<name>[A-Za-z0-9_.]+?)\.(?:so|dll|dylib)$")


@dataclass(frozen=True)
class CpuVariant:
    """One loadable build of llama.cpp's CPU backend and how well it suits this CPU (0: it cannot run here)."""

    name: str
    path: Path
    score: int = 0


@dataclass(frozen=True)
class CpuBackend:
    """The CPU kernels the engine runs with: a variant's name (e.g. ``zen4``) or ``built-in``."""

    variant: str
    path: Path | None = None


def llama_library_dir() -> Path:
    """The folder llama-cpp-python loads its libraries from (``LLAMA_CPP_LIB_PATH`` overrides it)."""
    override = os.environ.get("LLAMA_CPP_LIB_PATH")
    if override:
        return Path(override)
    import llama_cpp

    return Path(llama_cpp.__file__).resolve().parent / "lib"


def variant_files(folder: Path) -> list[CpuVariant]:
    """Every CPU-variant library in ``folder``, unscored, by name (one file per variant)."""
    found: dict[str, CpuVariant] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    for path in entries:
        match = _VARIANT_FILE.match(path.name)
        if match and path.is_file():
            found.setdefault(match["name"], CpuVariant(match["name"], path))
    return sorted(found.values(), key=lambda variant: variant.name)


def score_variants(variants: list[CpuVariant]) -> list[CpuVariant]:
    """Ask each variant's own ``ggml_backend_score()`` how well it suits this CPU; unsafe ones score 0.

    The score is what llama.cpp itself uses to pick a variant: it checks the
    instruction sets with CPUID and the OS's support for their registers.
    """
    scored = []
    for variant in variants:
        score = 0
        if variant.name not in UNSAFE_VARIANTS:
            score = _library_score(variant.path)
        scored.append(CpuVariant(variant.name, variant.path, score))
    return scored


def best_variant(variants: list[CpuVariant]) -> CpuVariant | None:
    """The highest-scoring variant this CPU can run, or None."""
    usable = [variant for variant in variants if variant.score > 0 and variant.name not in UNSAFE_VARIANTS]
    return max(usable, key=lambda variant: variant.score, default=None)


def load_cpu_backend(folder: Path | None = None, *, wanted: str | None = None) -> CpuBackend:
    """Load the best safe CPU variant into llama.cpp (once per process) and say which it is.

    ``wanted`` names a variant to use instead of the best one (tests of the
    portable path, or a user working around a bad kernel); it must still be
    able to run on this CPU.

    Raises:
        ModelLoadError: the build has CPU variants but none can run on this processor.
    """
    folder = folder or llama_library_dir()
    found = variant_files(folder)
    if not found:
        return CpuBackend("built-in")
    ggml = loaded_ggml()
    if ggml is None:
        raise ModelLoadError("llama.cpp's core library was not found next to its CPU engines; reinstall Hearth.")
    if ggml.ggml_backend_reg_by_name(b"CPU"):
        return _already_loaded(found)
    variants = score_variants(found)
    chosen = best_variant([variant for variant in variants if variant.name == wanted] if wanted else variants)
    if chosen is None and wanted:
        usable = ", ".join(v.name for v in variants if v.score > 0 and v.name not in UNSAFE_VARIANTS) or "none"
        raise ModelLoadError(f"The CPU kernels “{wanted}” cannot run on this processor or are not safe to use. "
                             f"Kernels that can run here: {usable}.")
    if chosen is None:
        raise ModelLoadError(
            "None of Hearth's CPU engines can run on this processor "
            f"(tried {', '.join(v.name for v in variants)}). Please report your CPU model."
        )
    if not ggml.ggml_backend_load(os.fsencode(chosen.path)):
        raise ModelLoadError(f"llama.cpp could not load its CPU engine ({chosen.path.name}).")
    log.info("CPU kernels: %s (scores: %s)", chosen.name, {v.name: v.score for v in variants})
    return CpuBackend(chosen.name, chosen.path)


# ------------------------------------------------------------------ internals

def _library_score(path: Path) -> int:
    """Open a variant library, read its score, close it again. 0 when it cannot be opened."""
    try:
        library = ctypes.CDLL(str(path))
    except OSError as exc:
        log.warning("CPU variant %s cannot be opened: %s", path.name, exc)
        return 0
    try:
        score_function = library.ggml_backend_score
    except AttributeError:
        return 0
    score_function.restype = ctypes.c_int
    score = int(score_function())
    _close_library(library)
    return score


def _close_library(library: ctypes.CDLL) -> None:
    import _ctypes

    try:
        if sys.platform == "win32":
            _ctypes.FreeLibrary(library._handle)
        else:
            _ctypes.dlclose(library._handle)
    except OSError:
        pass


def loaded_ggml() -> ctypes.CDLL | None:
    """The ggml library that llama.cpp itself uses (not a second copy of it), or None if not found.

    Wheels cannot hold symlinks, so ``libggml.so`` and ``libggml.so.0`` are two
    copies of one file: only the one libllama was linked against holds the
    backend registry llama.cpp consults. On Linux it is found in the process's
    memory map after ``import llama_cpp``.
    """
    import llama_cpp  # noqa: F401 - loads libllama and, with it, its libggml

    path = _mapped_library("ggml") if sys.platform.startswith("linux") else None
    if path is None:
        folder = llama_library_dir()
        names = {"win32": ["ggml.dll"], "darwin": ["libggml.dylib", "libggml.0.dylib"]}.get(
            sys.platform, ["libggml.so.0", "libggml.so"])
        path = next((folder / name for name in names if (folder / name).exists()), None)
    if path is None:
        return None
    library = ctypes.CDLL(str(path))
    library.ggml_backend_reg_by_name.restype = ctypes.c_void_p
    library.ggml_backend_reg_by_name.argtypes = [ctypes.c_char_p]
    library.ggml_backend_load.restype = ctypes.c_void_p
    library.ggml_backend_load.argtypes = [ctypes.c_char_p]
    return library


def _mapped_library(stem: str) -> Path | None:
    """The file of ``lib<stem>.so*`` mapped into this process, from /proc/self/maps."""
    pattern = re.compile(rf"/lib{re.escape(stem)}\.so(\.\d+)*$")
    try:
        lines = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
        if pattern.search(path):
            return Path(path)
    return None


def _already_loaded(variants: list[CpuVariant]) -> CpuBackend:
    """A variant was loaded earlier in this process: name it from the memory map where possible."""
    for variant in variants:
        if sys.platform.startswith("linux") and _mapped_library(f"ggml-cpu-{variant.name}"):
            return CpuBackend(variant.name, variant.path)
    return CpuBackend("loaded")
