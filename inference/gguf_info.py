"""Read and check a GGUF file's header without loading the model.

The reader validates everything it reads against the file's size, so a file
that is not GGUF, is cut short, or holds impossible values gives a clear
error here instead of a crash inside the engine.
"""

from __future__ import annotations

import mmap
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.errors import (
    CorruptModelError,
    ModelNotFoundError,
    NotGgufError,
    TruncatedModelError,
    UnsupportedModelError,
)

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
_MAX_DIMS = 4
_MAX_TENSORS = 1_000_000
_MAX_KV = 1_000_000

# GGUF value types -> struct format of one scalar.
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class ArraySummary:
    """A metadata array, summarised: its element type and length (contents are skipped)."""

    element_type: int
    length: int


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
            f"{info.path.name} is a '{info.architecture}' model, an architecture this version of Hearth "
            "cannot run. Look for a GGUF of a supported model (Llama, Qwen, Gemma, Mistral, Phi…)."
        )


def read_gguf_info(path: Path) -> GgufInfo:
    """Read and validate the header of the GGUF file at ``path``.

    Raises:
        ModelNotFoundError: there is no file at ``path``.
        NotGgufError: the file is not GGUF (or a GGUF version Hearth cannot read).
        TruncatedModelError: the file is shorter than its header says.
        CorruptModelError: the header holds impossible values.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            size = path.stat().st_size
            if size < 4 or file.read(4) != GGUF_MAGIC:
                raise NotGgufError(f"{path.name} is not a GGUF model file.")
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return _parse(path, mapped, size)
    except FileNotFoundError as exc:
        raise ModelNotFoundError(f"The model file {path} does not exist.") from exc
    except IsADirectoryError as exc:
        raise NotGgufError(f"{path} is a folder, not a GGUF model file.") from exc


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

    def string(self) -> str:
        return self.take(self.scalar("<Q")).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        self.skip(self.scalar("<Q"))

    def value(self, value_type: int) -> Any:
        if value_type in _SCALAR_FORMATS:
            return self.scalar(_SCALAR_FORMATS[value_type])
        if value_type == _STRING:
            return self.string()
        if value_type == _ARRAY:
            element_type = self.scalar("<I")
            length = self.scalar("<Q")
            self.skip_array(element_type, length)
            return ArraySummary(element_type, length)
        raise CorruptModelError(f"{self._name} has an unknown metadata type ({value_type}); the file is damaged.")

    def skip_array(self, element_type: int, length: int) -> None:
        if element_type in _SCALAR_FORMATS:
            self.skip(struct.calcsize(_SCALAR_FORMATS[element_type]) * length)
        elif element_type == _STRING:
            self._skip_strings(length)
        elif element_type == _ARRAY:
            for _ in range(length):
                self.skip_array(self.scalar("<I"), self.scalar("<Q"))
        else:
            raise CorruptModelError(f"{self._name} has an unknown array type ({element_type}); the file is damaged.")

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
    reader = _Reader(buffer, path.name)
    reader.take(4)
    version = reader.scalar("<I")
    if version not in SUPPORTED_VERSIONS:
        raise NotGgufError(f"{path.name} uses GGUF version {version}, which Hearth cannot read.")
    tensor_count = reader.scalar("<Q")
    kv_count = reader.scalar("<Q")
    if tensor_count > _MAX_TENSORS or kv_count > _MAX_KV:
        raise CorruptModelError(f"{path.name} has an impossible header; the file is damaged.")

    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = reader.string()
        metadata[key] = reader.value(reader.scalar("<I"))

    data_size = 0
    parameters = 0
    block_bytes = 0
    for _ in range(tensor_count):
        tensor = _read_tensor_info(reader, path.name)
        parameters += tensor.elements
        data_size = max(data_size, tensor.offset + tensor.size)
        if tensor.name.startswith("blk."):
            block_bytes += tensor.size

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0:
        raise CorruptModelError(f"{path.name} has an invalid alignment; the file is damaged.")
    data_start = -(-reader.pos // alignment) * alignment
    data_end = data_start + data_size
    if data_end > size:
        raise TruncatedModelError(
            f"{path.name} is incomplete: it has {size / 1e6:.1f} MB of the {data_end / 1e6:.1f} MB its "
            "header describes. The download or copy probably stopped early."
        )
    return GgufInfo(
        path=path,
        file_size=size,
        version=version,
        tensor_count=tensor_count,
        data_end=data_end,
        metadata=metadata,
        parameter_count=parameters,
        block_bytes=block_bytes,
    )


@dataclass(frozen=True)
class _TensorInfo:
    name: str
    elements: int
    offset: int
    size: int


def _read_tensor_info(reader: _Reader, name: str) -> _TensorInfo:
    """Read one tensor's description: its name, element count, data offset and size in bytes."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    tensor_name = reader.string()
    n_dims = reader.scalar("<I")
    if not 1 <= n_dims <= _MAX_DIMS:
        raise CorruptModelError(f"{name} describes a tensor with {n_dims} dimensions; the file is damaged.")
    elements = 1
    for _ in range(n_dims):
        elements *= reader.scalar("<Q")
    type_id = reader.scalar("<I")
    offset = reader.scalar("<Q")
    try:
        block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)]
    except (ValueError, KeyError) as exc:
        raise CorruptModelError(
            f"{name} uses a tensor type ({type_id}) this version of Hearth does not know."
        ) from exc
    if elements % block_size:
        raise CorruptModelError(f"{name} has a tensor whose size does not fit its type; the file is damaged.")
    return _TensorInfo(tensor_name, elements, offset, elements // block_size * type_size)
