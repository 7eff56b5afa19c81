"""The hostile GGUF corpus: what it holds, and a sample of it through the real ``main.py --self-test``.

The whole corpus goes through the validator in-process in
tests/inference/test_gguf_info.py; the whole corpus through the subprocess
is tests/benchmarks/hostile.py (1-2 s a file).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bad_inputs import CorpusFile, write_corpus
from tests.benchmarks.hostile import RAW_EXCEPTION
from tests.bad_inputs.gguf_doc import parse
from tests.gguf_factory import write_random_gemma3, write_tiny_gguf

REPO = Path(__file__).resolve().parents[2]
SELF_TEST_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[CorpusFile]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def test_the_corpus_is_large_and_every_file_says_what_is_wrong(corpus: list[CorpusFile]) -> None:
    assert len(corpus) >= 150
    assert len({f.name for f in corpus}) == len(corpus)
    assert all(f.path.is_file() and f.problem.strip() for f in corpus)
    assert 5 <= sum(f.expected_valid for f in corpus) <= 20


@pytest.mark.parametrize("slug", [
    "truncated-at-0", "truncated-at-24", "truncated-at-352",  # empty, after the header, before the data
    "n-tensors-0x0", "n-tensors-0x80000000", "n-tensors-0xffffffff", "n-tensors-0x7fffffffffffffff",
    "n-tensors-0x1d1d1d1d1d1d1d1d", "n-kv-0x0", "n-kv-0x1d1d1d1d1d1d1d1d",
    "empty-key", "string-length-0x100000000", "string-length-0xffffffffffffffff", "empty-name",
    "n-dims-0", "n-dims-5", "n-dims-8", "n-dims-255", "zero-dim-first", "dims-product-2^64",
    "tensor-type-1000", "offset-misaligned", "offset-past-end", "overlapping-tensors",
    "duplicate-tensor-name", "duplicate-key", "tokens-as-numbers", "scores-too-short",
    "array-u8-2^62", "array-of-arrays", "array-nested-100000-deep",
    "head-count-0", "head-count-kv-not-a-divisor", "embedding-length-0", "block-count-0", "context-length-0",
    "vocab-size-mismatch", "rope-dimensions-31", "expert-count-2000",
])
def test_the_corpus_covers_each_kind_of_fault(corpus: list[CorpusFile], slug: str) -> None:
    assert [f for f in corpus if f.name.split("-", 1)[1] == f"{slug}.gguf"], f"no corpus file for {slug}"


def test_truncation_covers_every_field_boundary_of_the_header(corpus: list[CorpusFile], tmp_path: Path) -> None:
    doc = parse(write_tiny_gguf(tmp_path / "tiny.gguf").read_bytes())
    doc.to_bytes()
    cuts = {int(f.name.rsplit("-", 1)[1].removesuffix(".gguf")) for f in corpus if "-truncated-at-" in f.name
            and "gemma" not in f.name}
    assert {b for b in doc.boundaries if b < doc.data_start} <= cuts


def test_the_corpus_is_the_same_every_time(corpus: list[CorpusFile], tmp_path: Path) -> None:
    again = write_corpus(tmp_path / "again")
    assert [(f.name, f.problem, f.expected_valid) for f in again] == [
        (f.name, f.problem, f.expected_valid) for f in corpus]
    assert all(hashlib.sha256(a.path.read_bytes()).digest() == hashlib.sha256(b.path.read_bytes()).digest()
               for a, b in zip(again, corpus))


def test_the_document_model_writes_valid_files_back_byte_for_byte(tmp_path: Path) -> None:
    for path in (write_tiny_gguf(tmp_path / "t.gguf"), write_random_gemma3(tmp_path / "g.gguf")):
        assert parse(path.read_bytes()).to_bytes() == path.read_bytes()


def self_test(model: Path, home: Path) -> tuple[subprocess.CompletedProcess, float]:
    """The real app's self-test on ``model``, in a fresh home; returns the result and its wall time."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "--self-test", "--model", str(model), "--home", str(home)],
        capture_output=True, text=True, timeout=SELF_TEST_TIMEOUT_S, cwd=REPO,
    )
    return result, time.perf_counter() - started


# One of each kind, and the valid-but-unloadable files that reach llama.cpp.
SAMPLE = ("truncated-at-24", "n-tensors-0x1d1d1d1d1d1d1d1d", "string-length-0xffffffffffffffff", "n-dims-255",
          "zero-dim-second", "overlapping-tensors", "offset-misaligned", "duplicate-key", "array-nested-100000-deep",
          "head-count-0", "rope-scaling-unknown", "tiny-llama-without-hyperparameters", "gemma-wrong-shape")


@pytest.mark.slow
@pytest.mark.parametrize("slug", SAMPLE)
def test_the_app_refuses_a_sample_of_the_corpus_with_one_json_sentence(
    corpus: list[CorpusFile], tmp_path: Path, slug: str
) -> None:
    [file] = [f for f in corpus if f.name.split("-", 1)[1] == f"{slug}.gguf"]
    result, seconds = self_test(file.path, tmp_path / "home")
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line, got {result.stdout!r}"
    report = json.loads(lines[0])
    assert result.returncode == 1 and report["ok"] is False
    assert report["error"].endswith(".") and file.name in report["error"]
    assert not RAW_EXCEPTION.search(report["error"])
    assert "Traceback" not in result.stdout + result.stderr
    assert seconds < SELF_TEST_TIMEOUT_S / 2
    if file.expected_valid:  # llama.cpp refused it, and said so through ModelLoadError's sentence
        assert report["error"].startswith("llama.cpp could not load")
    log = (tmp_path / "home" / "logs" / "hearth.log").read_text(encoding="utf-8")
    assert "Self-test failed" in log and "Traceback" in log  # the details are in the log
