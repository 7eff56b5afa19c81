"""What llama.cpp's detokenizer gives the thinking splitter for reasoning models' special tokens.

Hearth turns tokens to text with ``special=False`` (control tokens hidden). A tiny vocabulary with
``<think>`` tokens (added, user-defined, as in Qwen3 and DeepSeek-R1 GGUFs) and gpt-oss's harmony
tokens (control tokens, as in its GGUF) checks that all of them come out as text all the same.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import gguf
import llama_cpp
import pytest

from inference.llama_vocab import is_end_of_generation, token_bytes
from inference.thinking import split_thinking
from tests import gguf_factory

THINK = ["<think>", "</think>"]
HARMONY = ["<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>", "<|constrain|>"]


def _vocab_with(extra_user: list[str], extra_control: list[str]):
    plain = gguf_factory.add_tiny_spm_vocab

    def add(writer: gguf.GGUFWriter, size: int = 0) -> int:
        count = plain(writer, size)
        # Rewrite the token list with the extra tokens at its end.
        fields = writer.kv_data[0]
        tokens = list(fields["tokenizer.ggml.tokens"].value) + extra_user + extra_control
        types = list(fields["tokenizer.ggml.token_type"].value) + \
            [gguf.TokenType.USER_DEFINED] * len(extra_user) + [gguf.TokenType.CONTROL] * len(extra_control)
        scores = list(fields["tokenizer.ggml.scores"].value) + [0.0] * (len(extra_user) + len(extra_control))
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.scores"):
            del fields[key]
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_scores(scores)
        return count + len(extra_user) + len(extra_control)

    return add


@pytest.mark.parametrize("user,control,text,fmt,expected", [
    (THINK, [], "<think>hello</think>the sea", "think-tags", ("hello", "the sea")),
    ([], HARMONY, "<|channel|>analysis<|message|>hello<|end|><|start|>assistant<|channel|>final<|message|>the sea",
     "harmony", ("hello", "the sea")),
])
def test_thinking_tokens_are_rendered_as_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user, control, text,
                                              fmt, expected) -> None:
    monkeypatch.setattr(gguf_factory, "add_tiny_spm_vocab", _vocab_with(user, control))
    path = gguf_factory.write_random_llama(tmp_path / "vocab.gguf")
    model = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        vocab = model._model.vocab
        ids = model.tokenize(text.encode(), add_bos=False, special=True)
        buffer = ctypes.create_string_buffer(64)
        rendered = b"".join(token_bytes(vocab, token, buffer) for token in ids).decode()
        names = {name: model.tokenize(name.encode(), add_bos=False, special=True) for name in user + control}
        assert all(len(found) == 1 for found in names.values()), names
        assert split_thinking(rendered.replace("▁", " "), fmt) == expected, rendered
        if control:
            # <|end|> ends a message, not the reply; <|return|> ends the reply.
            assert not is_end_of_generation(vocab, names["<|end|>"][0])
            assert is_end_of_generation(vocab, names["<|return|>"][0])
    finally:
        model.close()
