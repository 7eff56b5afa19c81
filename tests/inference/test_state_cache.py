"""The LRU of conversation states: longest-prefix lookup, byte cap, redundant states dropped."""

from __future__ import annotations

from inference.state_cache import PrefixStateCache, common_prefix_length


def test_common_prefix_length() -> None:
    assert common_prefix_length([1, 2, 3, 4], [1, 2, 9]) == 2
    assert common_prefix_length([], [1]) == 0
    assert common_prefix_length((1, 2, 3), [1, 2, 3, 4]) == 3
    assert common_prefix_length(list(range(10_000)), list(range(9_999)) + [-1]) == 9_999


def test_best_match_is_the_longest_shared_prefix() -> None:
    cache = PrefixStateCache(capacity_bytes=1000)
    cache.put([1, 2, 3, 4], "conversation A", 10)
    cache.put([7, 8, 9], "conversation B", 10)
    shared, entry = cache.best_match([1, 2, 3, 4, 5, 6])
    assert (shared, entry.state) == (4, "conversation A")
    shared, entry = cache.best_match([7, 8, 1])
    assert (shared, entry.state) == (2, "conversation B")
    assert cache.best_match([5, 5]) is None


def test_least_recently_used_states_go_first_when_over_the_cap() -> None:
    cache = PrefixStateCache(capacity_bytes=25)
    cache.put([1], "a", 10)
    cache.put([2], "b", 10)
    cache.best_match([1, 0])  # "a" is now the most recent
    cache.put([3], "c", 10)
    assert {entry.state for _, entry in filter(None, (cache.best_match([k]) for k in (1, 2, 3)))} == {"a", "c"}
    assert cache.size_bytes <= 25


def test_a_state_bigger_than_the_cap_is_not_kept() -> None:
    cache = PrefixStateCache(capacity_bytes=5)
    cache.put([1, 2], "huge", 6)
    assert len(cache) == 0


def test_a_longer_state_of_the_same_conversation_replaces_the_shorter() -> None:
    cache = PrefixStateCache(capacity_bytes=100)
    cache.put([1, 2], "turn 1", 10)
    cache.put([1, 2, 3, 4], "turn 2", 10)
    assert len(cache) == 1
    assert cache.best_match([1, 2, 3, 4, 5])[1].state == "turn 2"
