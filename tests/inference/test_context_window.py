"""The context-window policy: oldest turns go first, the system prompt and the newest message stay."""

from __future__ import annotations

from inference.context_window import fit_messages


def encode_words(messages) -> list[str]:
    """One 'token' per word: enough to test the policy exactly."""
    return [word for message in messages for word in message["content"].split()]


def conversation(turns: int) -> list[dict]:
    messages = [{"role": "system", "content": "sys rule"}]
    for index in range(turns):
        messages += [
            {"role": "user", "content": f"u{index} " * 3},
            {"role": "assistant", "content": f"a{index} " * 3},
        ]
    return messages + [{"role": "user", "content": "newest question"}]


def test_a_conversation_that_fits_is_untouched() -> None:
    tokens, dropped = fit_messages(conversation(2), encode_words, budget=100)
    assert dropped == 0 and len(tokens) == 2 + 12 + 2


def test_oldest_turns_are_dropped_keeping_the_system_prompt_and_newest_message() -> None:
    tokens, dropped = fit_messages(conversation(5), encode_words, budget=20)
    assert tokens[:2] == ["sys", "rule"]
    assert tokens[-2:] == ["newest", "question"]
    assert len(tokens) <= 20
    assert dropped % 2 == 0  # whole user+assistant pairs
    kept_first = tokens[2]
    assert kept_first.startswith("u"), "the kept history starts with a user turn"
    assert "u0" not in tokens and "u4" in tokens


def test_when_nothing_more_can_go_the_result_is_still_over_budget() -> None:
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "word " * 50}]
    tokens, dropped = fit_messages(messages, encode_words, budget=10)
    assert dropped == 0 and len(tokens) == 51
