"""PyInstaller hook for llama-cpp-python, which ships none.

llama_cpp loads its shared libraries with ctypes from ``llama_cpp/lib/`` next to
its own files, so they are collected there, whatever their names: the engine
library, ggml, and any runtime-loaded CPU-variant backends
(``libggml-cpu-<variant>.so``). Variants on the deny list are left out.
"""

from pathlib import Path

from PyInstaller.utils.hooks import collect_dynamic_libs

# llama.cpp's AMX kernel, built into the sapphirerapids variant, crashes on the first token.
DENIED_NAME_PARTS = ("sapphirerapids",)


def _allowed(source: str) -> bool:
    name = Path(source).name.lower()
    return not any(part in name for part in DENIED_NAME_PARTS)


binaries = [(source, "llama_cpp/lib") for source, _ in collect_dynamic_libs("llama_cpp") if _allowed(source)]
