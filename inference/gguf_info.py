"""Read and check a GGUF file's header without loading the model.

Model files come from strangers, and llama.cpp has a long history of parser
overflows. The reader validates everything it reads against the file's size
and against the limits of llama.cpp's own loader: the file's structure (counts,
strings, arrays, tensor shapes, types and a data layout with no overlap, gap
or misalignment) and the model's hyper-parameters (layer, head and expert
counts, head sizes, context and vocabulary). A file that is not GGUF, is cut
short or holds impossible values gives a sentence here, never an exception of
another kind and never an allocation the size of a claimed length, instead
of a refusal or an abort inside the engine.
"""

from __future__ import annotations

import math
import mmap
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.file_formats import GGUF_MAGIC, HEAD_BYTES, code_carrying_reason
from inference.errors import (
    CorruptModelError,
    ModelNotFoundError,
    NotGgufError,
    TruncatedModelError,
    UnsupportedModelError,
)

SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
_MAX_TENSORS = 1_000_000
_MAX_KV = 1_000_000
# llama.cpp's own limits (ggml/src/gguf.cpp, src/llama-hparams.h): past them it refuses the file or
# stops on an assertion, which ends the engine process.
_MAX_DIMS = 4  # GGML_MAX_DIMS
_MAX_NAME_BYTES = 63  # GGML_MAX_NAME, with its terminating zero
_MAX_ELEMENTS = (1 << 63) - 1  # a tensor's element count is an int64
_MAX_ARRAY_ITEMS = 1 << 30  # GGUF_MAX_ARRAY_ELEMENTS
_MAX_LAYERS = 512  # LLAMA_MAX_LAYERS
_MAX_EXPERTS = 1024  # LLAMA_MAX_EXPERTS
# Hearth's own bounds, far above any real model: they keep time and memory bounded on hostile files.
_MAX_TEXT_BYTES = 16 << 20  # a key or text value (chat templates are a few KB)
_MAX_STRINGS = 1 << 24  # texts in one array (vocabularies hold ~10^5)
_SMALL_ARRAY = _MAX_LAYERS  # numeric arrays this short are kept: per-layer hyper-parameters

# GGUF value types -> struct format of one scalar.
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_U32, _I32, _F32, _BOOL, _STRING, _ARRAY, _F64 = 4, 5, 6, 7, 8, 9, 12
_TYPE_NAMES = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32", 6: "float32", 7: "bool",
               8: "text", 9: "array", 10: "uint64", 11: "int64", 12: "float64"}
_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class ArraySummary:
    """A metadata array, summarised: its element type and length.

    Contents are skipped, except ``items`` of numeric arrays of at most 512
    elements (per-layer hyper-parameters); None otherwise.
    """

    element_type: int
    length: int
    items: tuple | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class GgufInfo:
    """Facts about a model, read from its GGUF header."""

    path: Path
    file_size: int
    version: int
    tensor_count: int
    data_end: int
    metadata: dict[str, Any] = field(repr=False)
    parameter_count: int = 0
    block_bytes: int = 0  # bytes of the repeating layers' tensors (``blk.N.*``): what GPU offload moves layer by layer

    @property
    def architecture(self) -> str:
        """The model architecture, e.g. ``gemma3`` or ``llama``."""
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def name(self) -> str:
        """The model's own name, or the file name without extension."""
        return str(self.metadata.get("general.name") or self.path.stem)

    @property
    def context_length(self) -> int | None:
        """The longest context the model was trained for, if the header says."""
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if isinstance(value, int) else None

    @property
    def chat_template(self) -> str | None:
        """The model's own Jinja chat template, if it ships one."""
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) and value.strip() else None

    @property
    def quantization(self) -> str:
        """The file's quantization, e.g. ``Q4_K_M`` (from ``general.file_type``), or ``unknown``."""
        from gguf.constants import LlamaFileType

        try:
            return LlamaFileType(self.metadata.get("general.file_type")).name.removeprefix("MOSTLY_")
        except ValueError:
            return "unknown"

    def arch_value(self, key: str) -> Any:
        """A value stored under ``<architecture>.<key>``, or None."""
        return self.metadata.get(f"{self.architecture}.{key}")


_TUNED_MARKERS = {"it", "instruct", "chat", "sft", "dpo", "rlhf", "orpo", "assistant"}


def looks_instruction_tuned(info: GgufInfo) -> bool:
    """Whether the model was tuned to follow a chat, judged from its header.

    A chat template is proof. Otherwise the fine-tune tag and the names are
    searched for words like ``it``, ``instruct`` or ``chat``
    (``gemma-3-270m-it`` is tuned, ``gemma-3-270m`` is a base model).
    """
    if info.chat_template:
        return True
    names = [info.metadata.get(key) for key in ("general.finetune", "general.name", "general.basename")]
    names.append(info.path.stem)
    words = set()
    for name in names:
        if isinstance(name, str):
            words.update(re.split(r"[^a-z0-9]+", name.lower()))
    return bool(words & _TUNED_MARKERS)


def check_architecture_known(info: GgufInfo) -> None:
    """Refuse a model whose architecture llama.cpp does not know, with a sentence instead of a load error.

    The list is gguf-py's, which is maintained with llama.cpp itself.

    Raises:
        UnsupportedModelError: the architecture is unknown (or missing).
    """
    from gguf.constants import MODEL_ARCH_NAMES

    if info.architecture not in set(MODEL_ARCH_NAMES.values()):
        raise UnsupportedModelError(
            f"{info.path.name} is a '{_shown(info.architecture)}' model, an architecture this version of Hearth "
            "cannot run. Look for a GGUF of a supported model (Llama, Qwen, Gemma, Mistral, Phi…)."
        )


def read_gguf_info(path: Path) -> GgufInfo:
    """Read and validate the header of the GGUF file at ``path``.

    Checks the file's structure and the model's hyper-parameters (see the
    module docstring); a file that passes gets no refusal or abort from
    llama.cpp's loader for those reasons. Contents are read through a memory
    map and arrays are skipped, so the built-in model takes milliseconds.

    Raises:
        ModelNotFoundError: there is no file at ``path``.
        NotGgufError: the file is not GGUF (or a GGUF version Hearth cannot read).
        TruncatedModelError: the file is shorter than its header says.
        CorruptModelError: the header holds impossible values.
        UnsupportedModelError: the file holds no tensors (a vocabulary-only file).
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            size = path.stat().st_size
            head = file.read(HEAD_BYTES)
            if size < 4 or not head.startswith(GGUF_MAGIC):
                raise NotGgufError(code_carrying_reason(path.name, head) or f"{path.name} is not a GGUF model file.")
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return _parse(path, mapped, size)
    except FileNotFoundError as exc:
        raise ModelNotFoundError(f"The model file {path} does not exist.") from exc
    except IsADirectoryError as exc:
        raise NotGgufError(f"{path} is a folder, not a GGUF model file.") from exc


def _shown(text: str, limit: int = 60) -> str:
    """``text`` as it may appear in a sentence: printable and short (names in hostile files are neither)."""
    clean = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return clean + "…" if len(text) > limit else clean


class _Reader:
    """Reads little-endian GGUF values from a buffer, checking every read against its end."""

    def __init__(self, buffer: mmap.mmap, name: str) -> None:
        self._buffer = buffer
        self._size = len(buffer)
        self._name = name
        self.pos = 0

    def truncated(self) -> TruncatedModelError:
        return TruncatedModelError(
            f"{self._name} is incomplete: it ends inside its header. "
            "The download or copy probably stopped early."
        )

    def corrupt(self, problem: str) -> CorruptModelError:
        return CorruptModelError(f"{self._name} {problem}; the file is damaged.")

    def skip(self, count: int) -> None:
        if count < 0 or self.pos + count > self._size:
            raise self.truncated()
        self.pos += count

    def take(self, count: int) -> bytes:
        start = self.pos
        self.skip(count)
        return self._buffer[start:self.pos]

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def raw_string(self) -> bytes:
        length = self.scalar("<Q")
        if length > _MAX_TEXT_BYTES:
            raise self.corrupt(f"claims a text of {length:,} bytes, far more than any model needs")
        return self.take(length)

    def string(self) -> str:
        return self.raw_string().decode("utf-8", errors="replace")

    def value(self, value_type: int) -> Any:
        if value_type in _SCALAR_FORMATS:
            return self.scalar(_SCALAR_FORMATS[value_type])
        if value_type == _STRING:
            return self.string()
        if value_type == _ARRAY:
            return self.array(self.scalar("<I"), self.scalar("<Q"))
        raise self.corrupt(f"has an unknown metadata type ({value_type})")

    def array(self, element_type: int, length: int) -> ArraySummary:
        if element_type == _ARRAY:
            raise self.corrupt("holds an array of arrays, which GGUF readers do not accept")
        if element_type not in _SCALAR_FORMATS and element_type != _STRING:
            raise self.corrupt(f"has an unknown array type ({element_type})")
        if length > _MAX_ARRAY_ITEMS or (element_type == _STRING and length > _MAX_STRINGS):
            raise self.corrupt(f"claims an array of {length:,} items, more than any model holds")
        if element_type == _STRING:
            self._skip_strings(length)
            return ArraySummary(element_type, length)
        fmt = _SCALAR_FORMATS[element_type]
        start = self.pos
        self.skip(struct.calcsize(fmt) * length)
        items = None
        if length <= _SMALL_ARRAY:
            items = struct.unpack_from(f"<{length}{fmt[1]}", self._buffer, start)
        return ArraySummary(element_type, length, items)

    def _skip_strings(self, count: int) -> None:
        # Vocabularies hold ~10^5 strings: a tight loop over unpack_from, no copies.
        buffer, size, pos, unpack = self._buffer, self._size, self.pos, _U64.unpack_from
        for _ in range(count):
            if pos + 8 > size:
                raise self.truncated()
            pos += 8 + unpack(buffer, pos)[0]
        if pos > size:
            raise self.truncated()
        self.pos = pos


def _parse(path: Path, buffer: mmap.mmap, size: int) -> GgufInfo:
    name = path.name
    reader = _Reader(buffer, name)
    reader.take(4)
    version = reader.scalar("<I")
    if version not in SUPPORTED_VERSIONS:
        raise NotGgufError(f"{name} uses GGUF version {version}, which Hearth cannot read.")
    tensor_count = reader.scalar("<Q")
    kv_count = reader.scalar("<Q")
    if tensor_count > _MAX_TENSORS or kv_count > _MAX_KV:
        raise CorruptModelError(f"{name} has an impossible header; the file is damaged.")

    metadata: dict[str, Any] = {}
    types: dict[str, int] = {}
    for _ in range(kv_count):
        key = reader.string()
        if not key:
            raise reader.corrupt("has a metadata entry without a name")
        if key in metadata:
            raise reader.corrupt(f"holds the metadata entry '{_shown(key)}' twice")
        types[key] = reader.scalar("<I")
        metadata[key] = reader.value(types[key])
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if "general.alignment" in metadata and (
        types["general.alignment"] != _U32 or alignment <= 0 or alignment & (alignment - 1)
    ):
        raise CorruptModelError(f"{name} has an invalid alignment; the file is damaged.")

    tensors = [_read_tensor_info(reader) for _ in range(tensor_count)]
    if not tensors:
        raise UnsupportedModelError(
            f"{name} holds no weights (it may be a vocabulary-only file), so it is not a model Hearth can run."
        )
    data_size = _check_layout(reader, tensors, alignment)
    data_start = -(-reader.pos // alignment) * alignment
    data_end = data_start + data_size
    if data_end > size:
        raise TruncatedModelError(
            f"{name} is incomplete: it has {size / 1e6:.1f} MB of the {data_end / 1e6:.1f} MB its "
            "header describes. The download or copy probably stopped early."
        )
    _check_hyperparameters(reader, metadata, types)
    _check_vocabulary(reader, metadata, types)
    return GgufInfo(
        path=path,
        file_size=size,
        version=version,
        tensor_count=tensor_count,
        data_end=data_end,
        metadata=metadata,
        parameter_count=sum(tensor.elements for tensor in tensors),
        block_bytes=sum(tensor.size for tensor in tensors if tensor.name.startswith("blk.")),
    )


@dataclass(frozen=True)
class _TensorInfo:
    name: str
    raw_name: bytes
    elements: int
    offset: int
    size: int


def _read_tensor_info(reader: _Reader) -> _TensorInfo:
    """Read one tensor's description (name, shape, type, offset) and check it on its own."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    raw_name = reader.raw_string()
    tensor = _shown(raw_name.decode("utf-8", errors="replace"))
    if not raw_name:
        raise reader.corrupt("describes a tensor without a name")
    if len(raw_name) > _MAX_NAME_BYTES:
        raise reader.corrupt(f"has a tensor name longer than {_MAX_NAME_BYTES} bytes ('{tensor}')")
    n_dims = reader.scalar("<I")
    if not 1 <= n_dims <= _MAX_DIMS:
        raise reader.corrupt(f"describes tensor '{tensor}' with {n_dims} dimensions (GGUF allows 1 to {_MAX_DIMS})")
    dims = [reader.scalar("<Q") for _ in range(n_dims)]
    if 0 in dims:
        raise reader.corrupt(f"describes tensor '{tensor}' with a dimension of size 0")
    elements = math.prod(dims)
    if elements > _MAX_ELEMENTS:
        raise reader.corrupt(f"describes tensor '{tensor}' with {' x '.join(map(str, dims))} elements, "
                             "more than any computer can address")
    type_id = reader.scalar("<I")
    offset = reader.scalar("<Q")
    try:
        block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)]
    except (ValueError, KeyError) as exc:
        raise CorruptModelError(
            f"{reader._name} uses a tensor type ({type_id}) this version of Hearth does not know."
        ) from exc
    if dims[0] % block_size:
        raise reader.corrupt(f"has a tensor whose size does not fit its type ('{tensor}': rows of {dims[0]} "
                             f"values, stored in blocks of {block_size})")
    return _TensorInfo(raw_name.decode("utf-8", errors="replace"), raw_name, elements, offset,
                       elements // block_size * type_size)


def _check_layout(reader: _Reader, tensors: list[_TensorInfo], alignment: int) -> int:
    """Check that tensor data lies one after the other, aligned, as llama.cpp requires; return its size."""
    names: set[bytes] = set()
    expected = 0
    previous = None
    for tensor in tensors:
        shown = _shown(tensor.name)
        if tensor.raw_name in names:
            raise reader.corrupt(f"describes two tensors named '{shown}'")
        names.add(tensor.raw_name)
        if tensor.offset != expected:
            if tensor.offset % alignment:
                raise reader.corrupt(f"places tensor '{shown}' at offset {tensor.offset:,}, which is not "
                                     f"a multiple of its alignment ({alignment})")
            if tensor.offset < expected:
                raise reader.corrupt(f"places tensors '{_shown(previous.name)}' and '{shown}' over each other")
            raise reader.corrupt(f"places tensor '{shown}' at offset {tensor.offset:,} instead of {expected:,}")
        expected += -(-tensor.size // alignment) * alignment
        previous = tensor
    return previous.offset + previous.size


# Hyper-parameters llama.cpp reads as one uint32 (per_layer: or one per layer), with the smallest and
# largest values a model can have. Zero heads are allowed for recurrent models (Mamba, RWKV) only.
_COUNTS = {  # key after "<architecture>.": (smallest, largest, per_layer)
    "context_length": (1, 1 << 27, False),
    "embedding_length": (1, 1 << 20, False),
    "block_count": (1, _MAX_LAYERS, False),
    "feed_forward_length": (0, 1 << 22, True),
    "attention.head_count": (1, 1 << 16, True),
    "attention.head_count_kv": (1, 1 << 16, True),
    "attention.key_length": (1, 1 << 16, False),
    "attention.value_length": (1, 1 << 16, False),
    "rope.dimension_count": (1, 1 << 16, False),
    "expert_count": (0, _MAX_EXPERTS, False),
    "expert_used_count": (0, _MAX_EXPERTS, True),
    "expert_group_count": (0, _MAX_EXPERTS, False),
    "expert_group_used_count": (0, _MAX_EXPERTS, False),
    "nextn_predict_layers": (0, _MAX_LAYERS, False),
    "vocab_size": (1, 1 << 26, False),
}
_HEAD_COUNTS = ("attention.head_count", "attention.head_count_kv")
_RECURRENT = frozenset({"mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7"})
_FLOATS = {  # key after "<architecture>.": what llama.cpp needs of this float32
    "rope.freq_base": "positive",
    "rope.scaling.factor": "non-negative",
    "attention.layer_norm_epsilon": "non-negative",
    "attention.layer_norm_rms_epsilon": "non-negative",
}
_ROPE_SCALING_TYPES = ("none", "linear", "yarn", "longrope")


def _check_hyperparameters(reader: _Reader, metadata: dict[str, Any], types: dict[str, int]) -> None:
    """Check the model's own numbers: the ones that make llama.cpp refuse the file or abort when wrong."""
    if "general.architecture" in metadata and types["general.architecture"] != _STRING:
        raise reader.corrupt("names its architecture with something other than text")
    architecture = metadata.get("general.architecture")
    if architecture is None:
        return  # check_architecture_known refuses it before any engine sees it
    prefix = f"{architecture}."
    counts: dict[str, int | tuple] = {}
    for suffix, (smallest, largest, per_layer) in _COUNTS.items():
        key = prefix + suffix
        if key in metadata:
            if suffix in _HEAD_COUNTS and architecture in _RECURRENT:
                smallest = 0
            counts[suffix] = _count(reader, _shown(key), metadata[key], types[key], smallest, largest, per_layer)
    for key in metadata:
        value = metadata[key]
        if key.startswith(prefix) and isinstance(value, float) and not math.isfinite(value):
            raise reader.corrupt(f"gives {_shown(key)} as {value}, which is not a number a model can use")
    for suffix, sign in _FLOATS.items():
        key = prefix + suffix
        if key in metadata:
            value = metadata[key]
            if types[key] != _F32:
                raise reader.corrupt(f"stores {_shown(key)} as {_TYPE_NAMES.get(types[key])}, not as a float32")
            if value < 0 or (sign == "positive" and value == 0):
                raise reader.corrupt(f"gives {_shown(key)} as {value}, but it must be {sign}")
    scaling = metadata.get(prefix + "rope.scaling.type")
    if scaling is not None and scaling not in _ROPE_SCALING_TYPES:
        raise reader.corrupt(f"asks for an unknown RoPE scaling type ('{_shown(str(scaling))}')")
    _check_count_relations(reader, architecture, counts)


def _count(reader: _Reader, key: str, value: Any, value_type: int, smallest: int, largest: int,
           per_layer: bool) -> int | tuple:
    """A count stored under ``key``, checked: a uint32 in range, or (``per_layer``) an array of them."""
    if value_type == _ARRAY and per_layer:
        if value.element_type not in (_U32, _I32) or value.items is None:
            raise reader.corrupt(f"stores {key} as an array of {value.length:,} "
                                 f"{_TYPE_NAMES.get(value.element_type, '?')} values, not one count per layer")
        if any(not 0 <= item <= largest for item in value.items):
            raise reader.corrupt(f"gives {key} per layer with a value outside 0 to {largest:,}")
        return value.items
    if value_type != _U32:
        raise reader.corrupt(f"stores {key} as {_TYPE_NAMES.get(value_type, '?')}, not as a whole number (uint32)")
    if not smallest <= value <= largest:
        raise reader.corrupt(f"gives {key} as {value:,}, but a model has {smallest:,} to {largest:,}")
    return value


def _check_count_relations(reader: _Reader, architecture: str, counts: dict[str, int | tuple]) -> None:
    """Counts that must agree with each other: heads and their groups, head sizes, RoPE, experts, layers."""
    layers = counts.get("block_count")

    def per_layer(suffix: str, default: int = 0) -> tuple:
        value = counts.get(suffix, default)
        return value if isinstance(value, tuple) else (value,) * (layers or 1)

    for suffix in ("feed_forward_length", *_HEAD_COUNTS, "expert_used_count"):
        value = counts.get(suffix)
        if isinstance(value, tuple) and layers is not None and len(value) != layers:
            raise reader.corrupt(f"gives {architecture}.{suffix} for {len(value)} layers, but it has {layers}")
    heads = counts.get("attention.head_count")
    if heads is not None and "attention.head_count_kv" in counts:
        for head_count, kv_count in zip(per_layer("attention.head_count"), per_layer("attention.head_count_kv")):
            if kv_count and (kv_count > head_count or head_count % kv_count):
                raise reader.corrupt(f"has {kv_count} key-value heads for {head_count} attention heads "
                                     "(they must divide them)")
    head_size = counts.get("attention.key_length")
    embedding = counts.get("embedding_length")
    if head_size is None and isinstance(heads, int) and heads and embedding is not None:
        if embedding % heads:
            raise reader.corrupt(f"splits an embedding of {embedding} into {heads} heads, which does not divide")
        head_size = embedding // heads
    rope = counts.get("rope.dimension_count")
    if rope is not None and (rope % 2 or (head_size is not None and rope > head_size)):
        raise reader.corrupt(f"rotates {rope} dimensions per head with RoPE, which must be even and at most "
                             f"the head size ({head_size})")
    experts = counts.get("expert_count", 0)
    used = max(per_layer("expert_used_count"), default=0)
    groups = counts.get("expert_group_count", 0)
    groups_used = counts.get("expert_group_used_count", 0)
    if used > experts:
        raise reader.corrupt(f"routes each token to {used} experts but has {experts}")
    if experts and not used:
        raise reader.corrupt(f"has {experts} experts but routes tokens to none")
    if (groups and groups >= max(experts, 1)) or (groups > 1 and (experts % groups or not 0 < groups_used < groups)):
        raise reader.corrupt(f"splits its {experts} experts into {groups} groups ({groups_used} used), "
                             "which does not work out")
    if layers is not None and counts.get("nextn_predict_layers", 0) > layers:
        raise reader.corrupt(f"has more prediction layers ({counts['nextn_predict_layers']}) than layers ({layers})")


# Token arrays: the element types llama.cpp reads them as (src/llama-vocab.cpp).
_TOKEN_ARRAYS = {"tokenizer.ggml.scores": (_F32, _I32), "tokenizer.ggml.token_type": (_I32,)}


def _check_vocabulary(reader: _Reader, metadata: dict[str, Any], types: dict[str, int]) -> None:
    """Check the tokenizer's arrays and ids have the types llama.cpp reads and agree on the vocabulary size.

    Two tokens with the same text are not looked for: that needs every token's
    bytes (+90 ms on the built-in model's 262,144 tokens, against ~25 ms for
    the whole validation), and llama.cpp's abort on it stays inside the engine
    process, which Hearth reports as a sentence.
    """
    for key, value_type in types.items():
        if key.startswith("tokenizer.ggml."):
            if key.endswith("_token_id") and value_type != _U32:
                raise reader.corrupt(f"stores {_shown(key)} as {_TYPE_NAMES.get(value_type, '?')}, "
                                     "not as a token number (uint32)")
            if key.startswith("tokenizer.ggml.add_") and value_type != _BOOL:
                raise reader.corrupt(f"stores {_shown(key)} as {_TYPE_NAMES.get(value_type, '?')}, not as yes/no")
    if "tokenizer.ggml.merges" in metadata:
        merges = metadata["tokenizer.ggml.merges"]
        if not isinstance(merges, ArraySummary) or merges.element_type != _STRING:
            raise reader.corrupt("stores its tokenizer merges as something other than a list of texts")
    if "tokenizer.ggml.tokens" not in metadata:
        return
    tokens = metadata["tokenizer.ggml.tokens"]
    if not isinstance(tokens, ArraySummary) or tokens.element_type != _STRING:
        raise reader.corrupt("stores its vocabulary as something other than a list of texts")
    if not tokens.length:
        raise reader.corrupt("has an empty vocabulary")
    for key, element_types in _TOKEN_ARRAYS.items():
        if key in metadata:
            value = metadata[key]
            if not isinstance(value, ArraySummary) or value.element_type not in element_types:
                found = (f"a list of {_TYPE_NAMES.get(value.element_type, '?')}" if isinstance(value, ArraySummary)
                         else _TYPE_NAMES.get(types[key], "?"))
                raise reader.corrupt(f"stores {key} as {found}, not as a list of {_TYPE_NAMES[element_types[0]]}")
            if value.length != tokens.length:
                raise reader.corrupt(f"has {value.length:,} entries in {key} for {tokens.length:,} tokens")
    architecture = metadata.get("general.architecture")
    vocab_size = metadata.get(f"{architecture}.vocab_size") if isinstance(architecture, str) else None
    if vocab_size is not None and vocab_size != tokens.length:
        raise reader.corrupt(f"says its vocabulary has {vocab_size:,} tokens, but it lists {tokens.length:,}")
