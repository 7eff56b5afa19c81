"""Write small GGUF files for tests with the gguf package (the format's reference writer)."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np


def write_tiny_gguf(
    path: Path,
    *,
    architecture: str = "llama",
    name: str = "Tiny Test",
    chat_template: str | None = None,
    context_length: int = 256,
) -> Path:
    """A GGUF with a few metadata keys and two small tensors; returns ``path``."""
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name(name)
    writer.add_context_length(context_length)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    writer.add_token_list(["<unk>", "<s>", "</s>", "hello", "wörld"])
    writer.add_tensor("weight_a", np.arange(4 * 32, dtype=np.float32).reshape(4, 32))
    writer.add_tensor("weight_b", np.ones(64, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
