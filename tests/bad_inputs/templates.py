"""Hostile chat templates, and the figures of how Hearth holds them.

A GGUF file's ``tokenizer.chat_template`` is a stranger's code. The corpus:

- :func:`escape_templates`: known Jinja sandbox escapes (CVE-2024-34359's
  ``warnings.catch_warnings`` walk, ``''.__class__.__mro__``,
  ``cycler.__init__.__globals__``, ``self._TemplateReference__context``,
  ``|attr`` / ``|map`` / ``str.format`` tricks…), each trying to create a
  canary file. Outside a sandbox they work (:func:`live_outside_the_sandbox`
  checks that, so the corpus is not toothless).
- :data:`RUNAWAY_TEMPLATES`: loops that never end in practice, exponential
  macros, strings of gigabytes built in one step or by doubling.
- :func:`huge_template` (10 MB) and :func:`deeply_nested_template`: refused
  before or while compiling.

``python -m tests.bad_inputs.templates`` prints :func:`template_figures` as one JSON line.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import jinja2

from inference.chat_format import (
    ChatTemplateError,
    JinjaChatFormat,
    SpecialTokens,
    TemplateEscapeError,
    TemplateLimitError,
    TranscriptFormat,
    chat_format_for,
)

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "How are you?"},
]

# Each reaches Python's builtins or os and creates CANARY (a file or a folder) with them.
_ESCAPES = {
    "cve_2024_34359_catch_warnings": (
        "{% for x in ().__class__.__base__.__subclasses__() %}{% if 'catch_warnings' == x.__name__ %}"
        "{{ x()._module.__builtins__['open']('CANARY', 'w').close() }}{% endif %}{% endfor %}"
    ),
    "str_mro_subclasses": (
        "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{% if c.__name__ == '_wrap_close' %}"
        "{{ c.__init__.__globals__['mkdir']('CANARY') }}{% endif %}{% endfor %}"
    ),
    "cycler_init_globals": "{{ cycler.__init__.__globals__.os.mkdir('CANARY') }}",
    "joiner_init_globals": "{{ joiner.__init__.__globals__.os.mkdir('CANARY') }}",
    "namespace_init_globals": "{{ namespace.__init__.__globals__.os.mkdir('CANARY') }}",
    "lipsum_globals": "{{ lipsum.__globals__['os'].mkdir('CANARY') }}",
    "template_reference_context": (
        "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.mkdir('CANARY') }}"
    ),
    "attr_filter_chain": (
        "{% for c in (()|attr('\\x5f\\x5fclass\\x5f\\x5f')|attr('\\x5f\\x5fbase\\x5f\\x5f')"
        "|attr('\\x5f\\x5fsubclasses\\x5f\\x5f'))() %}"
        "{% if (c|attr('\\x5f\\x5fname\\x5f\\x5f')) == '_wrap_close' %}"
        "{{ (c|attr('\\x5f\\x5finit\\x5f\\x5f')|attr('\\x5f\\x5fglobals\\x5f\\x5f'))['mkdir']('CANARY') }}"
        "{% endif %}{% endfor %}"
    ),
    "attr_built_from_pieces": (
        "{% set g = '__glo' ~ 'bals__' %}{{ (joiner|attr('__in' ~ 'it__')|attr(g))['os'].mkdir('CANARY') }}"
    ),
    "map_attribute_chain": (
        "{% set g = [joiner.__init__]|map(attribute='__globals__')|first %}{{ g.os.mkdir('CANARY') }}"
    ),
    "format_filter_smuggles_a_call": "{{ '%s'|format(cycler.__init__.__globals__.os.mkdir('CANARY')) }}",
    "loop_object_builtins": (
        "{% for x in [1] %}{{ loop.__init__.__globals__['__builtins__']['open']('CANARY', 'w').close() }}"
        "{% endfor %}"
    ),
    "macro_object_builtins": (
        "{% macro m() %}{% endmacro %}"
        "{{ m._func.__globals__['__builtins__']['open']('CANARY', 'w').close() }}"
    ),
    "raise_exception_globals": (
        "{{ raise_exception.__globals__['__builtins__']['open']('CANARY', 'w').close() }}"
    ),
    "strftime_now_builtins": (
        "{{ strftime_now.__globals__['__builtins__']['open']('CANARY', 'w').close() }}"
    ),
    "conversation_data_mro": (
        "{% for c in messages.__class__.__mro__[1].__subclasses__() %}{% if c.__name__ == '_wrap_close' %}"
        "{{ c.__init__.__globals__['mkdir']('CANARY') }}{% endif %}{% endfor %}"
    ),
    "getitem_instead_of_getattr": (
        "{{ joiner['__init__']['__globals__']['os']['mkdir']('CANARY') }}"
    ),
}
# str.format cannot call anything, but it can read: each shows the os module when it gets out.
_LEAKS = {
    "str_format_reaches_globals": "{{ '{0.__init__.__globals__[os]}'.format(joiner) }}",
    "attr_format_bypass": "{{ ('{0.__init__.__globals__[os]}'|attr('format'))(joiner) }}",
    "format_map_reaches_globals": "{{ '{j.__init__.__globals__[os]}'.format_map({'j': joiner}) }}",
}

RUNAWAY_TEMPLATES = {
    "nested_loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "nested_loops_writing": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "exponential_macro": (
        "{% macro f(n) %}{% if n < 60 %}{{ f(n + 1) }}{{ f(n + 1) }}{% endif %}{% endmacro %}{{ f(0) }}"
    ),
    "endless_recursion": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "sort_in_a_loop": (
        "{% set l = range(100000)|list %}{% for i in range(100000) %}{{ (l|sort)|length }}{% endfor %}"
    ),
    "recursive_loop": "{% for x in [1, 2] recursive %}{{ loop([1, 2]) }}{% endfor %}",
    "string_times_a_billion": "{{ 'x' * 10**9 }}",
    "string_doubling": (
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"
    ),
    "shared_list_doubling": (
        "{% set ns = namespace(s=['x']) %}{% for i in range(64) %}{% set ns.s = [ns.s, ns.s] %}{% endfor %}"
        "{{ ns.s }}"
    ),
    "captured_block_doubling": (
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set t %}{{ ns.s }}{{ ns.s }}{% endset %}"
        "{% set ns.s = t %}{% endfor %}"
    ),
    "center_a_billion": "{{ 'x'|center(1000000000) }}",
    "printf_width": "{{ '%999999999d'|format(1) }}",
    "format_width": "{{ '{:>999999999}'.format(1) }}",
    "replace_amplifies": "{% set s = 'x' * 100000 %}{{ s|replace('', s) }}",
    "number_squaring": "{% set ns = namespace(x=3) %}{% for i in range(64) %}{% set ns.x = ns.x * ns.x %}{% endfor %}",
}


def escape_templates(canary: Path) -> dict[str, str]:
    """The escapes, each creating ``canary`` if it got out."""
    return {name: source.replace("CANARY", canary.as_posix()) for name, source in _ESCAPES.items()}


def huge_template(megabytes: int = 10) -> str:
    """A valid template of ``megabytes`` MB (a plain text block repeated)."""
    return "{{ bos_token }}" + "x" * (megabytes * 1_000_000)


def deeply_nested_template(depth: int = 2_000) -> str:
    """``depth`` nested ``if`` blocks (Jinja's parser recurses once per level)."""
    return "{% if true %}" * depth + "x" + "{% endif %}" * depth


def live_outside_the_sandbox(canary_dir: Path) -> list[str]:
    """The escapes that create their canary when rendered by a plain, unsandboxed Jinja environment.

    Runs the payloads for real (they only create files under ``canary_dir``):
    proof that the corpus holds working attacks.
    """
    live = []
    for name in _ESCAPES:
        canary = canary_dir / f"{name}.plain"
        env = jinja2.Environment()
        env.globals.update(raise_exception=_raise, strftime_now=lambda fmt: fmt)
        try:
            env.from_string(escape_templates(canary)[name]).render(messages=CONVERSATION)
        except Exception:  # noqa: BLE001 - some payloads fail after creating the canary, some before
            pass
        if canary.exists():
            live.append(name)
    return live


def leaks_outside_the_sandbox() -> list[str]:
    """The read-only payloads that show the os module when rendered by a plain Jinja environment."""
    return [name for name, source in _LEAKS.items() if "<module" in jinja2.Environment().from_string(source).render()]


def leak_templates() -> dict[str, str]:
    """Payloads that only read (str.format cannot call): each shows ``<module 'os'`` if it got out."""
    return dict(_LEAKS)


def _raise(message: str) -> None:
    raise ValueError(message)


def template_figures() -> dict:
    """Hostile templates against Hearth's chat formats, with real Jinja.

    - ssti_escapes_tried / ssti_escapes_live_unsandboxed: payloads, and those
      that work in a plain Jinja environment (the canary appears there).
    - ssti_canaries_created: canaries created through Hearth, at load
      (``chat_format_for``, which renders a sample) or when rendering the
      conversation with the template alone; should be 0.
    - ssti_refused: payloads refused with TemplateEscapeError (by the template
      alone) and set aside for Hearth's own format (by ``chat_format_for``).
    - ssti_leaks_tried / ssti_leaks_live_unsandboxed / ssti_leaks: str.format
      payloads that only read, and those that show the os module outside a
      sandbox and through Hearth (should be 0).
    - template_limit_ms: the longest time any runaway template ran before it
      was stopped; runaway_ms for each. runaways_stopped: those stopped with
      a TemplateLimitError (should be all).
    - huge_template_refused_ms (10 MB), deep_template_refused_ms (2,000
      nested blocks): from the start of loading to the refusal.
    - fallback_works: every set-aside format still rendered the conversation.
    """
    figures: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        created, refused, fallback_ok = 0, 0, True
        for name in _ESCAPES:
            canary = folder / name
            source = escape_templates(canary)[name]
            loaded = chat_format_for(architecture="llama", chat_template=source, tokens=SpecialTokens(),
                                     is_base_model=False)
            fallback_ok &= loaded.render(CONVERSATION) == TranscriptFormat().render(CONVERSATION)
            try:
                JinjaChatFormat(source, SpecialTokens()).render(CONVERSATION)
            except TemplateEscapeError:
                refused += loaded.set_aside_reason != ""
            except ChatTemplateError:
                pass
            created += canary.exists()
        figures["ssti_escapes_tried"] = len(_ESCAPES)
        figures["ssti_escapes_live_unsandboxed"] = len(live_outside_the_sandbox(folder))
        figures["ssti_canaries_created"] = created
        figures["ssti_refused"] = refused
    leaked = 0
    for source in _LEAKS.values():
        try:
            leaked += "<module" in JinjaChatFormat(source, SpecialTokens()).render(CONVERSATION)
        except ChatTemplateError:
            pass
    figures["ssti_leaks_tried"] = len(_LEAKS)
    figures["ssti_leaks_live_unsandboxed"] = len(leaks_outside_the_sandbox())
    figures["ssti_leaks"] = leaked

    runaway_ms, stopped = {}, 0
    for name, source in RUNAWAY_TEMPLATES.items():
        started = time.perf_counter()
        try:
            JinjaChatFormat(source, SpecialTokens()).render(CONVERSATION)
        except TemplateLimitError:
            stopped += 1
        except ChatTemplateError:
            pass
        runaway_ms[name] = round((time.perf_counter() - started) * 1000, 1)
        loaded = chat_format_for(architecture="llama", chat_template=source, tokens=SpecialTokens(),
                                 is_base_model=False)
        fallback_ok &= bool(loaded.set_aside_reason) and loaded.render(CONVERSATION).endswith("Assistant:")
    figures["template_limit_ms"] = max(runaway_ms.values())
    figures["runaways_stopped"] = f"{stopped}/{len(RUNAWAY_TEMPLATES)}"
    figures["runaway_ms"] = runaway_ms

    for key, source in (("huge_template_refused_ms", huge_template()),
                        ("deep_template_refused_ms", deeply_nested_template())):
        started = time.perf_counter()
        loaded = chat_format_for(architecture="llama", chat_template=source, tokens=SpecialTokens(),
                                 is_base_model=False)
        figures[key] = round((time.perf_counter() - started) * 1000, 1)
        fallback_ok &= bool(loaded.set_aside_reason)
    figures["fallback_works"] = fallback_ok
    return figures


if __name__ == "__main__":
    print(json.dumps(template_figures()))
