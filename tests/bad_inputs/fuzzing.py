"""Fuzzing the GGUF validator: hypothesis strategies, the property, and a coverage-guided loop.

The property (:func:`check_validator`): whatever the bytes, ``read_gguf_info``
followed by ``check_architecture_known`` returns facts or raises an error of
the ``ModelFileError`` family with a sentence, within bounded time and memory.
Never IndexError, struct.error, MemoryError, OverflowError, RecursionError.

:func:`gguf_bytes` draws files two ways: valid seed files with a few
structure-aware mutations (a count, length, type or offset field set to an
edge value, bytes flipped, inserted, deleted, cut), and files assembled from
random parts (keys, hyper-parameters, arrays, tensor descriptions).

:class:`CoverageFuzzer` is the long run: it feeds byte strings through
hypothesis' ``fuzz_one_input`` (so they decode into the strategies' structured
files) and, in turns, mutates raw GGUF files directly; inputs that reach new
lines of ``inference/gguf_info.py`` (measured with ``sys.settrace``) are kept
and mutated further, as AFL does.
"""

from __future__ import annotations

import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inference.gguf_info as gguf_info
from inference.errors import ModelFileError
from inference.gguf_info import check_architecture_known, read_gguf_info
from tests.bad_inputs.gguf_doc import (
    ARRAY, BOOL, F32, F64, I32, SCALAR_FORMATS, STRING, U8, U32, GgufDoc, Kv, Tensor, encode_value, parse,
)

TIME_LIMIT_S = 2.0  # per input; the validator needs well under a millisecond for these sizes
MEMORY_LIMIT_BYTES = 64 << 20  # Python allocations while validating one input, beyond its own size
INTERESTING = (0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 31, 32, 33, 63, 64, 255, 256, 511, 512, 513, 1024, 4096, 65535,
               65536, 2**20, 2**24, 2**30, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63,
               2**64 - 32, 2**64 - 1, 0x1D1D1D1D1D1D1D1D)
ARCHITECTURES = ("llama", "gemma3", "qwen2moe", "mamba", "jamba", "rwkv7", "deepseek2", "", "unknown-arch")
HYPERPARAMETERS = ("context_length", "embedding_length", "block_count", "feed_forward_length",
                   "attention.head_count", "attention.head_count_kv", "attention.key_length",
                   "attention.value_length", "rope.dimension_count", "rope.freq_base", "rope.scaling.type",
                   "rope.scaling.factor", "attention.layer_norm_rms_epsilon", "expert_count", "expert_used_count",
                   "expert_group_count", "expert_group_used_count", "nextn_predict_layers", "vocab_size")
TOKENIZER_KEYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                  "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.add_bos_token")


@dataclass(frozen=True)
class Failure:
    """An input the validator mishandled, and how."""

    data: bytes
    problem: str


def check_validator(data: bytes, scratch: Path) -> Failure | None:
    """Run the validator on ``data`` (written to a file in ``scratch``); None if it behaved."""
    path = scratch / "fuzz.gguf"
    path.write_bytes(data)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        info = read_gguf_info(path)
        check_architecture_known(info)
    except ModelFileError as exc:
        if not str(exc).strip():
            return Failure(data, f"{type(exc).__name__} without a sentence")
    except Exception as exc:  # noqa: BLE001 - exactly what the fuzzer looks for
        return Failure(data, f"{type(exc).__name__}: {exc}")
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    if elapsed > TIME_LIMIT_S:
        return Failure(data, f"took {elapsed:.2f} s")
    if peak > MEMORY_LIMIT_BYTES + 4 * len(data):
        return Failure(data, f"allocated {peak / 1e6:.0f} MB")
    return None


# ------------------------------------------------------------------ seeds


def seed_docs(folder: Path) -> list[GgufDoc]:
    """Small valid files to mutate: the tiny header, a small Gemma 3 and a small Llama with vocabularies."""
    from tests.gguf_factory import write_random_gemma3, write_random_llama, write_tiny_gguf

    made = [write_tiny_gguf(folder / "seed-tiny.gguf"),
            write_random_gemma3(folder / "seed-gemma.gguf", hidden=16, head_dim=8, ff=32, layers=1),
            write_random_llama(folder / "seed-llama.gguf", hidden=16, heads=2, kv_heads=1, ff=32, layers=1)]
    return [parse(path.read_bytes()) for path in made]


# ------------------------------------------------------------------ strategies

_numbers = st.one_of(st.sampled_from(INTERESTING), st.integers(0, 2**64 - 1))


def _mutated(seeds: list[GgufDoc]) -> st.SearchStrategy[bytes]:
    files = [(doc.to_bytes(), [b for b in doc.boundaries if b < doc.data_start] or [0]) for doc in seeds]

    @st.composite
    def mutated_seed(draw) -> bytes:  # closes over the seeds: a strategy's repr would print them all
        return _mutate_seed(draw, *files[draw(st.integers(0, len(files) - 1))])

    return mutated_seed()


def _mutate_seed(draw, original: bytes, boundaries: list[int]) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(("field", "field", "field", "byte", "cut", "insert", "delete", "repeat")))
        at = draw(st.one_of(st.sampled_from(boundaries), st.integers(0, max(0, len(data) - 1))))
        if kind == "field":
            width = draw(st.sampled_from((4, 8)))
            value = draw(_numbers) & ((1 << (8 * width)) - 1)
            data[at:at + width] = value.to_bytes(width, "little")
        elif kind == "byte" and data:
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        else:
            data[at:at] = data[at:at + draw(st.integers(1, 64))] * draw(st.integers(1, 4))
    return bytes(data)


@st.composite
def _value(draw, depth: int = 0) -> tuple[int, object]:
    value_type = draw(st.sampled_from(tuple(SCALAR_FORMATS) + (STRING, STRING, ARRAY, ARRAY)))
    if value_type == ARRAY:
        element = draw(st.sampled_from((U8, U32, I32, F32, STRING, BOOL) + ((ARRAY,) if depth < 2 else ())))
        items = draw(st.lists(_element(element, depth + 1), max_size=8))
        return ARRAY, (element, items)
    return value_type, draw(_element(value_type, depth))


def _element(value_type: int, depth: int):
    if value_type == STRING:
        return st.one_of(st.text(max_size=12), st.binary(max_size=12))
    if value_type == ARRAY:
        return _value(depth).filter(lambda v: v[0] == ARRAY).map(lambda v: v[1])
    if value_type in (F32, F64):
        return st.floats(width=32 if value_type == F32 else 64)
    if value_type == BOOL:
        return st.booleans()
    fmt = SCALAR_FORMATS[value_type]
    bits = {"B": 8, "b": 8, "H": 16, "h": 16, "I": 32, "i": 32, "Q": 64, "q": 64}[fmt[1]]
    if fmt[1].islower():
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return st.one_of(st.sampled_from([n for n in INTERESTING if n < 2**bits]), st.integers(0, 2**bits - 1))


@st.composite
def _assembled(draw) -> bytes:
    architecture = draw(st.sampled_from(ARCHITECTURES))
    doc = GgufDoc(version=draw(st.sampled_from((3, 3, 3, 2, 1, 4))), kvs=[], tensors=[])
    doc.set("general.architecture", STRING, architecture)
    keys = st.one_of(st.sampled_from(HYPERPARAMETERS).map(lambda k: f"{architecture}.{k}"),
                     st.sampled_from(TOKENIZER_KEYS + ("general.alignment", "general.name", "")),
                     st.text(max_size=8))
    for key in draw(st.lists(keys, max_size=10)):
        value_type, value = draw(_value())
        if draw(st.booleans()) and value_type not in (STRING, ARRAY):  # counts are mostly uint32 in range
            value_type, value = U32, draw(st.sampled_from([n for n in INTERESTING if n < 2**32]))
        try:
            doc.kvs.append(Kv(key, value_type, encode_value(value_type, value)))
        except (OverflowError, ValueError, TypeError):  # e.g. a float32 too large to encode
            continue
    if draw(st.booleans()):
        tokens = draw(st.lists(st.text(max_size=4), min_size=0, max_size=6))
        doc.set("tokenizer.ggml.tokens", ARRAY, (STRING, tokens))
        if draw(st.booleans()):
            doc.set("tokenizer.ggml.scores", ARRAY, (F32, [0.0] * draw(st.integers(0, 8))))
    for index in range(draw(st.integers(0, 3))):
        dims = draw(st.lists(st.one_of(st.integers(1, 64), _numbers), min_size=0, max_size=5))
        type_id = draw(st.one_of(st.sampled_from((0, 1, 2, 8, 12, 14, 30)), st.integers(0, 2**32 - 1)))
        size = 1
        for dim in dims:
            size *= dim
        data = bytes(min(size * 4, 4096))
        offset = draw(st.one_of(st.none(), _numbers))
        name = draw(st.one_of(st.just(f"t{index}"), st.just("t0"), st.text(max_size=70)))
        doc.tensors.append(Tensor(name, dims, type_id, data, offset=offset))
    if draw(st.integers(0, 9)) == 0:
        doc.n_tensors = draw(_numbers)
    if draw(st.integers(0, 9)) == 0:
        doc.n_kv = draw(_numbers)
    doc.layout_alignment = 32
    return doc.to_bytes()


def gguf_bytes(seeds: list[GgufDoc]) -> st.SearchStrategy[bytes]:
    """Hostile GGUF files: mutated seeds, or files assembled from random parts."""
    return st.one_of(_mutated(seeds), _assembled())


def fuzz_target(seeds: list[GgufDoc], scratch: Path) -> Callable:
    """A hypothesis test of the property, for ``fuzz_one_input`` (it raises AssertionError on a failure)."""

    @settings(database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(gguf_bytes(seeds))
    def validator_behaves(data: bytes) -> None:
        failure = check_validator(data, scratch)
        assert failure is None, failure.problem

    return validator_behaves


# ------------------------------------------------------------------ the coverage-guided loop


@dataclass
class FuzzReport:
    """What a fuzzing run did: inputs run, failures found, lines of the validator reached."""

    execs: int = 0
    failures: list[Failure] = field(default_factory=list)
    arcs: int = 0
    kept: int = 0
    seconds: float = 0.0


class CoverageFuzzer:
    """Mutates inputs and keeps those that reach new arcs (line pairs) of ``inference/gguf_info.py``.

    Half the turns feed a byte string to hypothesis (``fuzz_one_input`` decodes
    it into a structured file through :func:`gguf_bytes`); the other half
    mutate a GGUF file's bytes directly. ``seed`` makes a run repeatable.
    """

    def __init__(self, scratch: Path, *, seed: int = 0, extra_files: list[bytes] | None = None) -> None:
        self._scratch = scratch
        self._rng = random.Random(seed)
        docs = seed_docs(scratch)
        self._target = fuzz_target(docs, scratch).hypothesis.fuzz_one_input
        self._buffers = [self._rng.randbytes(n) for n in (64, 256, 1024, 4096)]
        self._files = [doc.to_bytes() for doc in docs] + list(extra_files or [])
        self._seen: set[tuple[int, int]] = set()
        self._filename = gguf_info.__file__

    def run(self, *, seconds: float | None = None, max_execs: int | None = None) -> FuzzReport:
        """Fuzz until ``seconds`` pass or ``max_execs`` inputs ran, whichever comes first."""
        report = FuzzReport()
        started = time.perf_counter()
        while (seconds is None or time.perf_counter() - started < seconds) and (
            max_execs is None or report.execs < max_execs
        ):
            if report.execs % 2:
                self._one(self._buffers, report, self._through_hypothesis)
            else:
                self._one(self._files, report, self._directly)
            report.execs += 1
        report.arcs, report.seconds = len(self._seen), time.perf_counter() - started
        return report

    def _one(self, pool: list[bytes], report: FuzzReport, execute: Callable[[bytes], Failure | None]) -> None:
        parent = pool[-1 - int(self._rng.expovariate(0.1)) % len(pool)] if self._rng.random() < 0.5 \
            else self._rng.choice(pool)
        child = self._mutate(parent, self._rng.choice(pool))
        arcs: set[tuple[int, int]] = set()
        failure = self._traced(lambda: execute(child), arcs)
        if failure is not None:
            report.failures.append(failure)
        if not arcs <= self._seen:
            self._seen |= arcs
            pool.append(child)
            report.kept += 1

    def _through_hypothesis(self, buffer: bytes) -> Failure | None:
        try:
            self._target(buffer)
        except AssertionError as exc:
            return Failure(buffer, f"through hypothesis: {exc}")
        return None

    def _directly(self, data: bytes) -> Failure | None:
        return check_validator(data, self._scratch)

    def _traced(self, call: Callable[[], Failure | None], arcs: set[tuple[int, int]]) -> Failure | None:
        filename = self._filename

        def local(frame, event, _arg):
            if event == "line":
                arcs.add((local.last, frame.f_lineno))
                local.last = frame.f_lineno
            return local

        def global_trace(frame, event, _arg):
            if frame.f_code.co_filename == filename:
                local.last = -frame.f_code.co_firstlineno
                return local
            return None

        previous = sys.gettrace()
        sys.settrace(global_trace)
        try:
            return call()
        finally:
            sys.settrace(previous)

    def _mutate(self, data: bytes, other: bytes) -> bytes:
        rng, out = self._rng, bytearray(data)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(out) + 1)
            roll = rng.random()
            if roll < 0.3:
                width = rng.choice((1, 4, 8))
                value = rng.choice(INTERESTING) & ((1 << (8 * width)) - 1)
                out[at:at + width] = value.to_bytes(width, "little")
            elif roll < 0.5 and out:
                out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
            elif roll < 0.6:
                out[at:at] = rng.randbytes(rng.randint(1, 32))
            elif roll < 0.7:
                del out[at:at + rng.randint(1, 32)]
            elif roll < 0.8:
                start = rng.randrange(len(other) + 1)
                out[at:at] = other[start:start + rng.randint(1, 256)]
            elif roll < 0.9:
                del out[at:]
            else:
                out[at:at] = out[at:at + rng.randint(1, 64)] * rng.randint(2, 8)
        return bytes(out[:1 << 20])

