"""Token text and bytes from a llama.cpp vocabulary, shared by the llama.cpp and torch engines.

Both engines tokenize and detokenize with the GGUF's own vocabulary through
llama.cpp, so a model's prompt is the same tokens whichever device runs it.
"""

from __future__ import annotations

import ctypes

import llama_cpp


def token_text(vocab: llama_cpp.llama_vocab_p, token: int) -> str:
    """The text of a (special) token, e.g. ``<bos>``; empty for 'no such token' (-1)."""
    if token < 0:
        return ""
    return llama_cpp.llama_vocab_get_text(vocab, token).decode("utf-8", errors="replace")


def token_bytes(vocab: llama_cpp.llama_vocab_p, token: int, buffer: ctypes.Array) -> bytes:
    """The raw bytes of one token's piece (may be part of a UTF-8 character)."""
    length = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, False)
    if length < 0:  # the piece is longer than the buffer
        bigger = ctypes.create_string_buffer(-length)
        length = llama_cpp.llama_token_to_piece(vocab, token, bigger, len(bigger), 0, False)
        return bigger.raw[:length]
    return buffer.raw[:length]


def is_end_of_generation(vocab: llama_cpp.llama_vocab_p, token: int) -> bool:
    """True for tokens that end a turn (EOS, ``<end_of_turn>``, ``<|im_end|>``…)."""
    return bool(llama_cpp.llama_vocab_is_eog(vocab, token))
