"""Splitting a reasoning model's reply into thinking and answer, as it streams."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.thinking import (
    ThinkingSplitter,
    split_thinking,
    template_opens_thinking,
    template_reads_reasoning,
    thinking_format_for,
)

R1 = "<think>\nThe user greets me. I should greet back.\n</think>\n\nHello! How can I help?"
HARMONY = ("<|channel|>analysis<|message|>User says hi. Reply briefly.<|end|>"
           "<|start|>assistant<|channel|>final<|message|>Hi there!")


def stream(text: str, fmt: str, chunks: list[int] | None = None, **kwargs) -> tuple[str, str]:
    """Feed ``text`` in pieces (one character each, or cut at ``chunks``); the deltas joined."""
    splitter = ThinkingSplitter(fmt, **kwargs)
    cuts = [0, *(chunks if chunks is not None else range(1, len(text))), len(text)]
    thinking = answer = ""
    for start, end in zip(cuts, cuts[1:]):
        t, a = splitter.feed(text[start:end])
        thinking, answer = thinking + t, (answer + a if not splitter.rewound else a)
    t, a = splitter.finish()
    assert (thinking + t, answer + a) == (splitter.thinking, splitter.answer)
    return splitter.thinking, splitter.answer


def test_think_tags_token_by_token() -> None:
    assert stream(R1, "think-tags") == ("The user greets me. I should greet back.\n", "Hello! How can I help?")


@pytest.mark.parametrize("text,fmt", [(R1, "think-tags"), (HARMONY, "harmony")])
def test_a_tag_split_at_every_position(text: str, fmt: str) -> None:
    whole = split_thinking(text, fmt)
    for cut in range(1, len(text)):
        assert stream(text, fmt, [cut]) == whole, cut
    for cut in range(1, len(text) - 1):
        assert stream(text, fmt, [cut, cut + 1]) == whole, cut


def test_harmony_channels() -> None:
    assert stream(HARMONY, "harmony") == ("User says hi. Reply briefly.", "Hi there!")


def test_harmony_without_end_tokens_shown() -> None:
    # Where the detokenizer hides <|end|>, the next <|start|> still ends the analysis message.
    text = HARMONY.replace("<|end|>", "")
    assert stream(text, "harmony") == ("User says hi. Reply briefly.", "Hi there!")


def test_harmony_plain_reply_passes_through() -> None:
    assert stream("Just an answer, 1 < 2.", "harmony") == ("", "Just an answer, 1 < 2.")


def test_reply_that_starts_inside_thinking() -> None:
    text = "Let me think.\n</think>\n\nThe answer is 4."
    assert stream(text, "think-tags", starts_thinking=True) == ("Let me think.\n", "The answer is 4.")


def test_a_lone_closing_tag_turns_what_came_before_into_thinking() -> None:
    text = "Let me think.\n</think>\n\nThe answer is 4."
    splitter = ThinkingSplitter("think-tags")
    assert splitter.feed("Let me think.\n") == ("", "Let me think.\n")
    thinking, answer = splitter.feed("</think>\n\nThe answer")
    assert splitter.rewound and thinking == "Let me think.\n" and answer == "The answer"
    assert stream(text, "think-tags") == ("Let me think.\n", "The answer is 4.")


@pytest.mark.parametrize("fmt", ["", "think-tags", "harmony"])
def test_no_thinking_at_all(fmt: str) -> None:
    text = "a < b and <b>bold</b> <thin and 3<4 <"
    assert stream(text, fmt) == ("", text)


def test_formats_from_templates() -> None:
    assert thinking_format_for(None) == ""
    assert thinking_format_for("{{ '<|im_start|>' }}{% if enable_thinking is defined %}x{% endif %}") == "think-tags"
    assert thinking_format_for("{{ '<｜Assistant｜><think>\\n' }}") == "think-tags"
    assert thinking_format_for("<|start|>assistant<|channel|>final<|message|>") == "harmony"
    assert thinking_format_for("{{ '<start_of_turn>' }}") == ""
    assert template_reads_reasoning("{% if message.reasoning_content %}{{ message.reasoning_content }}{% endif %}")
    assert template_reads_reasoning("{{ message['thinking'] }}")
    assert not template_reads_reasoning("{{ '<think>' }}{{ message.content }}")
    r1 = "{% if add_generation_prompt %}{{'<｜Assistant｜><think>\\n'}}{% endif %}"
    qwq = "{%- if add_generation_prompt %}\n{{- '<|im_start|>assistant\\n<think>\\n' }}\n{%- endif %}"
    qwen3 = ("{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- if enable_thinking is defined "
             "and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}")
    assert template_opens_thinking(r1) and template_opens_thinking(qwq)
    assert not template_opens_thinking(qwen3) and not template_opens_thinking(None)


words = st.text(alphabet="ab <>/\n|", max_size=30)


@settings(max_examples=300, deadline=None)
@given(thinking=words, answer=words, cuts=st.lists(st.integers(min_value=1, max_value=80), max_size=8))
def test_property_think_tags(thinking: str, answer: str, cuts: list[int]) -> None:
    answer = answer.replace("</think>", "")
    thinking = thinking.replace("</think>", "")
    text = f"<think>{thinking}</think>{answer}"
    got = stream(text, "think-tags", sorted({c for c in cuts if c < len(text)}))
    assert got == (thinking.lstrip(), answer.lstrip())
    assert got == split_thinking(text, "think-tags")


@settings(max_examples=300, deadline=None)
@given(text=words, cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=8))
def test_property_plain_text_is_kept(text: str, cuts: list[int]) -> None:
    text = "x" + text.replace("</think>", "")  # not starting with a tag: all of it is answer
    assert stream(text, "think-tags", sorted({c for c in cuts if c < len(text)})) == ("", text)
    assert stream(text, "", sorted({c for c in cuts if c < len(text)})) == ("", text)


@settings(max_examples=300, deadline=None)
@given(analysis=words, final=words, cuts=st.lists(st.integers(min_value=1, max_value=120), max_size=8))
def test_property_harmony(analysis: str, final: str, cuts: list[int]) -> None:
    analysis = analysis.replace("<|", "")
    final = final.replace("<|", "")
    text = (f"<|channel|>analysis<|message|>{analysis}<|end|>"
            f"<|start|>assistant<|channel|>final<|message|>{final}")
    got = stream(text, "harmony", sorted({c for c in cuts if c < len(text)}))
    assert got == (analysis.lstrip(), final.lstrip())


def test_the_thinking_switch_and_earlier_thinking_reach_the_template() -> None:
    import pickle

    from inference.chat_format import JinjaChatFormat, SpecialTokens, TranscriptFormat
    from inference.engine import SamplingParams

    template = ("{% for m in messages %}{{ m.role }}:{{ m.content }}"
                "{% if m.reasoning_content %}({{ m.reasoning_content }}){% endif %};{% endfor %}"
                "{% if enable_thinking is defined %}think={{ enable_thinking }};{% endif %}"
                "{% if reasoning_effort is defined %}effort={{ reasoning_effort }};{% endif %}")
    fmt = JinjaChatFormat(template, SpecialTokens(), fallback=TranscriptFormat())
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "reasoning_content": "t"},
                {"role": "user", "content": "q2"}]
    assert fmt.render(messages) == "user:q;assistant:a(t);user:q2;"
    assert fmt.render(messages, thinking="off").endswith("think=False;")
    assert fmt.render(messages, thinking="high").endswith("think=True;effort=high;")
    assert TranscriptFormat().render(messages, thinking="on")  # other formats ignore the switch
    params = pickle.loads(pickle.dumps(SamplingParams(thinking="low")))  # it crosses to the engine process
    assert params.thinking == "low"
