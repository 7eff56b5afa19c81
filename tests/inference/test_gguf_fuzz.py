"""Fuzzing the GGUF validator: a few seconds here, derandomized; the long run is a documented command.

    python tests/benchmarks/hostile.py --fuzz-minutes 10

The property: whatever the bytes, the validator returns facts or raises an
error of the ModelFileError family with a sentence, within bounded time and
memory (tests/bad_inputs/fuzzing.py).
"""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from inference.errors import CorruptModelError
from inference.gguf_info import read_gguf_info
from tests.bad_inputs.fuzzing import CoverageFuzzer, check_validator, gguf_bytes, seed_docs

@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _strategy():
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hearth-seeds-") as folder:
        return gguf_bytes(seed_docs(Path(folder)))


@settings(derandomize=True, database=None, max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=_strategy())
def test_the_validator_only_ever_refuses_with_a_sentence(scratch: Path, data: bytes) -> None:
    failure = check_validator(data, scratch)
    assert failure is None, failure.problem


def test_a_short_coverage_guided_run_finds_nothing_and_reaches_new_code(scratch: Path) -> None:
    fuzzer = CoverageFuzzer(scratch, seed=0)
    report = fuzzer.run(max_execs=400)
    assert [failure.problem for failure in report.failures] == []
    assert report.execs == 400
    assert report.kept > 0 and report.arcs > 100  # inputs that reached new lines were kept and mutated


@pytest.mark.parametrize("problem", ["claims a text of", "holds an array of arrays", "claims an array of",
                                     "impossible header"])
def test_claimed_sizes_allocate_nothing(tmp_path: Path, problem: str) -> None:
    """A claimed 2^63-element array or 2^64-byte string is refused without allocating it."""
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + struct.pack("<Q", 4) + b"huge"
    data = {
        "claims a text of": header + struct.pack("<IQ", 8, 2**64 - 1),
        "holds an array of arrays": header + struct.pack("<IIQ", 9, 9, 2**63) + b"\0" * 12,
        "claims an array of": header + struct.pack("<IIQ", 9, 0, 2**63 - 1),
        "impossible header": b"GGUF" + struct.pack("<IQQ", 3, 2**63 - 1, 2**63 - 1),
    }[problem]
    path = tmp_path / "claims.gguf"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(CorruptModelError, match=problem):
            read_gguf_info(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
