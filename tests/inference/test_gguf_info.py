"""The GGUF header reader: real facts from real files, clear errors for bad ones."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from inference.errors import (
    CorruptModelError, ModelFileError, ModelNotFoundError, NotGgufError, TruncatedModelError,
)
from inference.gguf_info import ArraySummary, check_architecture_known, looks_instruction_tuned, read_gguf_info
from tests.bad_inputs import write_corpus
from tests.bad_inputs.gguf_doc import ARRAY, U32, GgufDoc, parse
from tests.gguf_factory import write_random_gemma3, write_random_llama, write_tiny_gguf


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


# ------------------------------------------------------------------ hostile files (tests/bad_inputs)


def validate(path: Path):
    """What open_model runs before any engine sees the file."""
    info = read_gguf_info(path)
    check_architecture_known(info)
    return info


def test_the_whole_hostile_corpus_is_refused_with_a_sentence_or_accepted_as_expected(tmp_path: Path) -> None:
    wrong = []
    for file in write_corpus(tmp_path / "corpus"):
        started = time.perf_counter()
        try:
            validate(file.path)
            outcome = "valid"
        except ModelFileError as exc:
            outcome = "refused"
            sentence = str(exc)
            if not (sentence.startswith(file.name) or file.name in sentence) or not sentence.rstrip().endswith("."):
                wrong.append(f"{file.name}: not a sentence about the file: {sentence!r}")
        except Exception as exc:  # noqa: BLE001 - exactly what this test is for
            outcome = f"{type(exc).__name__}: {exc}"
        if outcome != ("valid" if file.expected_valid else "refused"):
            wrong.append(f"{file.name} ({file.problem}): {outcome}")
        if time.perf_counter() - started > 1.0:
            wrong.append(f"{file.name}: took {time.perf_counter() - started:.2f} s")
    assert not wrong, "\n".join(wrong)


def test_truncation_at_every_offset_of_the_header_is_refused(tiny_gguf: Path) -> None:
    data = tiny_gguf.read_bytes()
    for cut in range(len(data)):
        tiny_gguf.write_bytes(data[:cut])
        with pytest.raises((NotGgufError, TruncatedModelError)):
            read_gguf_info(tiny_gguf)


def _tiny_doc(tmp_path: Path, architecture: str = "llama") -> GgufDoc:
    return parse(write_tiny_gguf(tmp_path / "base.gguf", architecture=architecture).read_bytes())


def _written(tmp_path: Path, doc: GgufDoc) -> Path:
    path = tmp_path / "edited.gguf"
    path.write_bytes(doc.to_bytes())
    return path


def test_recurrent_models_may_have_no_attention_heads(tmp_path: Path) -> None:
    doc = _tiny_doc(tmp_path, "mamba")
    doc.set("mamba.attention.head_count", U32, 0).set("mamba.attention.head_count_kv", U32, 0)
    doc.set("mamba.feed_forward_length", U32, 0).set("mamba.block_count", U32, 2)
    assert validate(_written(tmp_path, doc)).arch_value("attention.head_count") == 0


def test_hybrid_models_give_head_counts_per_layer_with_zeros(tmp_path: Path) -> None:
    doc = _tiny_doc(tmp_path, "jamba")
    doc.set("jamba.block_count", U32, 4).set("jamba.attention.head_count", U32, 8)
    doc.set("jamba.attention.head_count_kv", ARRAY, (U32, [0, 2, 0, 2]))
    info = validate(_written(tmp_path, doc))
    assert info.arch_value("attention.head_count_kv") == ArraySummary(U32, 4)
    assert info.arch_value("attention.head_count_kv").items == (0, 2, 0, 2)


def test_zero_heads_are_refused_for_a_transformer(tmp_path: Path) -> None:
    doc = _tiny_doc(tmp_path)
    doc.set("llama.attention.head_count", U32, 0)
    with pytest.raises(CorruptModelError, match="head_count as 0"):
        validate(_written(tmp_path, doc))


def test_a_head_count_per_layer_must_cover_every_layer(tmp_path: Path) -> None:
    doc = _tiny_doc(tmp_path, "jamba")
    doc.set("jamba.block_count", U32, 4).set("jamba.attention.head_count_kv", ARRAY, (U32, [2, 2]))
    with pytest.raises(CorruptModelError, match="for 2 layers, but it has 4"):
        validate(_written(tmp_path, doc))


def test_mixture_of_experts_counts_that_work_out_are_accepted(tmp_path: Path) -> None:
    doc = _tiny_doc(tmp_path, "qwen2moe")
    doc.set("qwen2moe.expert_count", U32, 60).set("qwen2moe.expert_used_count", U32, 4)
    doc.set("qwen2moe.expert_group_count", U32, 4).set("qwen2moe.expert_group_used_count", U32, 2)
    validate(_written(tmp_path, doc))


def test_the_random_test_models_are_valid(tmp_path: Path) -> None:
    for path in (write_random_gemma3(tmp_path / "g.gguf"), write_random_llama(tmp_path / "l.gguf"),
                 write_random_gemma3(tmp_path / "g4.gguf", heads=4, kv_heads=2)):
        validate(path)


def test_the_builtin_model_still_validates_in_milliseconds(builtin_model_path: Path) -> None:
    validate(builtin_model_path)  # the first read maps the file in
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        validate(builtin_model_path)
        timings.append(time.perf_counter() - started)
    # ~25 ms here (a 262,144-token vocabulary skipped in a tight loop); generous for a loaded machine.
    assert min(timings) < 0.25
