"""Chat templates from strangers: escapes create no file, runaways are stopped, the model stays usable.

Everything runs real Jinja2. The hostile corpus is tests/bad_inputs/templates.py.
"""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from inference.chat_format import (
    ChatTemplateError,
    GemmaTurnFormat,
    JinjaChatFormat,
    SpecialTokens,
    TemplateEscapeError,
    TemplateLimitError,
    TranscriptFormat,
    chat_format_for,
)
from inference.template_sandbox import RenderLimits, SandboxedTemplate, _run_with_watchdog, _TimeUp
from tests.bad_inputs.templates import (
    CONVERSATION,
    RUNAWAY_TEMPLATES,
    deeply_nested_template,
    escape_templates,
    huge_template,
    leak_templates,
    live_outside_the_sandbox,
    template_figures,
)

TOKENS = SpecialTokens(bos="<s>", eos="</s>")
LIMITS = RenderLimits()
# A runaway is stopped at the time limit, or sooner by the step limit; the rest is slack for a busy machine.
STOPPED_WITHIN_S = LIMITS.seconds + LIMITS.watchdog_grace_s + 1.5

# Real templates (as published with the models, some shortened), rendered exactly as Jinja's own sandbox does.
REAL_TEMPLATES = {
    "chatml": (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'"
        " + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "llama3": (
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>'"
        " + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if "
        "loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if "
        "add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
    "llama3_1_tools": (
        "{{- bos_token }}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n"
        "{%- if not date_string is defined %}\n    {%- set date_string = \"26 Jul 2024\" %}\n{%- endif %}\n"
        "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content']|trim %}\n"
        "    {%- set messages = messages[1:] %}\n{%- else %}\n    {%- set system_message = \"\" %}\n{%- endif %}\n"
        "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
        "{%- if builtin_tools is defined or tools is not none %}\n    {{- \"Environment: ipython\\n\" }}\n"
        "{%- endif %}\n{%- if builtin_tools is defined %}\n    {{- \"Tools: \" + builtin_tools | reject('equalto', "
        "'code_interpreter') | join(\", \") + \"\\n\\n\"}}\n{%- endif %}\n"
        "{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n"
        "{{- system_message }}\n{{- \"<|eot_id|>\" }}\n{%- for message in messages %}\n"
        "    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}\n"
        "        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim"
        " + '<|eot_id|>' }}\n    {%- elif 'tool_calls' in message %}\n"
        "        {%- set tool_call = message.tool_calls[0].function %}\n"
        "        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n"
        "        {{- '{\"name\": \"' + tool_call.name + '\", ' }}\n        {{- '\"parameters\": ' }}\n"
        "        {{- tool_call.arguments | tojson }}\n        {{- \"}\" }}\n    {%- endif %}\n{%- endfor %}\n"
        "{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
        "{%- endif %}\n"
    ),
    "mistral": (
        "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role']"
        " == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and "
        "assistant roles are supported!') }}{% endif %}{% endfor %}"
    ),
    "gemma": (
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
        "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
    ),
    "phi3": (
        "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
        "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif "
        "message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
    ),
    "deepseek_r1": (
        "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
        "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}"
        "{%- for message in messages %}{%- if message['role'] == 'system' %}{% set ns.system_prompt = "
        "message['content'] %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}{%- for message in messages %}"
        "{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}"
        "{%- endif %}{%- if message['role'] == 'assistant' and message['content'] is not none %}{% set content = "
        "message['content'] %}{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}"
        "{% endif %}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor -%}"
        "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}"
    ),
    "qwen2_5": (
        "{%- if messages[0]['role'] == 'system' %}\n    {{- '<|im_start|>system\\n' + messages[0]['content'] + "
        "'<|im_end|>\\n' }}\n{%- else %}\n    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. "
        "You are a helpful assistant.<|im_end|>\\n' }}\n{%- endif %}\n{%- for message in messages %}\n"
        "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role =="
        " \"assistant\" and not message.tool_calls) %}\n        {{- '<|im_start|>' + message.role + '\\n' + "
        "message.content + '<|im_end|>' + '\\n' }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}"
        "\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"
    ),
    "loop_controls_and_filters": (
        "{% for m in messages %}{% if loop.index > 3 %}{% break %}{% endif %}{{ '%s: %s' | format(m.role | upper, "
        "m.content | replace('!', '.') | truncate(20)) }}|{{ m.content.split() | map('lower') | join(',') }}|"
        "{{ '{0:>6}'.format(loop.index) }}{{ m | dictsort | length }}{% endfor %}"
        "{{ messages | selectattr('role', 'eq', 'user') | list | length }}{{ (messages | map(attribute='content') | "
        "list)[-1] | center(30) }}{{ [1, 2, 3] | sum }}{{ {'a': 1} | tojson }}{{ range(3) | list }}"
    ),
}


def plain_sandbox_render(source: str, messages: list[dict]) -> str:
    """What Jinja's own immutable sandbox renders (as llama-cpp-python and transformers use it)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = lambda message: (_ for _ in ()).throw(ValueError(message))
    return env.from_string(source).render(messages=messages, add_generation_prompt=True, bos_token="<s>",
                                          eos_token="</s>")


def conversation_for(name: str) -> list[dict]:
    return CONVERSATION[1:] if name in ("mistral", "gemma") else CONVERSATION  # these refuse a system turn


# ------------------------------------------------------------------ real templates


@pytest.mark.parametrize("name", REAL_TEMPLATES)
def test_real_templates_render_exactly_as_in_jinjas_sandbox(name: str) -> None:
    messages = conversation_for(name)
    fmt = chat_format_for(architecture="llama", chat_template=REAL_TEMPLATES[name], tokens=TOKENS, is_base_model=False)
    assert fmt.name == "the model's chat template"
    assert fmt.render(messages) == plain_sandbox_render(REAL_TEMPLATES[name], messages)


def test_a_long_conversation_stays_within_the_limits() -> None:
    """Limits grow with the conversation: 2,001 messages and 3 MB of text render as in Jinja's sandbox."""
    messages = [{"role": "user" if index % 2 == 0 else "assistant", "content": f"Message {index}. " * 120}
                for index in range(2_001)]
    fmt = JinjaChatFormat(REAL_TEMPLATES["qwen2_5"], TOKENS)
    assert fmt.render(messages) == plain_sandbox_render(REAL_TEMPLATES["qwen2_5"], messages)


# ------------------------------------------------------------------ escapes


def test_the_escapes_work_outside_a_sandbox(tmp_path: Path) -> None:
    """The corpus holds real attacks: a plain Jinja environment runs every one and the canary appears."""
    assert live_outside_the_sandbox(tmp_path) == list(escape_templates(tmp_path))


@pytest.mark.parametrize("name", list(escape_templates(Path("canary"))))
def test_escapes_are_refused_and_create_no_file(name: str, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    source = escape_templates(canary)[name]
    with pytest.raises(TemplateEscapeError, match="sandbox forbids"):
        JinjaChatFormat(source, TOKENS).render(CONVERSATION)
    loaded = chat_format_for(architecture="gemma3", chat_template=source, tokens=TOKENS, is_base_model=False)
    assert loaded.set_aside_reason.startswith("was set aside: it tried to use")
    assert loaded.name.startswith("Gemma turns, Hearth's own format (the model's chat template was set aside")
    assert loaded.render(CONVERSATION) == GemmaTurnFormat().render(CONVERSATION)
    assert loaded.stop_strings == GemmaTurnFormat.stop_strings
    assert not canary.exists()


@pytest.mark.parametrize("name", list(leak_templates()))
def test_str_format_cannot_read_internals(name: str) -> None:
    with pytest.raises(TemplateEscapeError):
        JinjaChatFormat(leak_templates()[name], TOKENS).render(CONVERSATION)


def test_a_template_that_turns_hostile_later_is_set_aside_then(tmp_path: Path) -> None:
    """Harmless on the sample at load, an escape on a longer conversation: Hearth's format from then on."""
    canary = tmp_path / "late"
    escape = escape_templates(canary)["cycler_init_globals"]
    source = REAL_TEMPLATES["chatml"] + "{% if messages|length > 3 %}" + escape + "{% endif %}"
    fmt = chat_format_for(architecture="mystery", chat_template=source, tokens=TOKENS, is_base_model=False)
    assert fmt.render(CONVERSATION[:3]).startswith("<|im_start|>system")
    assert fmt.render(CONVERSATION) == TranscriptFormat().render(CONVERSATION)
    assert "set aside" in fmt.name and fmt.stop_strings == TranscriptFormat.stop_strings
    assert fmt.render(CONVERSATION[:3]) == TranscriptFormat().render(CONVERSATION[:3])  # for good
    assert not canary.exists()


# ------------------------------------------------------------------ runaways


@pytest.mark.parametrize("name", RUNAWAY_TEMPLATES)
def test_runaway_templates_are_stopped_in_time(name: str) -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateLimitError) as caught:
        JinjaChatFormat(RUNAWAY_TEMPLATES[name], TOKENS).render(CONVERSATION)
    assert time.perf_counter() - started < STOPPED_WITHIN_S
    assert str(caught.value).startswith("The model's chat template ")


def test_a_runaway_template_is_set_aside_at_load_and_the_model_stays_usable() -> None:
    fmt = chat_format_for(architecture="gemma3", chat_template=RUNAWAY_TEMPLATES["exponential_macro"], tokens=TOKENS,
                          is_base_model=False)
    assert fmt.name == ("Gemma turns, Hearth's own format (the model's chat template was set aside: it ran for more "
                        "than 2 s and was stopped)")
    assert fmt.render(CONVERSATION) == GemmaTurnFormat().render(CONVERSATION)


def test_a_ten_megabyte_template_is_refused_before_compiling() -> None:
    source = huge_template(10)
    started = time.perf_counter()
    with pytest.raises(TemplateLimitError, match=r"is 10\.0 MB, far more than any real template"):
        JinjaChatFormat(source, TOKENS)
    assert time.perf_counter() - started < 0.1
    fmt = chat_format_for(architecture="gemma3", chat_template=source, tokens=TOKENS, is_base_model=False)
    assert "10.0 MB" in fmt.name and fmt.render(CONVERSATION) == GemmaTurnFormat().render(CONVERSATION)


def test_deep_nesting_is_refused_while_compiling() -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateLimitError, match="nests too deeply to compile"):
        JinjaChatFormat(deeply_nested_template(), TOKENS)
    with pytest.raises(TemplateLimitError, match="too complex to compile"):
        JinjaChatFormat("{% for a in b %}" * 30 + "{% endfor %}" * 30, TOKENS)  # Python's 20 nested blocks
    assert time.perf_counter() - started < 2


def test_compiling_is_bounded_in_time() -> None:
    """The largest template Hearth accepts, built to be slow to compile, is stopped at the time limit."""
    slow = "{% set x = a ~ b %}" * (LIMITS.template_chars // 19)
    limits = RenderLimits(seconds=0.05, watchdog_grace_s=0.0)
    with pytest.raises(TemplateLimitError, match="took more than 0.05 s to compile"):
        SandboxedTemplate(slow, limits=limits)


def test_raise_exception_is_the_templates_own_refusal_not_a_reason_to_set_it_aside() -> None:
    fmt = chat_format_for(architecture="gemma3", chat_template=REAL_TEMPLATES["gemma"], tokens=TOKENS,
                          is_base_model=False)
    with pytest.raises(ChatTemplateError, match="System role not supported"):
        fmt.render(CONVERSATION)
    assert fmt.name == "the model's chat template"


def test_the_engine_process_sets_a_hostile_template_aside_and_still_answers(tmp_path: Path) -> None:
    """A real GGUF carrying an escape, loaded by the real engine process: Hearth's Gemma turns, a reply, no file."""
    from inference.engine import SamplingParams
    from inference.gguf_info import read_gguf_info
    from inference.process_engine import ProcessEngine
    from tests.bad_inputs.gguf_doc import STRING, parse
    from tests.gguf_factory import write_random_gemma3
    from tests.inference.conftest import cpu_plan

    canary = tmp_path / "canary"
    plain = write_random_gemma3(tmp_path / "plain-gemma3-it.gguf")
    hostile = tmp_path / "hostile-gemma3-it.gguf"
    template = escape_templates(canary)["cve_2024_34359_catch_warnings"]
    hostile.write_bytes(parse(plain.read_bytes()).set("tokenizer.chat_template", STRING, template).to_bytes())
    engine = ProcessEngine(cpu_plan())
    try:
        engine.load(read_gguf_info(hostile))
        assert engine.chat_format_name.startswith(
            "Gemma turns, Hearth's own format (the model's chat template was set aside: it tried to use '__class__'")
        stream = engine.stream_chat(CONVERSATION, params=SamplingParams(seed=1, max_tokens=8), cancel=threading.Event())
        "".join(stream)
        assert stream.stats.completion_tokens > 0
    finally:
        engine.close()
    assert not canary.exists()


# ------------------------------------------------------------------ the watchdog


def _spin_for_ever() -> None:
    while True:
        pass


def test_the_watchdog_stops_python_code_that_no_hook_sees() -> None:
    started = time.monotonic()
    with pytest.raises(_TimeUp):
        _run_with_watchdog(_spin_for_ever, 0.1, 5.0, None)
    assert time.monotonic() - started < 1.0


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_watchdog_fires_again_when_its_exception_lands_in_a_gc_callback() -> None:
    """Python only reports an exception raised in a garbage-collector callback: the watchdog must not stop at one.

    This is how CI once saw a compile run past its limit: the exception landed
    in a test library's gc callback while Jinja's compiler was allocating.
    """
    landed_in_callback = []

    def slow_callback(phase: str, info: dict) -> None:
        if phase == "start":
            until = time.monotonic() + 0.3
            try:
                while time.monotonic() < until:
                    pass
            except _TimeUp:
                landed_in_callback.append(True)
                raise

    def collect_then_spin() -> None:
        gc.collect()
        until = time.monotonic() + 2.0  # a bound, so that a watchdog firing only once fails instead of hanging
        while time.monotonic() < until:
            pass

    gc.callbacks.append(slow_callback)
    started = time.monotonic()
    try:
        with pytest.raises(_TimeUp):
            _run_with_watchdog(collect_then_spin, 0.05, 5.0, None)
    finally:
        gc.callbacks.remove(slow_callback)
    assert landed_in_callback and time.monotonic() - started < 1.0


def test_the_watchdog_stops_a_long_filter_in_a_real_template() -> None:
    """One wordwrap call runs in Python, outside every hook, for most of a second: the watchdog ends it."""
    source = "{{ ('a' * 1000000)|wordwrap(30)|length }}"
    started = time.monotonic()
    assert SandboxedTemplate(source).render(messages=[]) == "1033333"  # within the default 2 s
    whole = time.monotonic() - started
    # A limit well under half the render, so stopping (about 50 ms after the limit) still shows on a fast CPU.
    template = SandboxedTemplate(source, limits=RenderLimits(seconds=0.05, watchdog_grace_s=0.0))
    started = time.monotonic()
    with pytest.raises(TemplateLimitError, match=r"ran for more than 0.05 s"):
        template.render(messages=[])
    assert time.monotonic() - started < whole / 2


def test_the_watchdog_calls_on_hang_when_a_c_call_will_not_end() -> None:
    hung = threading.Event()
    with pytest.raises(_TimeUp):
        _run_with_watchdog(lambda: time.sleep(1.0), 0.05, 0.2, hung.set)  # one C call: nothing lands until it returns
    assert hung.is_set()


def test_a_render_that_finishes_in_time_leaves_nothing_behind() -> None:
    template = SandboxedTemplate(REAL_TEMPLATES["chatml"])
    for _ in range(50):
        template.render(messages=CONVERSATION, add_generation_prompt=True)
    time.sleep(0.3)  # past the watchdog's time: no exception may land now
    assert not [t for t in threading.enumerate() if t.name == "hearth-template-watchdog"]


# ------------------------------------------------------------------ figures


@pytest.mark.slow
def test_template_figures() -> None:
    figures = template_figures()
    assert figures["ssti_canaries_created"] == 0
    assert figures["ssti_escapes_live_unsandboxed"] == figures["ssti_escapes_tried"] == figures["ssti_refused"]
    assert figures["ssti_leaks"] == 0 and figures["ssti_leaks_live_unsandboxed"] == figures["ssti_leaks_tried"]
    assert figures["runaways_stopped"] == f"{len(RUNAWAY_TEMPLATES)}/{len(RUNAWAY_TEMPLATES)}"
    assert figures["template_limit_ms"] < STOPPED_WITHIN_S * 1000
    assert figures["fallback_works"]
