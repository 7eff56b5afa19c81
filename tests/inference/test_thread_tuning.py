"""The thread-count decision on made-up measurements: noise, busy CPUs, clear wins, ties, and the re-check."""

from __future__ import annotations

import pytest

from inference.thread_tuning import (
    COMPARABLE_CONTEXT_TOKENS,
    CpuSample,
    SlowReplyWatch,
    ThreadTuner,
    candidate_threads,
    decide_threads,
    measurement_key,
    other_programs_load,
)


def test_candidates_start_with_the_physical_cores() -> None:
    assert candidate_threads(2, 2) == (2, 1)
    assert candidate_threads(4, 8) == (4, 2, 3, 8)
    assert candidate_threads(1, 1) == (1,)


def test_a_tie_keeps_one_thread_per_physical_core() -> None:
    rounds = [{2: 30.0, 1: 31.0}, {2: 29.5, 1: 29.0}, {2: 30.2, 1: 30.9}]
    decision = decide_threads(rounds, physical_cores=2)
    assert decision.threads == 2
    assert decision.tokens_per_s == 30.0  # the median of the rounds
    assert "no other count" in decision.reason and "3 rounds" in decision.reason


def test_noise_that_favours_another_count_in_one_round_is_not_evidence() -> None:
    # The measurement from issue 8: one round, taken while another program was busy, said 1 thread.
    rounds = [{2: 15.0, 1: 28.0}, {2: 31.0, 1: 28.5}, {2: 30.0, 1: 29.0}]
    assert decide_threads(rounds, physical_cores=2).threads == 2


def test_a_clear_win_for_fewer_threads_in_every_round_is_taken() -> None:
    rounds = [{8: 20.0, 4: 26.0, 7: 21.0}, {8: 19.0, 4: 25.5, 7: 20.0}, {8: 21.0, 4: 24.0, 7: 22.0}]
    decision = decide_threads(rounds, physical_cores=8)
    assert decision.threads == 4
    assert decision.tokens_per_s == 25.5
    assert "faster than 8" in decision.reason


def test_a_small_win_is_not_clear_enough() -> None:
    rounds = [{4: 20.0, 2: 21.9}, {4: 20.0, 2: 21.8}, {4: 20.0, 2: 21.5}]  # 7-9.5 % faster
    assert decide_threads(rounds, physical_cores=4).threads == 4


def test_the_best_of_several_clear_winners_by_median() -> None:
    rounds = [{8: 10.0, 4: 12.0, 16: 14.0}, {8: 10.0, 4: 12.5, 16: 13.0}, {8: 10.0, 4: 11.5, 16: 13.5}]
    assert decide_threads(rounds, physical_cores=8).threads == 16


def test_a_decision_needs_the_physical_core_count_in_every_round() -> None:
    with pytest.raises(ValueError):
        decide_threads([], physical_cores=2)
    with pytest.raises(ValueError):
        decide_threads([{1: 10.0}], physical_cores=2)


def test_other_programs_load_excludes_our_own_processes() -> None:
    before = CpuSample(system_busy_s=100.0, ours_s=10.0, wall_s=0.0)
    ours_only = CpuSample(system_busy_s=102.0, ours_s=12.0, wall_s=1.0)
    with_a_compiler = CpuSample(system_busy_s=103.9, ours_s=12.0, wall_s=1.0)
    assert other_programs_load(before, ours_only, cpu_count=2) == 0.0
    assert other_programs_load(before, with_a_compiler, cpu_count=2) == pytest.approx(0.95)


def test_the_tuner_interleaves_rounds_and_decides_after_three_clean_ones() -> None:
    tuner = ThreadTuner(physical_cores=2, logical_cores=2)
    measured = []
    while (threads := tuner.next_threads()) is not None:
        measured.append(threads)
        assert tuner.record(threads, {2: 30.0, 1: 20.0}[threads], other_load=0.02)
    assert measured == [2, 1, 1, 2, 2, 1]  # the order rotates each round
    assert tuner.decision().threads == 2


def test_a_busy_round_is_discarded_and_tried_again() -> None:
    tuner = ThreadTuner(physical_cores=2, logical_cores=2)
    assert tuner.record(tuner.next_threads(), 30.0, other_load=0.0)
    # A compile starts: this sample and the half-finished round are thrown away.
    assert not tuner.record(tuner.next_threads(), 55.0, other_load=0.9)
    assert tuner.clean_rounds == [] and tuner.busy_rounds == 1
    for _ in range(6):
        threads = tuner.next_threads()
        tuner.record(threads, {2: 30.0, 1: 40.0}[threads], other_load=0.05)
    assert len(tuner.clean_rounds) == 3
    assert tuner.decision().threads == 1  # 33 % faster in every clean round


def test_the_tuner_gives_up_on_a_computer_that_stays_busy() -> None:
    tuner = ThreadTuner(physical_cores=2, logical_cores=2, max_busy_rounds=3)
    for _ in range(3):
        assert not tuner.record(tuner.next_threads(), 30.0, other_load=0.8)
    assert tuner.gave_up and tuner.next_threads() is None and tuner.decision() is None


def test_three_slow_replies_in_a_row_ask_for_a_new_measurement() -> None:
    watch = SlowReplyWatch(expected_tokens_per_s=30.0)
    slow = dict(tokens_per_s=15.4, completion_tokens=200, context_used=400)
    assert not watch.observe(**slow)
    assert not watch.observe(**slow)
    assert watch.observe(**slow)
    assert watch.slow_in_a_row == 0  # counting starts again


def test_a_normal_reply_resets_the_slow_count() -> None:
    watch = SlowReplyWatch(expected_tokens_per_s=30.0)
    slow = dict(tokens_per_s=15.0, completion_tokens=200, context_used=400)
    watch.observe(**slow)
    watch.observe(**slow)
    assert not watch.observe(tokens_per_s=25.0, completion_tokens=200, context_used=400)  # 83 %: normal
    assert not watch.observe(**slow)
    assert watch.slow_in_a_row == 1


def test_long_contexts_and_short_replies_are_not_compared() -> None:
    watch = SlowReplyWatch(expected_tokens_per_s=30.0)
    for _ in range(5):
        assert not watch.observe(tokens_per_s=10.0, completion_tokens=200, context_used=COMPARABLE_CONTEXT_TOKENS + 1)
        assert not watch.observe(tokens_per_s=10.0, completion_tokens=3, context_used=100)
    assert watch.slow_in_a_row == 0


def test_measurements_name_the_model_file_and_its_size() -> None:
    assert measurement_key("gemma-3-270m-it-Q4_K_M.gguf", 253_000_000) != measurement_key(
        "gemma-3-270m-it-Q4_K_M.gguf", 300_000_000)
