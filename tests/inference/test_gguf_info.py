"""The GGUF header reader: real facts from real files, clear errors for bad ones."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from inference.errors import CorruptModelError, ModelNotFoundError, NotGgufError, TruncatedModelError
from inference.gguf_info import ArraySummary, looks_instruction_tuned, read_gguf_info
from tests.gguf_factory import write_tiny_gguf


def test_reads_facts_of_the_builtin_model(builtin_model_path: Path) -> None:
    info = read_gguf_info(builtin_model_path)
    assert info.architecture == "gemma3"
    assert info.context_length == 32768
    assert info.chat_template is None
    assert info.data_end == info.file_size
    assert info.arch_value("block_count") == 18
    assert info.quantization == "Q4_K_M"
    assert info.metadata["tokenizer.ggml.tokens"] == ArraySummary(element_type=8, length=262144)
    assert not looks_instruction_tuned(info)


def test_reads_a_tiny_gguf(tiny_gguf: Path) -> None:
    info = read_gguf_info(tiny_gguf)
    assert (info.architecture, info.name, info.context_length) == ("llama", "Tiny Test", 256)
    assert info.tensor_count == 2
    assert info.data_end <= info.file_size


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        read_gguf_info(tmp_path / "nowhere.gguf")


@pytest.mark.parametrize("content", [b"", b"GG", b"hello world, not a model", b"\x00" * 100])
def test_not_gguf(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(NotGgufError, match="not a GGUF model file"):
        read_gguf_info(path)


def test_folder_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(NotGgufError):
        read_gguf_info(tmp_path)


def test_unknown_version(tmp_path: Path) -> None:
    path = tmp_path / "future.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 99, 0, 0))
    with pytest.raises(NotGgufError, match="version 99"):
        read_gguf_info(path)


@pytest.mark.parametrize("keep", [6, 30, 200, 500])
def test_truncated_inside_the_header(tiny_gguf: Path, keep: int) -> None:
    data = tiny_gguf.read_bytes()
    tiny_gguf.write_bytes(data[:keep])
    with pytest.raises(TruncatedModelError, match="incomplete"):
        read_gguf_info(tiny_gguf)


def test_truncated_inside_the_tensor_data(tiny_gguf: Path) -> None:
    info = read_gguf_info(tiny_gguf)
    tiny_gguf.write_bytes(tiny_gguf.read_bytes()[: info.data_end - 1])
    with pytest.raises(TruncatedModelError, match="header describes"):
        read_gguf_info(tiny_gguf)


def test_impossible_counts_are_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "huge.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2**40, 0))
    with pytest.raises(CorruptModelError):
        read_gguf_info(path)


def test_unknown_metadata_type_is_corrupt(tmp_path: Path) -> None:
    key = b"general.name"
    path = tmp_path / "odd.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key + struct.pack("<I", 77))
    with pytest.raises(CorruptModelError, match="unknown metadata type"):
        read_gguf_info(path)


@pytest.mark.parametrize(
    ("name", "template", "tuned"),
    [
        ("gemma-3-270m", None, False),
        ("gemma-3-270m-it", None, True),
        ("Qwen2.5 0.5B Instruct", None, True),
        ("TinyLlama Chat", None, True),
        ("Llama 3 8B", "{{ messages }}", True),
        ("Mistral 7B v0.1", None, False),
    ],
)
def test_instruction_tuned_guess(tmp_path: Path, name: str, template: str | None, tuned: bool) -> None:
    path = write_tiny_gguf(tmp_path / "model.gguf", name=name, chat_template=template)
    assert looks_instruction_tuned(read_gguf_info(path)) is tuned
