"""PyInstaller hook for llama-cpp-python, which ships none.

llama_cpp loads its shared libraries with ctypes from ``llama_cpp/lib/`` next to
its own files, so they are collected there, whatever their names: the engine
library, ggml, and any runtime-loaded CPU-variant backends
(``libggml-cpu-<variant>.so``). Variants on the deny list are left out.
"""

import re
import sys
from pathlib import Path

from PyInstaller.utils.hooks import collect_dynamic_libs, get_package_paths

# llama.cpp's AMX kernel, built into the sapphirerapids variant, crashes on the first token.
DENIED_NAME_PARTS = ("sapphirerapids",)


def _allowed(source: str) -> bool:
    name = Path(source).name.lower()
    return not any(part in name for part in DENIED_NAME_PARTS)


binaries = [(source, dest) for source, dest in collect_dynamic_libs("llama_cpp") if _allowed(source)]
if sys.platform.startswith("linux"):
    # The dynamic loader asks for sonames (libggml.so.0) next to libllama.so (its RUNPATH is $ORIGIN), but
    # collect_dynamic_libs only finds *.so; without these, the copies could land outside llama_cpp/lib.
    package_dir = Path(get_package_paths("llama_cpp")[1])
    binaries += [
        (str(path), str(path.parent.relative_to(package_dir.parent)))
        for path in sorted(package_dir.rglob("*.so.*"))
        if re.search(r"\.so\.\d+$", path.name) and _allowed(str(path))
    ]
