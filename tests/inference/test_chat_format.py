"""Prompt formats: the model's own template in a sandbox, Gemma turns, and the base-model transcript."""

from __future__ import annotations

import pytest

from inference.chat_format import (
    ChatTemplateError,
    GemmaTurnFormat,
    JinjaChatFormat,
    SpecialTokens,
    TranscriptFormat,
    chat_format_for,
)

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "How are you?"},
]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_model_template_is_rendered_with_generation_prompt() -> None:
    fmt = JinjaChatFormat(CHATML, SpecialTokens(bos="<s>", eos="<|im_end|>"))
    prompt = fmt.render(CONVERSATION)
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert prompt.endswith("<|im_start|>assistant\n")
    assert fmt.stop_strings == ("<|im_end|>",)


def test_template_cannot_escape_the_sandbox() -> None:
    hostile = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    fmt = JinjaChatFormat(hostile, SpecialTokens())
    with pytest.raises(ChatTemplateError):
        fmt.render(CONVERSATION)


def test_template_raise_exception_becomes_a_clear_error() -> None:
    fmt = JinjaChatFormat("{{ raise_exception('roles must alternate') }}", SpecialTokens())
    with pytest.raises(ChatTemplateError, match="roles must alternate"):
        fmt.render(CONVERSATION)


def test_broken_template_is_reported_when_loaded() -> None:
    with pytest.raises(ChatTemplateError, match="broken"):
        JinjaChatFormat("{% for %}", SpecialTokens())


def test_gemma_turns_fold_the_system_prompt_into_the_first_user_turn() -> None:
    prompt = GemmaTurnFormat().render(CONVERSATION)
    assert prompt == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nHow are you?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_transcript_ends_where_the_assistant_speaks() -> None:
    prompt = TranscriptFormat().render(CONVERSATION)
    assert prompt.startswith("Be brief.\n\n")
    assert prompt.endswith("User: Hi\nAssistant: Hello!\nUser: How are you?\nAssistant:")


@pytest.mark.parametrize(
    ("architecture", "template", "base", "expected"),
    [
        ("llama", CHATML, False, JinjaChatFormat),
        ("gemma3", CHATML, True, JinjaChatFormat),
        ("gemma3", None, False, GemmaTurnFormat),
        ("gemma3", None, True, TranscriptFormat),
        ("mystery", None, False, TranscriptFormat),
    ],
)
def test_format_choice(architecture: str, template: str | None, base: bool, expected: type) -> None:
    fmt = chat_format_for(architecture=architecture, chat_template=template, tokens=SpecialTokens(), is_base_model=base)
    assert isinstance(fmt, expected)


PARTIAL = [{"role": "user", "content": "Tell a story"}, {"role": "assistant", "content": "Once upon"}]


def test_every_format_ends_inside_a_reply_that_is_being_continued() -> None:
    assert GemmaTurnFormat().render(PARTIAL).endswith("<start_of_turn>model\nOnce upon")
    assert TranscriptFormat().render(PARTIAL).endswith("User: Tell a story\nAssistant: Once upon")
    chatml = JinjaChatFormat(CHATML, SpecialTokens(eos="<|im_end|>")).render(PARTIAL)
    assert chatml.endswith("<|im_start|>assistant\nOnce upon")
