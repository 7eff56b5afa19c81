"""Choosing the CPU thread count from measurements: pure decisions, no Qt, no engine.

A model starts with one thread per physical core, which is right on most
computers. While the engine is idle, Hearth measures decode speed at a few
other counts, one count per short step, in interleaved rounds (the order
rotates each round so a slow moment does not always land on the same count).
Another count replaces the physical-core count only when it is faster by a
clear margin in every round: a single lucky round decides nothing. A round
during which other programs kept the CPU busy is thrown away and tried again
later, since it measures them rather than this computer.

Once chosen, the count is stored with the speed it measured. When several
replies in a row decode clearly slower than that figure predicts, the figure
is measured again.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

ROUNDS = 3
CLEAR_MARGIN = 0.10  # another count must be at least this much faster than the physical-core count
BUSY_FRACTION = 0.15  # other programs' share of all cores above which a measurement is discarded
MAX_BUSY_ROUNDS = 20  # then stop trying for this load; the next start tries again
SLOW_FRACTION = 0.70  # a reply this much slower than the stored figure counts as slow
SLOW_REPLIES = 3  # slow replies in a row that ask for a new measurement
# Decode slows as the context grows; the stored figure is measured on a short
# prompt, so only replies that are long enough to time and whose context is
# still short are compared with it.
COMPARABLE_CONTEXT_TOKENS = 1024
MIN_COMPARABLE_TOKENS = 16


@dataclass(frozen=True)
class MeasuredThreads:
    """The thread count chosen for one model on one CPU, with the decode speed measured for it.

    ``model`` is the file's name and ``model_size`` its size in bytes: a figure holds for that file only.
    The settings store these (``model_store.settings``).
    """

    threads: int
    tokens_per_s: float
    model: str
    model_size: int


def measurement_key(file_name: str, file_size: int) -> str:
    """How a measurement names the model it holds for (a re-downloaded or requantized file differs in size)."""
    return f"{file_name}:{file_size}"


def candidate_threads(physical_cores: int, logical_cores: int) -> tuple[int, ...]:
    """The thread counts worth measuring, the physical-core count first.

    Half the cores (llama.cpp's own default, and faster where cores share a
    memory bus) and, with SMT, one per logical core; on larger machines also
    one fewer than the cores, which leaves one for the rest of the system.
    """
    physical = max(1, physical_cores)
    others = {max(1, physical // 2)}
    if logical_cores > physical:
        others.add(logical_cores)
    if physical > 2:
        others.add(physical - 1)
    return (physical, *sorted(others - {physical}))


@dataclass(frozen=True)
class ThreadDecision:
    """The thread count to use, the decode speed it measured (median of the rounds) and why."""

    threads: int
    tokens_per_s: float
    reason: str


def decide_threads(
    rounds: Sequence[Mapping[int, float]], physical_cores: int, *, margin: float = CLEAR_MARGIN
) -> ThreadDecision:
    """Keep the physical-core count unless another count is faster by ``margin`` in every round.

    ``rounds`` are complete, clean rounds: tokens/s per thread count, each
    including ``physical_cores``. Among counts that win every round, the one
    with the best median speed is chosen.

    Raises:
        ValueError: no rounds, or a round without the physical-core count.
    """
    if not rounds:
        raise ValueError("no measurements to decide from")
    if any(physical_cores not in speeds for speeds in rounds):
        raise ValueError(f"every round must measure {physical_cores} threads (one per physical core)")
    medians = {
        threads: statistics.median(speeds[threads] for speeds in rounds)
        for threads in set.intersection(*(set(speeds) for speeds in rounds))
    }
    winners = [
        threads for threads in medians if threads != physical_cores
        and all(speeds[threads] >= speeds[physical_cores] * (1 + margin) for speeds in rounds)
    ]
    count = len(rounds)
    if not winners:
        return ThreadDecision(
            threads=physical_cores,
            tokens_per_s=medians[physical_cores],
            reason=(
                f"{_threads(physical_cores)} (one per physical core): no other count was at least "
                f"{margin:.0%} faster in all {count} rounds ({_figures(medians)})."
            ),
        )
    best = max(winners, key=medians.__getitem__)
    return ThreadDecision(
        threads=best,
        tokens_per_s=medians[best],
        reason=(
            f"{_threads(best)}: faster than {physical_cores} (one per physical core) by at least "
            f"{margin:.0%} in all {count} rounds ({_figures(medians)})."
        ),
    )


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds used so far by the whole system (busy, not idle) and by our own processes."""

    system_busy_s: float
    ours_s: float
    wall_s: float


def take_cpu_sample(pids: Iterable[int]) -> CpuSample:
    """The CPU time used so far by the system and by the processes ``pids`` (Hearth and its engine)."""
    import time

    import psutil

    times = psutil.cpu_times()
    # Guest time is counted in user time already (Linux); steal, time other virtual machines took, counts as busy.
    not_busy = times.idle + getattr(times, "iowait", 0.0) + getattr(times, "guest", 0.0) + getattr(
        times, "guest_nice", 0.0)
    ours = 0.0
    for pid in pids:
        try:
            own = psutil.Process(pid).cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        ours += own.user + own.system
    return CpuSample(system_busy_s=sum(times) - not_busy, ours_s=ours, wall_s=time.monotonic())


def other_programs_load(before: CpuSample, after: CpuSample, cpu_count: int | None = None) -> float:
    """The share of all cores (0..1) that other programs used between two samples."""
    wall = after.wall_s - before.wall_s
    if wall <= 0:
        return 0.0
    others = (after.system_busy_s - before.system_busy_s) - (after.ours_s - before.ours_s)
    return min(1.0, max(0.0, others) / (wall * (cpu_count or os.cpu_count() or 1)))


@dataclass
class ThreadTuner:
    """The plan of one background measurement: which count to measure next, and when it is decided.

    Call :meth:`next_threads`, measure that count, then :meth:`record` it.
    A round with a busy sample is discarded as a whole (its counts were not
    measured under the same conditions); after ``max_busy_rounds`` of them
    the tuner gives up and :meth:`next_threads` returns None.
    """

    physical_cores: int
    logical_cores: int
    rounds_needed: int = ROUNDS
    busy_fraction: float = BUSY_FRACTION
    max_busy_rounds: int = MAX_BUSY_ROUNDS
    clean_rounds: list[dict[int, float]] = field(default_factory=list)
    busy_rounds: int = 0
    _current: dict[int, float] = field(default_factory=dict)
    _started_rounds: int = 0

    @property
    def candidates(self) -> tuple[int, ...]:
        """The counts measured in each round."""
        return candidate_threads(self.physical_cores, self.logical_cores)

    @property
    def gave_up(self) -> bool:
        """Other programs kept the CPU busy through too many rounds."""
        return self.busy_rounds >= self.max_busy_rounds

    def next_threads(self) -> int | None:
        """The count to measure next; None once decided or given up."""
        if self.decision() is not None or self.gave_up:
            return None
        order = self._round_order()
        return next(threads for threads in order if threads not in self._current)

    def record(self, threads: int, tokens_per_s: float, *, other_load: float) -> bool:
        """Record one measurement; False when it was discarded because other programs kept the CPU busy."""
        if other_load > self.busy_fraction or tokens_per_s <= 0:
            self.busy_rounds += 1
            self._current = {}
            self._started_rounds += 1
            return False
        self._current[threads] = tokens_per_s
        if len(self._current) == len(self.candidates):
            self.clean_rounds.append(self._current)
            self._current = {}
            self._started_rounds += 1
        return True

    def decision(self) -> ThreadDecision | None:
        """The chosen count once ``rounds_needed`` clean rounds are in; None before."""
        if len(self.clean_rounds) < self.rounds_needed:
            return None
        return decide_threads(self.clean_rounds, self.physical_cores)

    def _round_order(self) -> tuple[int, ...]:
        counts = self.candidates
        shift = self._started_rounds % len(counts)
        return counts[shift:] + counts[:shift]


@dataclass
class SlowReplyWatch:
    """Notices when replies decode clearly slower than the stored figure predicts.

    Only comparable replies count (see ``COMPARABLE_CONTEXT_TOKENS``); a
    comparable reply at normal speed starts the count again.
    """

    expected_tokens_per_s: float
    slow_fraction: float = SLOW_FRACTION
    replies_needed: int = SLOW_REPLIES
    slow_in_a_row: int = 0

    def observe(self, *, tokens_per_s: float, completion_tokens: int, context_used: int) -> bool:
        """Count one reply; True when ``replies_needed`` comparable replies in a row were slow."""
        comparable = completion_tokens >= MIN_COMPARABLE_TOKENS and context_used <= COMPARABLE_CONTEXT_TOKENS
        if not comparable or tokens_per_s <= 0 or self.expected_tokens_per_s <= 0:
            return False
        if tokens_per_s >= self.expected_tokens_per_s * self.slow_fraction:
            self.slow_in_a_row = 0
            return False
        self.slow_in_a_row += 1
        if self.slow_in_a_row < self.replies_needed:
            return False
        self.slow_in_a_row = 0
        return True


def _threads(count: int) -> str:
    return f"{count} thread{'s' if count != 1 else ''}"


def _figures(medians: Mapping[int, float]) -> str:
    return ", ".join(f"{_threads(threads)} {speed:.1f} tokens/s" for threads, speed in sorted(medians.items()))
