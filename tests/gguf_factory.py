"""Write small GGUF files for tests with the gguf package (the format's reference writer)."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np


def write_out(writer: gguf.GGUFWriter) -> None:
    """Write the header, the metadata and the tensors added to ``writer``, and close the file."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_tiny_gguf(
    path: Path,
    *,
    architecture: str = "llama",
    name: str = "Tiny Test",
    chat_template: str | None = None,
    context_length: int = 256,
    uint32_keys: dict[str, int] | None = None,
) -> Path:
    """A GGUF with a few metadata keys (and ``uint32_keys``) and two small tensors; returns ``path``."""
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name(name)
    for key, value in (uint32_keys or {}).items():
        writer.add_uint32(key, value)
    writer.add_context_length(context_length)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    writer.add_token_list(["<unk>", "<s>", "</s>", "hello", "wörld"])
    writer.add_tensor("weight_a", np.arange(4 * 32, dtype=np.float32).reshape(4, 32))
    writer.add_tensor("weight_b", np.ones(64, dtype=np.float16))
    write_out(writer)
    return path


SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
WORDS = ["▁the", "▁a", "▁sea", "▁is", "▁blue", "▁User", "▁Assistant", ":", ".", "▁I", "▁am", "▁hello",
         "▁what", "▁why", "▁fish", "▁whale", "▁water", "?", "!", ",", "▁and", "▁of", "▁to", "▁in"]


def add_tiny_spm_vocab(writer: gguf.GGUFWriter, size: int = 0) -> int:
    """A SentencePiece-style vocabulary: specials, 256 byte tokens, a few words, padded to ``size``.

    Returns the vocabulary's size. Padding to a real model's size (Gemma 3:
    262,144) gives a realistic output layer for speed measurements.
    """
    words = WORDS + ["▁"] + [f"▁w{index}" for index in range(max(0, size - 262 - len(WORDS) - 1))]
    tokens = SPECIAL_TOKENS + [f"<0x{byte:02X}>" for byte in range(256)] + words
    types = ([gguf.TokenType.CONTROL] * 4 + [gguf.TokenType.USER_DEFINED] * 2
             + [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * len(words))
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * 262 + [-float(index) for index in range(len(words))])
    writer.add_token_types(types)
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(3)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    return len(tokens)


def copy_tokenizer(writer: gguf.GGUFWriter, source: Path) -> int:
    """Copy every ``tokenizer.*`` key of the GGUF at ``source`` into ``writer``; returns the vocabulary's size."""
    reader = gguf.GGUFReader(str(source))
    for name, field in reader.fields.items():
        if name.startswith("tokenizer."):
            array = field.types[0] == gguf.GGUFValueType.ARRAY
            writer.add_key_value(name, field.contents(), field.types[0], sub_type=field.types[-1] if array else None)
    return len(reader.fields["tokenizer.ggml.tokens"].contents())


def write_random_gemma3(
    path: Path,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 2,
    kv_heads: int = 1,
    head_dim: int = 32,
    ff: int = 128,
    sliding_window: int = 16,
    vocab_size: int = 0,
    seed: int = 0,
) -> Path:
    """A small Gemma 3 GGUF with random F16 weights and a tiny vocabulary.

    Both llama.cpp and transformers load it, so it exercises the engines end
    to end in seconds. ``sliding_window`` is small so that prompts cross it.
    """
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_name("Random Gemma 3 it test model")
    writer.add_context_length(4096)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    writer.add_sliding_window(sliding_window)
    vocab = add_tiny_spm_vocab(writer, vocab_size)
    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)

    def norm(size: int) -> np.ndarray:
        return np.ones(size, dtype=np.float32)

    writer.add_tensor("token_embd.weight", weight(vocab, hidden))
    writer.add_tensor("output_norm.weight", norm(hidden))
    for layer in range(layers):
        prefix = f"blk.{layer}."
        for name in ("attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"):
            writer.add_tensor(prefix + name + ".weight", norm(hidden))
        writer.add_tensor(prefix + "attn_q_norm.weight", norm(head_dim))
        writer.add_tensor(prefix + "attn_k_norm.weight", norm(head_dim))
        writer.add_tensor(prefix + "attn_q.weight", weight(heads * head_dim, hidden))
        writer.add_tensor(prefix + "attn_k.weight", weight(kv_heads * head_dim, hidden))
        writer.add_tensor(prefix + "attn_v.weight", weight(kv_heads * head_dim, hidden))
        writer.add_tensor(prefix + "attn_output.weight", weight(hidden, heads * head_dim))
        writer.add_tensor(prefix + "ffn_gate.weight", weight(ff, hidden))
        writer.add_tensor(prefix + "ffn_up.weight", weight(ff, hidden))
        writer.add_tensor(prefix + "ffn_down.weight", weight(hidden, ff))
    write_out(writer)
    return path


# Quantized blocks: (bytes per 256 weights, byte offsets of the f16 scales to set).
_QUANT_BLOCKS = {gguf.GGMLQuantizationType.Q4_K: (144, (0, 2)), gguf.GGMLQuantizationType.Q6_K: (210, (208,))}


def write_random_llama(
    path: Path,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    ff: int = 128,
    vocab_size: int = 0,
    context_length: int = 4096,
    rope_theta: float = 10000.0,
    tied_embeddings: bool = False,
    weights: str = "F32",
    scale: float = 0.02,
    seed: int = 0,
    chat_template: str | None = None,
    vocab_from: Path | None = None,
) -> Path:
    """A Llama GGUF with random weights and the tiny SentencePiece vocabulary (padded to ``vocab_size``).

    ``vocab_from``: another GGUF whose tokenizer to use instead (a real model's, so that prompts
    take as many tokens as they would on that model).

    ``weights``: "F32" or "F16" (normal weights times ``scale``: both
    llama.cpp and transformers load these), or "Q4_K_M" (random quantized
    blocks in llama.cpp's Q4_K_M mix of Q4_K and Q6_K, for speed measurements
    at real shapes; needs ``hidden`` and ``ff`` to be multiples of 256).
    """
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("Random Llama test model")
    writer.add_context_length(context_length)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(rope_theta)
    vocab = copy_tokenizer(writer, vocab_from) if vocab_from is not None else add_tiny_spm_vocab(writer, vocab_size)
    writer.add_vocab_size(vocab)
    file_types = {"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
                  "Q4_K_M": gguf.LlamaFileType.MOSTLY_Q4_K_M}
    writer.add_file_type(file_types[weights])
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    rng = np.random.default_rng(seed)
    head_dim = hidden // heads

    def add(name: str, rows: int, columns: int, *, more_bits: bool = False) -> None:
        if weights != "Q4_K_M":
            values = rng.standard_normal((rows, columns), dtype=np.float32) * scale
            writer.add_tensor(name, values.astype(np.float16 if weights == "F16" else np.float32))
            return
        kind = gguf.GGMLQuantizationType.Q6_K if more_bits else gguf.GGMLQuantizationType.Q4_K
        block_bytes, scale_offsets = _QUANT_BLOCKS[kind]
        blocks = np.frombuffer(rng.bytes(rows * columns // 256 * block_bytes), dtype=np.uint8).copy()
        blocks = blocks.reshape(-1, block_bytes)
        for offset in scale_offsets:  # small, finite block scales: no NaN or infinity in the weights
            blocks[:, offset:offset + 2] = np.array([1e-4], dtype=np.float16).view(np.uint8)
        writer.add_tensor(name, blocks.reshape(rows, -1), raw_dtype=kind)

    def more_bits(layer: int) -> bool:  # llama.cpp's use_more_bits: Q6_K for these layers' attn_v and ffn_down
        return layer < layers // 8 or layer >= 7 * layers // 8 or (layer - layers // 8) % 3 == 2

    add("token_embd.weight", vocab, hidden, more_bits=tied_embeddings)
    writer.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    if not tied_embeddings:
        add("output.weight", vocab, hidden, more_bits=True)
    for layer in range(layers):
        prefix = f"blk.{layer}."
        writer.add_tensor(prefix + "attn_norm.weight", np.ones(hidden, dtype=np.float32))
        writer.add_tensor(prefix + "ffn_norm.weight", np.ones(hidden, dtype=np.float32))
        add(prefix + "attn_q.weight", heads * head_dim, hidden)
        add(prefix + "attn_k.weight", kv_heads * head_dim, hidden)
        add(prefix + "attn_v.weight", kv_heads * head_dim, hidden, more_bits=more_bits(layer))
        add(prefix + "attn_output.weight", hidden, heads * head_dim)
        add(prefix + "ffn_gate.weight", ff, hidden)
        add(prefix + "ffn_up.weight", ff, hidden)
        add(prefix + "ffn_down.weight", hidden, ff, more_bits=more_bits(layer))
    write_out(writer)
    return path


BERT_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BERT_WORDS = ["the", "a", "sea", "is", "blue", "lighthouse", "green", "harbour", "ledger", "cargo", "tides",
              "weather", "what", "colour", "was", "painted", ".", "?", ",", "##s"]


def write_random_bert(
    path: Path,
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    ff: int = 64,
    context_length: int = 32,
    seed: int = 0,
) -> Path:
    """A BERT embedding model (all-MiniLM's and bge-small's architecture) with random weights.

    Mean pooling, a WordPiece vocabulary of a few words, and a short
    ``context_length``: its position table has that many rows, so a text of
    more tokens than that must be cut before llama.cpp sees it.
    """
    writer = gguf.GGUFWriter(str(path), "bert")
    writer.add_name("Random BERT embedding test model")
    writer.add_context_length(context_length)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_layer_norm_eps(1e-12)
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    tokens = BERT_SPECIAL_TOKENS + BERT_WORDS
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL] * len(BERT_SPECIAL_TOKENS)
                           + [gguf.TokenType.NORMAL] * len(BERT_WORDS))
    writer.add_token_type_count(2)
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(3)
    writer.add_unk_token_id(1)
    writer.add_sep_token_id(3)
    writer.add_pad_token_id(0)
    writer.add_mask_token_id(4)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(True)
    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32) * 0.02

    def norm(name: str, size: int) -> None:
        writer.add_tensor(name + ".weight", np.ones(size, dtype=np.float32))
        writer.add_tensor(name + ".bias", np.zeros(size, dtype=np.float32))

    def linear(name: str, rows: int, columns: int) -> None:
        writer.add_tensor(name + ".weight", weight(rows, columns))
        writer.add_tensor(name + ".bias", np.zeros(rows, dtype=np.float32))

    writer.add_tensor("token_embd.weight", weight(len(tokens), hidden))
    writer.add_tensor("token_types.weight", weight(2, hidden))
    writer.add_tensor("position_embd.weight", weight(context_length, hidden))
    norm("token_embd_norm", hidden)
    for layer in range(layers):
        prefix = f"blk.{layer}."
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            linear(prefix + name, hidden, hidden)
        norm(prefix + "attn_output_norm", hidden)
        linear(prefix + "ffn_up", ff, hidden)
        linear(prefix + "ffn_down", hidden, ff)
        norm(prefix + "layer_output_norm", hidden)
    write_out(writer)
    return path
