"""A corpus of malformed GGUF files, each wrong in one way, made from small valid ones.

    from tests.bad_inputs import write_corpus
    files = write_corpus(folder)   # -> list[CorpusFile]

The bases are ``write_tiny_gguf`` (a ``llama`` header with two small tensors
and no hyper-parameters, for structural faults) and ``write_random_gemma3``
(a model llama.cpp really loads, for faults in the model's own numbers: if
the validator missed one, llama.cpp would see it). The faults follow
llama.cpp's history of GGUF parser bugs (CVE-2024-21825, -21802, -21836,
-23605, -23496, CVE-2025-53630, CVE-2026-27940): truncation, huge counts and
lengths, impossible shapes, unknown types, bad offsets, duplicates, wrong token
arrays, nested and huge arrays, and impossible hyper-parameters.

``expected_valid`` files pass the validator (``read_gguf_info`` and
``check_architecture_known``, what ``open_model`` runs) but are still no model
llama.cpp can load: their tensors do not match their architecture, so the
engine refuses them with a sentence. Every file in the corpus must end in a
sentence, none in a traceback or a crash.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.bad_inputs.gguf_doc import (
    ARRAY, BOOL, F32, F64, I32, STRING, U8, U32, U64, GgufDoc, Kv, encode_string, encode_value, parse, u32, u64,
)
from tests.gguf_factory import write_random_gemma3, write_random_llama, write_tiny_gguf

HUGE_COUNTS = (0, 2**31, 0xFFFFFFFF, 2**63 - 1, 0x1D1D1D1D1D1D1D1D)
HUGE_LENGTHS = (2**32, 2**64 - 1)
TRUNCATION_STEP = 16  # besides every field boundary, a cut every this many bytes of the header


@dataclass(frozen=True)
class CorpusFile:
    """One file of the corpus: where it is, what is wrong with it, and whether the validator should accept it."""

    name: str
    path: Path
    problem: str
    expected_valid: bool = False


@dataclass(frozen=True)
class _Case:
    slug: str
    problem: str
    data: bytes
    expected_valid: bool = False


def write_corpus(folder: Path) -> list[CorpusFile]:
    """Write every corpus file into ``folder`` (created if needed) and describe them, in a fixed order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hearth-corpus-") as scratch:
        tiny = parse(write_tiny_gguf(Path(scratch) / "tiny.gguf").read_bytes())
        gemma = parse(write_random_gemma3(Path(scratch) / "gemma.gguf").read_bytes())
        extra = {
            "gemma_h4_kv3": write_random_gemma3(Path(scratch) / "g43.gguf", heads=4, kv_heads=3).read_bytes(),
            "llama_h3": write_random_llama(Path(scratch) / "l3.gguf", heads=3, kv_heads=3).read_bytes(),
        }
        cases = list(_all_cases(tiny, gemma, extra))
    files = []
    for index, case in enumerate(cases):
        name = f"{index:03d}-{case.slug}.gguf"
        path = folder / name
        path.write_bytes(case.data)
        files.append(CorpusFile(name, path, case.problem, case.expected_valid))
    return files


def _all_cases(tiny: GgufDoc, gemma: GgufDoc, extra: dict[str, bytes]) -> Iterator[_Case]:
    yield from _truncations(tiny, gemma)
    yield from _header_cases(tiny)
    yield from _string_cases(tiny)
    yield from _tensor_cases(tiny)
    yield from _duplicate_cases(tiny)
    yield from _array_cases(tiny)
    yield from _alignment_cases(tiny)
    yield from _token_cases(gemma)
    yield from _hyperparameter_cases(gemma, extra)
    yield from _valid_but_unloadable(tiny, gemma)


def _edit(doc: GgufDoc, change: Callable[[GgufDoc], object]) -> bytes:
    copy = doc.copy()
    change(copy)
    return copy.to_bytes()


# ------------------------------------------------------------------ truncation


def _truncations(tiny: GgufDoc, gemma: GgufDoc) -> Iterator[_Case]:
    data = tiny.to_bytes()
    header_end = tiny.data_start
    cuts = set(range(0, header_end, TRUNCATION_STEP))
    for boundary in tiny.boundaries:
        if boundary < header_end:
            cuts.update((boundary, boundary + 1))
    cuts.update((header_end, header_end + 1, (header_end + len(data)) // 2, len(data) - 1))
    for cut in sorted(c for c in cuts if c < len(data)):
        where = "header and metadata" if cut < header_end else "tensor data"
        yield _Case(f"truncated-at-{cut}", f"cut short after {cut} of {len(data)} bytes (inside the {where})",
                    data[:cut])
    big = gemma.to_bytes()
    tokens_at = big.index(b"tokenizer.ggml.tokens") + 40
    for cut, where in ((tokens_at, "inside the vocabulary"), (gemma.data_start - 5, "inside the tensor list"),
                       (len(big) // 2, "inside the tensor data")):
        yield _Case(f"gemma-truncated-at-{cut}", f"a real model cut short after {cut} bytes ({where})", big[:cut])


# ------------------------------------------------------------------ header


def _with_counts(doc: GgufDoc, *, n_tensors: int | None = None, n_kv: int | None = None) -> bytes:
    copy = doc.copy()
    copy.n_tensors, copy.n_kv = n_tensors, n_kv
    return copy.to_bytes()


def _header_cases(tiny: GgufDoc) -> Iterator[_Case]:
    data = tiny.to_bytes()
    for magic in (b"gguf", b"GGML", b"\0\0\0\0"):
        yield _Case(f"magic-{magic.hex()}", f"starts with {magic!r} instead of b'GGUF'", magic + data[4:])
    for version in (0, 1, 4, 0xFFFFFFFF, 0x03000000):
        yield _Case(f"version-{version:#x}", f"claims GGUF version {version:#x}", data[:4] + u32(version) + data[8:])
    for count in HUGE_COUNTS:
        yield _Case(f"n-tensors-{count:#x}", f"header claims {count:#x} tensors (there are 2)",
                    _with_counts(tiny, n_tensors=count))
        yield _Case(f"n-kv-{count:#x}", f"header claims {count:#x} metadata entries (there are 4)",
                    _with_counts(tiny, n_kv=count))
    yield _Case("n-tensors-one-more", "header claims 3 tensors: the data is read as a third description",
                _with_counts(tiny, n_tensors=3))
    yield _Case("n-kv-one-more", "header claims 5 metadata entries: a tensor description is read as one",
                _with_counts(tiny, n_kv=5))
    yield _Case("n-kv-one-fewer", "header claims 3 metadata entries: the vocabulary is read as a tensor",
                _with_counts(tiny, n_kv=3))


# ------------------------------------------------------------------ strings


def _raw_kv(doc: GgufDoc, key: str, raw: bytes) -> GgufDoc:
    doc.kvs[doc.index(key)].raw = raw
    return doc


def _string_cases(tiny: GgufDoc) -> Iterator[_Case]:
    name_value = tiny.get("general.name").encode()
    for length in HUGE_LENGTHS:
        yield _Case(f"key-length-{length:#x}", f"the first key's length field says {length:#x} bytes",
                    _edit(tiny, lambda d, n=length: _raw_kv(d, "general.architecture",
                                                             u64(n) + b"general.architecture" + u32(STRING)
                                                             + d.kvs[0].payload)))
        yield _Case(f"string-length-{length:#x}", f"general.name's length field says {length:#x} bytes",
                    _edit(tiny, lambda d, n=length: _raw_kv(d, "general.name", encode_string("general.name")
                                                             + u32(STRING) + u64(n) + name_value)))
        yield _Case(f"tensor-name-length-{length:#x}", f"a tensor name's length field says {length:#x} bytes",
                    _edit(tiny, lambda d, n=length: setattr(d.tensors[0], "raw", u64(n) + b"weight_a" + u32(2)
                                                            + u64(32) + u64(4) + u32(0) + u64(0))))
        yield _Case(f"token-length-{length:#x}", f"the first token's length field says {length:#x} bytes",
                    _edit(tiny, lambda d, n=length: _raw_kv(d, "tokenizer.ggml.tokens",
                                                             encode_string("tokenizer.ggml.tokens") + u32(ARRAY)
                                                             + u32(STRING) + u64(5) + u64(n) + b"<unk>")))
        yield _Case(f"token-count-{length:#x}", f"the vocabulary claims {length:#x} tokens (there are 5)",
                    _edit(tiny, lambda d, n=length: _raw_kv(d, "tokenizer.ggml.tokens",
                                                             encode_string("tokenizer.ggml.tokens") + u32(ARRAY)
                                                             + u32(STRING) + u64(n) + d.kvs[3].payload[12:])))
    yield _Case("empty-key", "a metadata entry whose key is empty (length 0)",
                _edit(tiny, lambda d: d.kvs.insert(1, Kv("", U32, u32(7)))))
    yield _Case("string-length-16MiB-claimed", "general.name claims 17 MB in a 1 KB file",
                _edit(tiny, lambda d: _raw_kv(d, "general.name", encode_string("general.name") + u32(STRING)
                                              + u64(17 << 20) + name_value)))
    yield _Case("empty-tensor-name", "a tensor whose name is empty (length 0)",
                _edit(tiny, lambda d: setattr(d.tensors[1], "name", "")))
    yield _Case("tensor-name-64-bytes", "a tensor name of 64 bytes (llama.cpp allows 63)",
                _edit(tiny, lambda d: setattr(d.tensors[1], "name", "w" * 64)))
    yield _Case("architecture-not-utf8", "general.architecture is not UTF-8 text",
                _edit(tiny, lambda d: d.set("general.architecture", STRING, b"\xff\xfe llama")))


# ------------------------------------------------------------------ tensors


def _tensor0_raw(doc: GgufDoc, dims: list[int], type_id: int = 0, offset: int = 0) -> GgufDoc:
    doc.tensors[0].raw = (encode_string("weight_a") + u32(len(dims)) + b"".join(u64(x) for x in dims)
                          + u32(type_id) + u64(offset))
    return doc


def _tensor_cases(tiny: GgufDoc) -> Iterator[_Case]:
    for n_dims in (0, 5, 8, 255):
        dims = ([32, 4] + [1] * n_dims)[:n_dims] if n_dims else []
        yield _Case(f"n-dims-{n_dims}", f"a tensor with {n_dims} dimensions (GGUF allows 1 to 4)",
                    _edit(tiny, lambda d, x=dims: _tensor0_raw(d, x)))
    shapes = {
        "zero-dim-first": ([0, 4], "a tensor with a zero first dimension"),
        "zero-dim-second": ([32, 0], "a tensor with a zero second dimension"),
        "dim-2^63": ([32, 2**63], "a dimension of 2^63 (negative as llama.cpp's int64)"),
        "dim-2^64-1": ([32, 2**64 - 1], "a dimension of 2^64-1"),
        "dims-product-2^64": ([2**32, 2**32], "dimensions whose product is 2^64"),
        "dims-product-2^63": ([2**21, 2**21, 2**21], "three dimensions whose product is 2^63"),
        "dims-product-2^64-4d": ([2**16] * 4, "four dimensions whose product is 2^64"),
        "dims-product-past-2^63": ([2**62, 2], "dimensions whose product is just past 2^63 - 1"),
        "dims-huge-but-addressable": ([2**30, 2**30], "2^60 elements: representable, far larger than the file"),
    }
    for slug, (dims, problem) in shapes.items():
        yield _Case(slug, problem, _edit(tiny, lambda d, x=dims: _tensor0_raw(d, x)))
    yield _Case("row-not-a-block-multiple", "a Q4_0 tensor whose rows (33 values) are not whole 32-value blocks",
                _edit(tiny, lambda d: _tensor0_raw(d, [33, 4], type_id=2)))
    for type_id in (4, 5, 31, 36, 42, 43, 1000, 0xFFFFFFFF):
        yield _Case(f"tensor-type-{type_id}", f"a tensor of type {type_id} (removed, unknown or out of range)",
                    _edit(tiny, lambda d, t=type_id: setattr(d.tensors[1], "type_id", t)))
    offsets = {
        "offset-misaligned": (1, 513, "the second tensor's data starts at 513, not a multiple of 32"),
        "offset-first-misaligned": (0, 1, "the first tensor's data starts at 1, not at 0"),
        "offset-past-end": (1, 2**40, "the second tensor's data starts 1 TB past the end of the file"),
        "offset-wraps-2^64": (1, 2**64 - 32, "the second tensor's offset plus its size wraps past 2^64"),
        "overlapping-tensors": (1, 0, "both tensors share the same data (offset 0)"),
        "overlapping-partly": (1, 256, "the second tensor's data starts inside the first one's"),
        "offset-gap": (1, 544, "a 32-byte gap between the two tensors"),
    }
    for slug, (index, offset, problem) in offsets.items():
        yield _Case(slug, problem, _edit(tiny, lambda d, i=index, o=offset: setattr(d.tensors[i], "offset", o)))
    yield _Case("offsets-swapped", "the tensors' offsets are swapped (out of order)",
                _edit(tiny, lambda d: (setattr(d.tensors[0], "offset", 512), setattr(d.tensors[1], "offset", 0))))


# ------------------------------------------------------------------ duplicates


def _duplicate_cases(tiny: GgufDoc) -> Iterator[_Case]:
    yield _Case("duplicate-tensor-name", "two tensors named weight_a",
                _edit(tiny, lambda d: setattr(d.tensors[1], "name", "weight_a")))
    yield _Case("duplicate-key", "general.name appears twice",
                _edit(tiny, lambda d: d.kvs.append(Kv("general.name", STRING, encode_value(STRING, "Again")))))
    yield _Case("duplicate-key-other-type", "general.name appears twice, the second time as a number",
                _edit(tiny, lambda d: d.kvs.append(Kv("general.name", U32, u32(5)))))
    yield _Case("duplicate-architecture", "general.architecture appears twice (llama, then gemma3)",
                _edit(tiny, lambda d: d.kvs.append(Kv("general.architecture", STRING, encode_value(STRING, "gemma3")))))


# ------------------------------------------------------------------ arrays


def _add_raw(doc: GgufDoc, key: str, raw_value: bytes, value_type: int = ARRAY) -> GgufDoc:
    doc.kvs.append(Kv(key, value_type, raw_value))
    return doc


def _array_cases(tiny: GgufDoc) -> Iterator[_Case]:
    claims = {
        "array-u8-2^62": (U8, 2**62, "a uint8 array claiming 2^62 elements"),
        "array-u64-2^61": (U64, 2**61, "a uint64 array claiming 2^61 elements (2^64 bytes)"),
        "array-u8-2^64-1": (U8, 2**64 - 1, "a uint8 array claiming 2^64-1 elements"),
        "array-strings-2^63-1": (STRING, 2**63 - 1, "an array of texts claiming 2^63-1 elements"),
        "array-u32-just-too-long": (U32, 1 << 20, "a uint32 array claiming 4 MB in a 1 KB file"),
    }
    for slug, (element_type, count, problem) in claims.items():
        yield _Case(slug, problem, _edit(tiny, lambda d, e=element_type, n=count: _add_raw(
            d, "hearth.huge", u32(e) + u64(n) + b"\0" * 16)))
    yield _Case("array-of-arrays", "a metadata array of arrays (GGUF readers refuse nesting)",
                _edit(tiny, lambda d: _add_raw(d, "hearth.nested", encode_value(ARRAY, (ARRAY, [(U8, [1, 2])])))))
    deep = b"".join(u32(ARRAY) + u64(1) for _ in range(100_000)) + u32(U8) + u64(0)
    yield _Case("array-nested-100000-deep", "arrays nested 100,000 levels deep (1.2 MB of array headers)",
                _edit(tiny, lambda d: _add_raw(d, "hearth.deep", deep)))
    yield _Case("array-of-arrays-huge-count", "an array claiming 2^63 empty arrays",
                _edit(tiny, lambda d: _add_raw(d, "hearth.nested", u32(ARRAY) + u64(2**63) + u32(U8) + u64(0))))
    for element_type in (13, 0xFFFFFFFF):
        yield _Case(f"array-element-type-{element_type:#x}", f"an array of unknown element type {element_type:#x}",
                    _edit(tiny, lambda d, e=element_type: _add_raw(d, "hearth.odd", u32(e) + u64(1) + b"\0" * 8)))
    for value_type in (13, 255, 0xFFFFFFFF):
        yield _Case(f"value-type-{value_type:#x}", f"a metadata value of unknown type {value_type:#x}",
                    _edit(tiny, lambda d, t=value_type: _add_raw(d, "hearth.odd", b"\0" * 8, t)))


def _with_alignment(doc: GgufDoc, value_type: int, payload: bytes) -> GgufDoc:
    doc.layout_alignment = 32  # the data stays where it was: only the claim changes
    return _add_raw(doc, "general.alignment", payload, value_type)


def _alignment_cases(tiny: GgufDoc) -> Iterator[_Case]:
    for value in (0, 3, 48, 2**31):
        yield _Case(f"alignment-{value}", f"general.alignment is {value}",
                    _edit(tiny, lambda d, v=value: _with_alignment(d, U32, u32(v))))
    for value_type, payload in ((U64, u64(32)), (I32, u32(32)), (STRING, encode_string("32"))):
        yield _Case(f"alignment-as-type-{value_type}", f"general.alignment is 32 stored as GGUF type {value_type}",
                    _edit(tiny, lambda d, t=value_type, p=payload: _with_alignment(d, t, p)))


# ------------------------------------------------------------------ vocabulary


def _token_cases(gemma: GgufDoc) -> Iterator[_Case]:
    tokens = gemma.get("tokenizer.ggml.tokens")[1]
    n = len(tokens)
    yield _Case("tokens-as-numbers", "the vocabulary is an array of uint32, not of texts",
                _edit(gemma, lambda d: d.set("tokenizer.ggml.tokens", ARRAY, (U32, list(range(n))))))
    yield _Case("tokens-as-one-text", "the vocabulary is one text, not an array",
                _edit(gemma, lambda d: d.set("tokenizer.ggml.tokens", STRING, " ".join(tokens))))
    yield _Case("tokens-empty", "the vocabulary is an empty array",
                _edit(gemma, lambda d: d.set("tokenizer.ggml.tokens", ARRAY, (STRING, []))))
    yield _Case("scores-as-texts", "the token scores are texts",
                _edit(gemma, lambda d: d.set("tokenizer.ggml.scores", ARRAY, (STRING, ["0"] * n))))
    yield _Case("scores-as-float64", "the token scores are float64 (llama.cpp reads float32)",
                _edit(gemma, lambda d: d.set("tokenizer.ggml.scores", ARRAY, (F64, [0.0] * n))))
    yield _Case("scores-too-short", f"10 token scores for {n} tokens (llama.cpp would read past the array)",
                _edit(gemma, lambda d: d.set("tokenizer.ggml.scores", ARRAY, (F32, [0.0] * 10))))
    yield _Case("scores-too-long", f"{n + 5} token scores for {n} tokens",
                _edit(gemma, lambda d: d.set("tokenizer.ggml.scores", ARRAY, (F32, [0.0] * (n + 5)))))
    yield _Case("scores-as-scalar", "the token scores are one number",
                _edit(gemma, lambda d: d.set("tokenizer.ggml.scores", F32, 0.0)))
    yield _Case("token-types-as-float", "the token types are float32 (llama.cpp reads int32)",
                _edit(gemma, lambda d: d.set("tokenizer.ggml.token_type", ARRAY, (F32, [1.0] * n))))
    yield _Case("token-types-too-short", f"3 token types for {n} tokens",
                _edit(gemma, lambda d: d.set("tokenizer.ggml.token_type", ARRAY, (I32, [1, 1, 1]))))
    yield _Case("token-types-as-u8", "the token types are uint8",
                _edit(gemma, lambda d: d.set("tokenizer.ggml.token_type", ARRAY, (U8, [1] * n))))
    yield _Case("merges-as-numbers", "the tokenizer merges are uint32, not texts",
                _edit(gemma, lambda d: d.set("tokenizer.ggml.merges", ARRAY, (U32, [1, 2, 3]))))
    yield _Case("bos-id-as-text", "the start token id is a text",
                _edit(gemma, lambda d: d.set("tokenizer.ggml.bos_token_id", STRING, "2")))
    yield _Case("bos-id-as-int32", "the start token id is int32 (llama.cpp reads uint32)",
                _edit(gemma, lambda d: d.set("tokenizer.ggml.bos_token_id", I32, 2)))
    yield _Case("add-bos-as-number", "add_bos_token is a uint32, not a yes/no",
                _edit(gemma, lambda d: d.set("tokenizer.ggml.add_bos_token", U32, 1)))
    yield _Case("vocab-size-mismatch", f"gemma3.vocab_size says 999 tokens, the vocabulary lists {n}",
                _edit(gemma, lambda d: d.set("gemma3.vocab_size", U32, 999)))


# ------------------------------------------------------------------ hyper-parameters

_COUNT_KEYS = ("context_length", "embedding_length", "block_count", "attention.head_count",
               "attention.head_count_kv", "attention.key_length", "attention.value_length")


def _hyperparameter_cases(gemma: GgufDoc, extra: dict[str, bytes]) -> Iterator[_Case]:
    def change(slug: str, problem: str, key: str, value_type: int, value) -> _Case:
        return _Case(slug, problem, _edit(gemma, lambda d: d.set(f"gemma3.{key}", value_type, value)))

    for key in _COUNT_KEYS:
        slug = key.replace("attention.", "").replace("_", "-")
        yield change(f"{slug}-0", f"gemma3.{key} is 0", key, U32, 0)
        yield change(f"{slug}-max-u32", f"gemma3.{key} is 4,294,967,295", key, U32, 0xFFFFFFFF)
        yield change(f"{slug}-negative", f"gemma3.{key} is -1 (int32)", key, I32, -1)
        yield change(f"{slug}-as-text", f"gemma3.{key} is the text '2'", key, STRING, "2")
        yield change(f"{slug}-as-float", f"gemma3.{key} is the float 2.0", key, F32, 2.0)
    yield change("block-count-513", "gemma3.block_count is 513 (llama.cpp allows 512)", "block_count", U32, 513)
    yield change("head-count-kv-more-than-heads", "3 key-value heads for 2 attention heads",
                 "attention.head_count_kv", U32, 3)
    yield _Case("head-count-kv-not-a-divisor", "4 attention heads in 3 key-value groups (tensors to match)",
                extra["gemma_h4_kv3"])
    yield _Case("embedding-not-divisible-by-heads", "an embedding of 64 in 3 heads, no key length (tensors to match)",
                extra["llama_h3"])
    yield change("head-count-per-layer-short", "per-layer head counts for 1 layer of 2",
                 "attention.head_count", ARRAY, (U32, [2]))
    yield change("head-count-per-layer-huge", "a per-layer head count of 4,294,967,295",
                 "attention.head_count", ARRAY, (U32, [2, 0xFFFFFFFF]))
    yield change("head-count-per-layer-float", "per-layer head counts as float32",
                 "attention.head_count", ARRAY, (F32, [2.0, 2.0]))
    for value, why in ((0, "0"), (31, "odd"), (100_000, "absurd"), (64, "larger than the head size (32)")):
        yield change(f"rope-dimensions-{value}", f"gemma3.rope.dimension_count is {value} ({why})",
                     "rope.dimension_count", U32, value)
    for value in (0.0, -1.0, math.nan, math.inf):
        yield change(f"rope-freq-base-{value}", f"gemma3.rope.freq_base is {value}", "rope.freq_base", F32, value)
    yield change("rope-freq-base-as-u32", "gemma3.rope.freq_base is a uint32", "rope.freq_base", U32, 10000)
    yield change("rope-scaling-unknown", "gemma3.rope.scaling.type is 'banana'", "rope.scaling.type", STRING, "banana")
    yield change("rope-scaling-as-number", "gemma3.rope.scaling.type is a uint32", "rope.scaling.type", U32, 1)
    yield change("rms-epsilon-nan", "the RMS norm epsilon is NaN", "attention.layer_norm_rms_epsilon", F32, math.nan)
    yield change("rms-epsilon-negative", "the RMS norm epsilon is -1", "attention.layer_norm_rms_epsilon", F32, -1.0)
    yield change("expert-count-2000", "2,000 experts (llama.cpp allows 1,024)", "expert_count", U32, 2000)
    yield change("experts-used-without-experts", "3 experts used per token, no experts",
                 "expert_used_count", U32, 3)
    yield change("experts-none-used", "4 experts, none used per token", "expert_count", U32, 4)
    yield _Case("experts-used-more-than-count", "8 experts used per token of 4",
                _edit(gemma, lambda d: (d.set("gemma3.expert_count", U32, 4), d.set("gemma3.expert_used_count", U32, 8))))
    yield _Case("expert-groups-do-not-divide", "4 experts in 3 groups",
                _edit(gemma, lambda d: (d.set("gemma3.expert_count", U32, 4), d.set("gemma3.expert_used_count", U32, 2),
                                        d.set("gemma3.expert_group_count", U32, 3))))
    yield change("nextn-layers-past-block-count", "5 prediction layers in a 2-layer model",
                 "nextn_predict_layers", U32, 5)
    yield _Case("architecture-as-number", "general.architecture is a uint32",
                _edit(gemma, lambda d: d.set("general.architecture", U32, 3)))
    yield _Case("architecture-missing", "no general.architecture",
                _edit(gemma, lambda d: d.remove("general.architecture")))
    yield _Case("architecture-unknown", "general.architecture is 'mamba9', which llama.cpp does not know",
                _edit(gemma, lambda d: d.set("general.architecture", STRING, "mamba9")))
    yield _Case("architecture-empty", "general.architecture is an empty text",
                _edit(gemma, lambda d: d.set("general.architecture", STRING, "")))


# ------------------------------------------------------------------ valid structure, unloadable model


def _valid_but_unloadable(tiny: GgufDoc, gemma: GgufDoc) -> Iterator[_Case]:
    def valid(slug: str, problem: str, data: bytes) -> _Case:
        return _Case(slug, problem, data, expected_valid=True)

    yield valid("tiny-llama-without-hyperparameters",
                "a sound file whose llama header lacks the model's hyper-parameters and tensors", tiny.to_bytes())
    yield valid("empty-name", "general.name is an empty text", _edit(tiny, lambda d: d.set("general.name", STRING, "")))
    yield valid("name-not-utf8", "general.name is not UTF-8", _edit(tiny, lambda d: d.set("general.name", STRING,
                                                                                        b"\xc3\x28 model")))
    yield valid("empty-token", "the first token is an empty text",
                _edit(tiny, lambda d: d.set("tokenizer.ggml.tokens", ARRAY, (STRING, ["", "<s>", "</s>", "hi", "x"]))))
    yield valid("key-not-utf8", "a metadata key that is not UTF-8",
                _edit(tiny, lambda d: d.kvs.append(Kv("", BOOL, b"\x01", raw=encode_string(b"\xffkey") + u32(BOOL)
                                                      + b"\x01"))))
    yield valid("alignment-64", "general.alignment 64, data laid out to match",
                _edit(tiny, lambda d: d.set("general.alignment", U32, 64)))
    yield valid("big-real-array", "a 1 MB uint8 metadata array that is really there",
                _edit(tiny, lambda d: _add_raw(d, "hearth.blob", u32(U8) + u64(1 << 20) + bytes(1 << 20))))
    yield valid("n-tensors-one-fewer", "header claims 1 tensor: the second description is read as data",
                _with_counts(tiny, n_tensors=1))
    yield valid("gemma-block-count-3", "gemma3.block_count is 3, the file has tensors for 2 layers",
                _edit(gemma, lambda d: d.set("gemma3.block_count", U32, 3)))
    yield valid("gemma-missing-tensor", "the output norm tensor is missing",
                _edit(gemma, lambda d: d.tensors.remove(d.tensor("output_norm.weight"))))
    yield valid("gemma-wrong-shape", "a key projection stored transposed (wrong shape for the architecture)",
                _edit(gemma, lambda d: d.tensor("blk.0.attn_k.weight").dims.reverse()))
    yield valid("gemma-feed-forward-0", "gemma3.feed_forward_length is 0, the FFN tensors say 128",
                _edit(gemma, lambda d: d.set("gemma3.feed_forward_length", U32, 0)))
