"""Render a stranger's Jinja chat template with limits the template cannot get around.

A GGUF file's ``tokenizer.chat_template`` is code from whoever made the file.
Jinja's immutable sandbox stops it from reaching Python's internals (the
escapes behind CVE-2024-34359), but not from looping for ever or building a
string of many gigabytes. This module adds what the sandbox lacks:

* The source is refused above :attr:`RenderLimits.template_chars` before
  Jinja sees it, and compiling runs under the same clock as rendering
  (Jinja's parser recurses, so deep nesting ends in a ``RecursionError``).
* Before compiling, the template's syntax tree is rewritten so that every
  loop iteration, every piece of output, every ``~`` and every list, tuple
  or dict literal passes through a hook; every call, attribute access,
  filter, test and arithmetic operator already does in a sandbox. Each
  hook takes a step from a per-render budget, checks the clock, and checks
  the size of what is about to be made *before* it is made (``'x' * 10**9``,
  ``|center(10**9)`` and ``'%999999999d'`` are refused without allocating).
  Sizes are "expanded" sizes: a list holding the same list twice counts it
  twice, so shared structure cannot hide a blow-up from ``str()`` or ``==``.
* A watchdog thread raises an exception in the rendering thread when the
  time is up, in case Python code outside the hooks runs long, and again
  every 50 ms until the work ends (Python swallows one that lands in a
  garbage-collector callback); the exception derives from ``BaseException``,
  so nothing in Jinja swallows it, and templates have no ``try``.
* If a render is still stuck well after that (inside one long C call), the
  ``on_hang`` callback runs; in the engine's process it ends the process,
  which the parent reports and restarts (the process is the last boundary).

Escapes raise at once, instead of Jinja's silent empty ``Undefined``, so a
template that even tries is known to be hostile.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import re
import string
import threading
import time
import types
from collections.abc import Callable, Iterable, Mapping, MappingView
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import Namespace, pass_context
from jinja2.visitor import NodeTransformer

from inference.errors import InferenceError

log = logging.getLogger(__name__)


HUNG_EXIT_CODE = 70  # the engine process ends with this when a template render stays stuck


class ChatTemplateError(InferenceError, ValueError):
    """The model's chat template cannot be used.

    ``reason``, when set, is the message as a clause that follows "the model's
    chat template" (e.g. "is broken (…)"), for sentences that say what was done about it.
    """

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason

    @classmethod
    def because(cls, reason: str) -> ChatTemplateError:
        """The error whose message is "The model's chat template <reason>."."""
        return cls(f"The model's chat template {reason}.", reason=reason)


class TemplateLimitError(ChatTemplateError):
    """The template is too big or too complex, or a render ran past a limit (it was stopped)."""


class TemplateEscapeError(ChatTemplateError):
    """The template reached for something outside its sandbox (an attack, or a badly broken template)."""


@dataclass(frozen=True)
class RenderLimits:
    """How much one compile or render may take.

    Output and size caps grow with the conversation (``input_chars``): a
    template repeats each message once or twice, never a thousand times.
    """

    template_chars: int = 64 * 1024  # real templates are a few KB; the slowest 64 KB compile in about a second
    seconds: float = 2.0
    steps: int = 2_000_000  # loop iterations, calls, attribute accesses, filters, outputs
    base_chars: int = 1 << 20  # the largest value or prompt, before adding the conversation's size
    per_input_char: int = 2
    max_int_bits: int = 1 << 16
    max_depth: int = 64  # nesting of lists and dicts inside each other
    watchdog_grace_s: float = 0.25  # the hooks should stop a runaway first; the watchdog is the backstop
    hang_s: float = 10.0  # after the watchdog fired: then ``on_hang``

    def value_chars(self, input_chars: int) -> int:
        """The largest string or (expanded) container a render may hold, and the largest prompt."""
        return self.base_chars + self.per_input_char * input_chars


class _Stop(BaseException):
    """A limit was reached inside a render. A BaseException: no ``except Exception`` in Jinja swallows it."""

    reason = "ran for more than the time Hearth allows and was stopped"

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or self.reason)
        if reason:
            self.reason = reason


class _TimeUp(_Stop):
    """Raised in the rendering thread by the watchdog (an async exception is created from its class)."""


class _Escape(BaseException):
    """The template touched something its sandbox forbids."""


class _Budget:
    """What one render may still spend: steps, time, output and new data."""

    def __init__(self, limits: RenderLimits, input_chars: int) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds
        self.steps = limits.steps
        self.value_cap = limits.value_chars(input_chars)
        self.output_left = 4 * self.value_cap  # every piece of output, captured blocks and macros included
        self.made_left = 8 * self.value_cap  # characters and elements of every new string and container
        self._sizes: dict[int, tuple[Any, int, int]] = {}  # id -> (object kept alive, size, height)

    def step(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise _Stop(f"took more than {self.limits.steps:,} steps and was stopped")
        if time.monotonic() > self.deadline:
            raise _Stop(f"ran for more than {self.limits.seconds:g} s and was stopped")

    def fits(self, size: int) -> None:
        """Refuse making something of ``size`` characters (or elements)."""
        if size > self.value_cap:
            raise _Stop(f"tried to make a text or list of about {size:,} characters (the limit is {self.value_cap:,})")

    def made(self, value: Any) -> Any:
        """Charge a new value to the budget and check its size; returns it."""
        if isinstance(value, str):
            size = len(value)
            self.fits(size)
        elif isinstance(value, (list, tuple, dict, set, frozenset)):
            size = len(value)
            self.measure(value)
        else:
            return value
        self.made_left -= size
        if self.made_left < 0:
            raise _Stop(f"made more than {8 * self.value_cap:,} characters of new text and was stopped")
        return value

    def output(self, value: Any) -> Any:
        size = self.measure(value)
        self.output_left -= size
        if self.output_left < 0:
            raise _Stop(f"wrote more than {4 * self.value_cap:,} characters and was stopped")
        return value

    def measure(self, value: Any) -> int:
        """The size of ``value`` written out, counting shared parts each time; refused above the cap."""
        size = self._measure(value, 0)[0]
        self.fits(size)
        return size

    def _measure(self, value: Any, depth: int) -> tuple[int, int]:
        """(size, nesting height) of ``value``; containers are remembered, so shared parts cost once."""
        if isinstance(value, (str, bytes)):
            return len(value), 0
        if isinstance(value, bool) or value is None or isinstance(value, Undefined):
            return 5, 0
        if isinstance(value, int):
            return value.bit_length() // 3 + 2, 0
        if isinstance(value, (float, complex)):
            return 24, 0
        known = self._sizes.get(id(value))
        if known is not None and known[0] is value:
            return known[1], known[2]
        if depth > self.limits.max_depth:  # also ends a namespace that holds itself
            raise _Stop(f"nested lists or dicts more than {self.limits.max_depth} deep")
        if isinstance(value, Namespace):
            parts: Iterable[Any] = object.__getattribute__(value, "_Namespace__attrs").items()
        elif isinstance(value, Mapping):
            parts = value.items()
        elif isinstance(value, (list, tuple, set, frozenset, MappingView)):
            parts = value
        else:
            return 64, 0  # functions, macros, loop objects, generators: short reprs
        total, height = 2, 0
        for part in parts:
            size, part_height = self._measure(part, depth + 1)
            total += size + 2
            height = max(height, part_height + 1)
            if total > self.value_cap:
                self.fits(total)
            if height > self.limits.max_depth:
                raise _Stop(f"nested lists or dicts more than {self.limits.max_depth} deep")
        self.step()  # one step per container measured: enough to check the clock on big ones
        if not isinstance(value, Namespace):  # the one container a template can change: never remembered
            self._sizes[id(value)] = (value, total, height)
        return total, height


# ---------------------------------------------------------------- the environment


class _Hardened(NodeTransformer):
    """Routes loops, output, ``~`` and literals through the budget's hooks (see the module docstring)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _hook("_hearth_loop", node.iter)
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [_hook("_hearth_out", child) for child in node.nodes]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _hook("_hearth_concat", nodes.List(node.nodes, lineno=node.lineno))

    def visit_List(self, node: nodes.List) -> nodes.Node:
        self.generic_visit(node)
        return _hook("_hearth_value", node)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        self.generic_visit(node)
        return _hook("_hearth_value", node)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        self.generic_visit(node)
        return _hook("_hearth_value", node) if node.ctx == "load" else node


def _hook(name: str, node: nodes.Expr) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


class _HardenedCodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame=None) -> None:
        node = _Hardened().visit(node)
        node.set_environment(self.environment)
        super().visit_Template(node, frame)


_STR_METHODS = frozenset({
    "capitalize", "casefold", "center", "count", "endswith", "find", "format", "index", "isalnum", "isalpha",
    "isascii", "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric", "isprintable", "isspace",
    "istitle", "isupper", "join", "ljust", "lower", "lstrip", "partition", "removeprefix", "removesuffix",
    "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines",
    "startswith", "strip", "swapcase", "title", "upper", "zfill",
})
_NUMBER_ATTRIBUTES = frozenset({"real", "imag", "numerator", "denominator", "is_integer"})
_CONTAINER_METHODS = {dict: frozenset({"items", "keys", "values", "get", "copy"}),
                      list: frozenset({"index", "count", "copy"}), tuple: frozenset({"index", "count"})}
# Filters chat templates use; the rest (urlize, xmlattr, pprint, random…) are left out, which makes a
# template using them fail to compile and fall back to Hearth's own format.
_FILTERS = frozenset({
    "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
    "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "items", "join",
    "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr", "replace", "reverse",
    "round", "safe", "select", "selectattr", "slice", "sort", "string", "striptags", "sum", "title", "tojson",
    "trim", "truncate", "unique", "upper", "wordcount", "wordwrap",
})
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with every hook charging the active render's :class:`_Budget`."""

    code_generator_class = _HardenedCodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self, limits: RenderLimits) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, loader=jinja2.BaseLoader(), optimized=False,
                         extensions=["jinja2.ext.loopcontrols"])
        self.limits = limits
        self.budget = _Budget(limits, 0)
        for name in ("lipsum", "cycler"):  # a text generator, and the classic escape's first step
            self.globals.pop(name, None)
        self.globals["range"] = self._range
        self.filters = {name: _guarded_filter(name, f) for name, f in self.filters.items() if name in _FILTERS}
        self.filters.update(_hearth_out=_output_hook, _hearth_loop=_loop_hook, _hearth_concat=_concat_hook,
                            _hearth_value=_value_hook)
        self.tests = {name: _guarded_test(f) for name, f in self.tests.items()}

    # -- what the sandbox lets through

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if isinstance(obj, str):
            return attr in _STR_METHODS
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return False
        if isinstance(obj, (int, float, complex)):
            return attr in _NUMBER_ATTRIBUTES
        allowed = _CONTAINER_METHODS.get(type(obj))
        return allowed is None or attr in allowed

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise _Escape(f"tried to use {attribute!r} on a {type(obj).__name__!r} value, which its sandbox forbids")

    # -- hooks the sandbox already has

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.budget.step()
        _refuse_private_of_undefined(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.budget.step()
        _refuse_private_of_undefined(obj, argument)
        return super().getitem(obj, argument)

    def call(__self, __context, __obj, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's own signature
        budget = __self.budget
        budget.step()
        if not __self.is_safe_callable(__obj):
            raise _Escape(f"tried to call {type(__obj).__name__}, which its sandbox forbids")
        _check_arguments(budget, args, kwargs)
        if isinstance(__obj, (types.BuiltinMethodType, types.MethodType)) and isinstance(
            getattr(__obj, "__self__", None), str
        ):
            # A str method reached without the sandbox's getattr (e.g. through |attr) is wrapped here too.
            args = _check_str_method(budget, __obj.__self__, __obj.__name__, args, kwargs)
            __obj = __self.wrap_str_format(__obj) or __obj
        return budget.made(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        budget = self.budget
        budget.step()
        _check_binop(budget, operator, left, right)
        return budget.made(self.binop_table[operator](left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        text = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            if value.__name__ == "format_map":
                raise _Escape("used str.format_map, which Hearth does not allow")
            self.budget.fits(_format_size(self.budget, text, args, kwargs))
            return wrapper(*args, **kwargs)

        return checked

    def _range(self, *args: int) -> range:
        rng = range(*args)
        if len(rng) > 100_000:  # Jinja's own MAX_RANGE, as a limit rather than an OverflowError
            raise _Stop(f"asked for a range of {len(rng):,} numbers (the limit is 100,000)")
        return rng


def _refuse_private_of_undefined(obj: Any, name: Any) -> None:
    # ``lipsum.__globals__`` with lipsum gone: still an attempt, though Jinja would only call it undefined.
    if isinstance(obj, Undefined) and isinstance(name, str) and name.startswith("_"):
        raise _Escape(f"tried to use {name!r} on an undefined name, which its sandbox forbids")


# The hooks take the context (where the environment, so the budget, is found); Jinja never evaluates a
# context-taking filter at compile time, outside any budget.
@pass_context
def _output_hook(context, value: Any) -> Any:
    return context.environment.budget.output(value)


@pass_context
def _loop_hook(context, iterable: Any) -> Iterable[Any]:
    budget = context.environment.budget
    for item in iterable:
        budget.step()
        yield item


@pass_context
def _concat_hook(context, parts: list) -> str:
    budget = context.environment.budget
    budget.step()
    budget.fits(sum(budget.measure(part) for part in parts))
    return budget.made("".join(map(str, parts)))


@pass_context
def _value_hook(context, value: Any) -> Any:
    return context.environment.budget.made(value)


def _call_with_pass_arg(function: Callable, context, args: tuple, kwargs: dict) -> Any:
    kind = getattr(getattr(function, "jinja_pass_arg", None), "name", None)
    if kind == "context":
        return function(context, *args, **kwargs)
    if kind == "eval_context":
        return function(context.eval_ctx, *args, **kwargs)
    if kind == "environment":
        return function(context.environment, *args, **kwargs)
    return function(*args, **kwargs)


def _guarded_filter(name: str, function: Callable) -> Callable:
    @pass_context
    def guarded(context, value: Any = None, *args: Any, **kwargs: Any) -> Any:
        budget = context.environment.budget
        budget.step()
        if name in ("join", "sum") and not isinstance(value, (str, list, tuple, dict, Undefined)):
            value = budget.made(list(_loop_hook(context, value)))  # a generator: materialise, counted
        _check_arguments(budget, (value, *args), kwargs)
        _check_filter(budget, name, value, args, kwargs)
        return budget.made(_call_with_pass_arg(function, context, (value, *args), kwargs))

    guarded.__name__ = f"guarded_{name}"
    return guarded


def _guarded_test(function: Callable) -> Callable:
    @pass_context
    def guarded(context, *args: Any, **kwargs: Any) -> Any:
        context.environment.budget.step()
        return _call_with_pass_arg(function, context, args, kwargs)

    return guarded


# ---------------------------------------------------------------- size checks before making things


def _check_arguments(budget: _Budget, args: tuple, kwargs: dict) -> None:
    for arg in (*args, *kwargs.values()):
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > budget.value_cap:
            raise _Stop(f"asked for a size of {arg:,} (the limit is {budget.value_cap:,})")
        budget.measure(arg)


def _check_binop(budget: _Budget, operator: str, left: Any, right: Any) -> None:
    sizeable = (str, list, tuple)
    if operator == "*":
        if isinstance(left, int) and isinstance(right, sizeable):
            left, right = right, left
        if isinstance(left, sizeable) and isinstance(right, int):
            budget.fits(budget.measure(left) * max(right, 0))
        elif isinstance(left, int) and isinstance(right, int):
            _check_bits(budget, left.bit_length() + right.bit_length())
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            _check_bits(budget, left.bit_length() * right)
    elif operator == "+":
        if isinstance(left, sizeable) and isinstance(right, sizeable):
            budget.fits(budget.measure(left) + budget.measure(right))
    elif operator == "%" and isinstance(left, str):
        budget.fits(_printf_size(budget, left, right))


def _check_bits(budget: _Budget, bits: int) -> None:
    if bits > budget.limits.max_int_bits:
        raise _Stop(f"tried to make a number of about {bits:,} bits (the limit is {budget.limits.max_int_bits:,})")


def _printf_size(budget: _Budget, text: str, args: Any) -> int:
    """An upper bound of ``len(text % args)``."""
    fields, widths = 0, 0
    for match in _PRINTF.finditer(text):
        if match.group(3) == "%":
            continue
        fields += 1
        for number in match.group(1, 2):
            if number == "*":
                raise _Stop("used a '*' width in a % format, which Hearth does not allow")
            if number:
                widths += _small_number(budget, number)
    return len(text) + widths + fields * budget.measure(args)


def _format_size(budget: _Budget, text: str, args: tuple, kwargs: dict) -> int:
    """An upper bound of ``len(text.format(*args, **kwargs))``."""
    fields, widths = 0, 0
    for _literal, field, spec, _conversion in string.Formatter().parse(text):
        if field is None:
            continue
        fields += 1
        if spec and "{" in spec:
            raise _Stop("used a nested field in str.format, which Hearth does not allow")
        widths += sum(_small_number(budget, number) for number in re.findall(r"\d+", spec or ""))
    return len(text) + widths + fields * budget.measure((args, kwargs))


def _small_number(budget: _Budget, digits: str) -> int:
    if len(digits) > 9 or int(digits) > budget.value_cap:
        raise _Stop(f"asked for a width of {digits[:12]}… characters (the limit is {budget.value_cap:,})")
    return int(digits)


def _check_str_method(budget: _Budget, text: str, name: str, args: tuple, kwargs: dict) -> tuple:
    """Refuse a str method call whose result would be too big; returns its arguments (a generator made a list)."""
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        budget.fits(max(len(text), args[0]))
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        count = len(text) + 1 if not args[0] else text.count(args[0])
        if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0:
            count = min(count, args[2])
        budget.fits(len(text) + count * max(0, len(args[1]) - len(args[0])))
    elif name == "join" and args:
        items = args[0] if isinstance(args[0], (str, list, tuple)) else budget.made(list(args[0]))
        budget.fits(budget.measure(items) + len(text) * len(items))
        args = (items, *args[1:])
    return args


def _check_filter(budget: _Budget, name: str, value: Any, args: tuple, kwargs: dict) -> None:
    """Refuse a filter whose result would be too big, before it runs."""
    def arg(index: int, key: str, default: Any) -> Any:
        return args[index] if len(args) > index else kwargs.get(key, default)

    size = budget.measure(value)
    if name == "center":
        width = arg(0, "width", 80)
        budget.fits(max(size, width if isinstance(width, int) else 0))
    elif name == "indent":
        width = arg(0, "width", 4)
        per_line = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        lines = str(value).count("\n") + 1 if isinstance(value, str) else size
        budget.fits(size + lines * per_line)
    elif name == "wordwrap":
        width = arg(0, "width", 79)
        wrap = arg(2, "wrapstring", None) or "\n"
        lines = size // max(1, width if isinstance(width, int) else 1) + (str(value).count("\n") + 1)
        budget.fits(size + lines * budget.measure(wrap))
    elif name == "format" and isinstance(value, str):
        budget.fits(_printf_size(budget, value, kwargs or args))
    elif name == "replace" and isinstance(value, str):
        _check_str_method(budget, value, "replace", args[:3], {})
    elif name == "join":
        separator = arg(0, "d", "")
        count = len(value) if isinstance(value, (str, list, tuple, dict)) else 0
        budget.fits(size + count * budget.measure(separator))
    elif name == "sum":
        start = arg(1, "start", 0)
        if not isinstance(start, (int, float)):
            raise _Stop("summed texts or lists, which Hearth does not allow (it takes time that grows squared)")
    elif name == "tojson":
        indent = arg(0, "indent", None)
        if indent is not None and not (isinstance(indent, int) and 0 <= indent <= 16):
            raise _Stop("asked tojson for an indent other than 0 to 16 spaces")
        budget.fits(6 * size)


# ---------------------------------------------------------------- the watchdog


def _raise_in_thread(thread_id: int, exception: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exception)
                                               if exception is not None else ctypes.c_void_p(0))


class _Watchdog:
    """Raises :class:`_TimeUp` in the calling thread after ``seconds``, again and again until it ends.

    The exception is raised again every :attr:`REFIRE_S`, because a single one
    can be swallowed: it may land inside a garbage-collector callback or a
    ``__del__``, where Python only reports it. ``on_hang`` is called if the
    work is still running ``hang_s`` after the first one. Use it through
    :func:`_run_with_watchdog`, which stops the firing where no async
    exception can come in between.
    """

    REFIRE_S = 0.05

    def __init__(self, seconds: float, hang_s: float, on_hang: Callable[[], None] | None) -> None:
        self._seconds = seconds
        self._hang_s = hang_s
        self._on_hang = on_hang
        self._thread_id = threading.get_ident()
        self._running = threading.Lock()  # held while the work runs; released by a C call, so nothing interrupts it
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._fired = False
        self._thread = threading.Thread(target=self._watch, name="hearth-template-watchdog", daemon=True)

    def start(self) -> Callable[[], None]:
        """Start watching; returns the C function that stops the firing (call it first thing in ``finally``)."""
        self._running.acquire()
        self._thread.start()
        return self._running.release

    def finish(self) -> None:
        """After the firing stopped: take back an exception not yet delivered, and wait for the thread."""
        self._finished.set()
        with self._lock:
            if self._fired:
                _raise_in_thread(self._thread_id, None)
        self._thread.join()

    def _watch(self) -> None:
        if self._finished.wait(self._seconds):
            return
        deadline = time.monotonic() + self._hang_s
        while self._fire():
            if self._finished.wait(self.REFIRE_S):
                return
            if time.monotonic() > deadline:
                log.critical("A chat template has been stuck for %.0f s past its limit", self._hang_s)
                if self._on_hang is not None and self._running.locked():
                    self._on_hang()
                return

    def _fire(self) -> bool:
        with self._lock:
            if not self._running.locked():
                return False
            _raise_in_thread(self._thread_id, _TimeUp)
            self._fired = True
            return True


def _run_with_watchdog(work: Callable[[], Any], seconds: float, hang_s: float,
                       on_hang: Callable[[], None] | None) -> Any:
    """Run ``work`` in this thread; :class:`_TimeUp` is raised in it once ``seconds`` have passed."""
    watchdog = _Watchdog(seconds, hang_s, on_hang)
    stop_firing = watchdog.start()
    try:
        return work()
    finally:
        # The first thing here is a call to C: entering ``finally`` and calling it give no async exception a
        # chance to land, so the watchdog can never go on firing into whatever this thread does next.
        stop_firing()
        watchdog.finish()


# ---------------------------------------------------------------- the template


class SandboxedTemplate:
    """A compiled chat template that renders within :class:`RenderLimits`.

    Args:
        source: the template's text (untrusted).
        limits: how much compiling and each render may take.
        on_hang: called (from the watchdog thread) when a render stays stuck
            ``hang_s`` after its time is up; None to only log it.

    Raises:
        TemplateLimitError: the source is too big or too complex to compile in time.
        ChatTemplateError: the source is not a valid template.
    """

    def __init__(self, source: str, *, limits: RenderLimits | None = None,
                 on_hang: Callable[[], None] | None = None) -> None:
        self.limits = limits or RenderLimits()
        self._on_hang = on_hang
        self._lock = threading.Lock()
        if len(source) > self.limits.template_chars:
            raise TemplateLimitError.because(
                f"is {_kilobytes(len(source))}, far more than any real template (Hearth accepts up to "
                f"{_kilobytes(self.limits.template_chars)})"
            )
        self._env = _BoundedSandbox(self.limits)
        self._env.globals["raise_exception"] = _raise_template_error
        self._env.globals["strftime_now"] = _strftime_now
        self._template = self._bounded(lambda: self._env.from_string(source), len(source), compiling=True)

    def render(self, **variables: Any) -> str:
        """Render with ``variables`` (messages, add_generation_prompt, bos_token…).

        Raises:
            TemplateLimitError: the render ran past a limit (it was stopped).
            TemplateEscapeError: the template reached outside its sandbox.
            ChatTemplateError: the template refused the conversation or failed on it.
        """
        input_chars = _input_chars(variables)
        text = self._bounded(lambda: self._template.render(**variables), input_chars, compiling=False)
        if len(text) > self.limits.value_chars(input_chars):
            raise TemplateLimitError.because(f"wrote a prompt of {len(text):,} characters, far more than the "
                                             "conversation")
        return text

    def _bounded(self, work: Callable[[], Any], input_chars: int, *, compiling: bool) -> Any:
        limits = self.limits
        with self._lock:
            self._env.budget = _Budget(limits, input_chars)
            try:
                try:
                    return _run_with_watchdog(work, limits.seconds + limits.watchdog_grace_s, limits.hang_s,
                                              self._on_hang)
                finally:
                    self._env.budget = _Budget(limits, 0)  # drop the render's data
            except _TimeUp:
                what = "took more than {:g} s to compile" if compiling else "ran for more than {:g} s and was stopped"
                raise TemplateLimitError.because(what.format(limits.seconds)) from None
            except _Stop as stop:
                raise TemplateLimitError.because(stop.reason) from None
            except _Escape as escape:
                raise TemplateEscapeError.because(str(escape)) from None
            except SecurityError as exc:
                raise TemplateEscapeError.because(f"tried to do something its sandbox forbids ({exc})") from None
            except ChatTemplateError:
                raise
            except RecursionError:
                what = "nests too deeply to compile" if compiling else "recursed too deeply and was stopped"
                raise TemplateLimitError.because(what) from None
            except MemoryError:
                raise TemplateLimitError.because("ran out of memory and was stopped") from None
            except jinja2.TemplateSyntaxError as exc:
                raise ChatTemplateError.because(f"is broken ({exc})") from exc
            except SyntaxError as exc:  # Python's compiler: e.g. "too many statically nested blocks"
                raise TemplateLimitError.because(f"is too complex to compile ({exc.msg})") from None
            except Exception as exc:  # noqa: BLE001 - any other failure of a stranger's code, as a sentence
                what = "could not be compiled" if compiling else "failed on this conversation"
                raise ChatTemplateError.because(f"{what} ({type(exc).__name__}: {exc})") from exc


def end_process_on_hang() -> None:
    """End this process at once: for the engine's own process, whose parent reports it and starts a fresh one.

    Called from the watchdog thread when a render is stuck inside one long C
    call, which no exception can interrupt.
    """
    os._exit(HUNG_EXIT_CODE)


def _input_chars(variables: Mapping[str, Any]) -> int:
    total = 0
    for message in variables.get("messages") or ():
        for value in message.values() if isinstance(message, Mapping) else ():
            total += len(value) if isinstance(value, str) else 0
    return total


def _kilobytes(chars: int) -> str:
    return f"{chars / 1e6:.1f} MB" if chars >= 1_000_000 else f"{math.ceil(chars / 1024)} KB"


def _raise_template_error(message: Any) -> None:
    text = str(message)
    raise ChatTemplateError(
        f"The model's chat template refused this conversation: {text[:300]}{'…' if len(text) > 300 else ''}"
    )


def _strftime_now(fmt: str) -> str:
    if not isinstance(fmt, str) or len(fmt) > 200:
        raise _Stop("asked for a date format longer than 200 characters")
    return datetime.now().strftime(fmt)
