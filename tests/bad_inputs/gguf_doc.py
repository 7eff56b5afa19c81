"""A GGUF file as editable parts: read a valid file, change one thing, write the bytes back.

The gguf package writes only valid files; the corpus needs files that are
wrong in exactly one way. :func:`parse` splits a (trusted, valid) file into
its header, key-value pairs, tensor descriptions and tensor data;
:meth:`GgufDoc.to_bytes` joins them again and lays the data out the way
llama.cpp expects unless a test pins a count, an offset or a field's raw bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from typing import Any

# GGUF value types.
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR_FORMATS = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
                  U64: "<Q", I64: "<q", F64: "<d"}
GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32


def u32(value: int) -> bytes:
    return struct.pack("<I", value & 0xFFFFFFFF)


def u64(value: int) -> bytes:
    return struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF)


def encode_string(text: str | bytes) -> bytes:
    """A GGUF string: its byte length (u64), then its bytes."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return u64(len(raw)) + raw


def encode_value(value_type: int, value: Any) -> bytes:
    """The bytes of one value of ``value_type`` (after the type itself).

    An array is given as ``(element_type, items)``; a nested array's items are
    ``(element_type, items)`` pairs too.
    """
    if value_type in SCALAR_FORMATS:
        return struct.pack(SCALAR_FORMATS[value_type], value)
    if value_type == STRING:
        return encode_string(value)
    if value_type == ARRAY:
        element_type, items = value
        return u32(element_type) + u64(len(items)) + b"".join(encode_value(element_type, item) for item in items)
    raise ValueError(f"unknown GGUF value type {value_type}")


@dataclass
class Kv:
    """One metadata pair; ``raw`` replaces its whole encoding (key, type and value) when set."""

    key: str
    value_type: int
    payload: bytes
    raw: bytes | None = None

    def encode(self) -> bytes:
        return self.raw if self.raw is not None else encode_string(self.key) + u32(self.value_type) + self.payload


@dataclass
class Tensor:
    """One tensor: its description and its data. ``offset`` None means "where llama.cpp expects it"."""

    name: str
    dims: list[int]
    type_id: int
    data: bytes
    offset: int | None = None
    raw: bytes | None = None  # replaces the whole description when set

    def encode(self, offset: int) -> bytes:
        if self.raw is not None:
            return self.raw
        return (encode_string(self.name) + u32(len(self.dims)) + b"".join(u64(d) for d in self.dims)
                + u32(self.type_id) + u64(offset))


@dataclass
class GgufDoc:
    """A GGUF file in parts. ``n_tensors`` / ``n_kv`` pin the header's counts (None: the real counts)."""

    version: int
    kvs: list[Kv]
    tensors: list[Tensor]
    n_tensors: int | None = None
    n_kv: int | None = None
    magic: bytes = GGUF_MAGIC
    trailer: bytes = b""  # bytes after the tensor data
    layout_alignment: int | None = None  # lay the data out with this, whatever general.alignment says
    boundaries: list[int] = field(default_factory=list)  # where each field starts, set by to_bytes
    data_start: int = 0  # where the tensor data starts, set by to_bytes

    def copy(self) -> GgufDoc:
        return replace(self, kvs=[replace(kv) for kv in self.kvs], tensors=[replace(t, dims=list(t.dims))
                                                                           for t in self.tensors], boundaries=[])

    # ---------------------------------------------------------------- metadata

    def index(self, key: str) -> int:
        for position, kv in enumerate(self.kvs):
            if kv.key == key:
                return position
        raise KeyError(key)

    def get(self, key: str) -> Any:
        """The decoded value under ``key`` (arrays as ``(element_type, items)``)."""
        kv = self.kvs[self.index(key)]
        value, _ = decode_value(kv.payload, 0, kv.value_type)
        return value

    def set(self, key: str, value_type: int, value: Any) -> GgufDoc:
        """Set ``key`` (replacing it in place, or appending it); returns self."""
        kv = Kv(key, value_type, encode_value(value_type, value))
        try:
            self.kvs[self.index(key)] = kv
        except KeyError:
            self.kvs.append(kv)
        return self

    def remove(self, key: str) -> GgufDoc:
        del self.kvs[self.index(key)]
        return self

    def tensor(self, name: str) -> Tensor:
        return next(t for t in self.tensors if t.name == name)

    @property
    def alignment(self) -> int:
        if self.layout_alignment is not None:
            return self.layout_alignment
        try:
            value = self.get("general.alignment")
        except KeyError:
            return DEFAULT_ALIGNMENT
        return value if isinstance(value, int) and value > 0 else DEFAULT_ALIGNMENT

    # ---------------------------------------------------------------- bytes

    def expected_offsets(self) -> list[int]:
        """Each tensor's offset in the data section as llama.cpp computes it (padded running size)."""
        offsets, position, alignment = [], 0, self.alignment
        for tensor in self.tensors:
            offsets.append(position)
            position += -(-len(tensor.data) // alignment) * alignment
        return offsets

    def to_bytes(self) -> bytes:
        """The file. Also records in ``boundaries`` where every header field starts."""
        parts: list[bytes] = []
        boundaries: list[int] = []
        position = 0

        def put(chunk: bytes) -> None:
            nonlocal position
            boundaries.append(position)
            parts.append(chunk)
            position += len(chunk)

        put(self.magic)
        put(u32(self.version))
        put(u64(len(self.tensors) if self.n_tensors is None else self.n_tensors))
        put(u64(len(self.kvs) if self.n_kv is None else self.n_kv))
        for kv in self.kvs:
            encoded = kv.encode()
            if kv.raw is None:
                key_end = 8 + len(kv.key.encode("utf-8"))
                put(encoded[:8])
                put(encoded[8:key_end])
                put(encoded[key_end:key_end + 4])
                put(encoded[key_end + 4:])
            else:
                put(encoded)
        expected = self.expected_offsets()
        for tensor, offset in zip(self.tensors, expected):
            put(tensor.encode(offset if tensor.offset is None else tensor.offset))
        alignment = self.alignment
        put(b"\0" * (-position % alignment))
        data_start = self.data_start = position
        for tensor, offset in zip(self.tensors, expected):
            parts.append(b"\0" * (data_start + offset - position))
            position = data_start + offset
            put(tensor.data)
        put(self.trailer)
        self.boundaries = boundaries
        return b"".join(parts)


def decode_value(buffer: bytes, pos: int, value_type: int) -> tuple[Any, int]:
    """Decode one value at ``pos`` of a trusted buffer; returns it and the position after it."""
    if value_type in SCALAR_FORMATS:
        fmt = SCALAR_FORMATS[value_type]
        return struct.unpack_from(fmt, buffer, pos)[0], pos + struct.calcsize(fmt)
    if value_type == STRING:
        length = struct.unpack_from("<Q", buffer, pos)[0]
        return buffer[pos + 8:pos + 8 + length].decode("utf-8", errors="replace"), pos + 8 + length
    if value_type == ARRAY:
        element_type, count = struct.unpack_from("<IQ", buffer, pos)
        pos += 12
        items = []
        for _ in range(count):
            item, pos = decode_value(buffer, pos, element_type)
            items.append(item)
        return (element_type, items), pos
    raise ValueError(f"unknown GGUF value type {value_type}")


def parse(data: bytes) -> GgufDoc:
    """Split a valid GGUF file (one the gguf package wrote) into its parts."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    if data[:4] != GGUF_MAGIC:
        raise ValueError("not a GGUF file")
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
    pos = 24
    kvs = []
    for _ in range(n_kv):
        key_length = struct.unpack_from("<Q", data, pos)[0]
        key = data[pos + 8:pos + 8 + key_length].decode("utf-8")
        pos += 8 + key_length
        value_type = struct.unpack_from("<I", data, pos)[0]
        pos += 4
        _, end = decode_value(data, pos, value_type)
        kvs.append(Kv(key, value_type, data[pos:end]))
        pos = end
    described = []
    for _ in range(n_tensors):
        name_length = struct.unpack_from("<Q", data, pos)[0]
        name = data[pos + 8:pos + 8 + name_length].decode("utf-8")
        pos += 8 + name_length
        n_dims = struct.unpack_from("<I", data, pos)[0]
        dims = list(struct.unpack_from(f"<{n_dims}Q", data, pos + 4))
        pos += 4 + 8 * n_dims
        type_id, offset = struct.unpack_from("<IQ", data, pos)
        pos += 12
        described.append((name, dims, type_id, offset))
    doc = GgufDoc(version=version, kvs=kvs, tensors=[])
    data_start = -(-pos // doc.alignment) * doc.alignment
    for name, dims, type_id, offset in described:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)]
        elements = 1
        for dim in dims:
            elements *= dim
        nbytes = elements // block * size
        doc.tensors.append(Tensor(name, dims, type_id, data[data_start + offset:data_start + offset + nbytes]))
    return doc
