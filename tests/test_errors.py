"""One error root per package, and inference errors that keep their type across the engine-process boundary."""

from __future__ import annotations

import importlib
import inspect
import multiprocessing
import threading
from pathlib import Path

import pytest

from inference.engine import EngineOptions, ExecutionPlan, SamplingParams
from inference.errors import GenerationError, InferenceError, ModelLoadError, from_wire, to_wire, wire_types
from inference.gguf_info import read_gguf_info
from inference.hardware import CpuFacts
from inference.process_engine import ProcessEngine
from model_store.errors import ModelStoreError
from tests.gguf_factory import write_random_llama

REPO = Path(__file__).resolve().parent.parent
ROOTS = {"inference": InferenceError, "model_store": ModelStoreError}


def exception_classes(package: str) -> list[type[BaseException]]:
    """Every exception class defined in the package's modules (each module imported)."""
    found = []
    for path in sorted((REPO / package).glob("*.py")):
        module = importlib.import_module(f"{package}.{path.stem}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                found.append(cls)
    return found


@pytest.mark.parametrize("package", sorted(ROOTS))
def test_every_error_of_a_package_has_its_root(package: str) -> None:
    classes = exception_classes(package)
    assert ROOTS[package] in classes
    # Private BaseException signals (the template sandbox's stop-the-render ones) are control flow that
    # never leaves their module, like GeneratorExit; every error that can reach a caller has the root.
    errors = [cls for cls in classes if issubclass(cls, Exception) or not cls.__name__.startswith("_")]
    assert [cls.__qualname__ for cls in errors if not issubclass(cls, ROOTS[package])] == []


def test_the_two_roots_are_separate() -> None:
    assert not issubclass(InferenceError, ModelStoreError) and not issubclass(ModelStoreError, InferenceError)


def test_the_edge_has_a_sentence_for_every_error() -> None:
    import errno

    from gui.messages import describe_error
    from inference.errors import ModelNotFoundError
    from model_store.errors import DiskFullError

    assert describe_error(ModelNotFoundError("The model file x.gguf does not exist.")) == \
        "The model file x.gguf does not exist."
    assert describe_error(DiskFullError("Not enough disk space.")) == "Not enough disk space."
    assert "ran out of memory" in describe_error(MemoryError())
    assert "disk is full" in describe_error(OSError(errno.ENOSPC, "No space left on device"))
    assert "Details are in Hearth's log file" in describe_error(KeyError("x"))


def test_every_inference_error_class_can_cross_by_name() -> None:
    defined = [cls for cls in exception_classes("inference") if issubclass(cls, InferenceError)]
    assert sorted(wire_types()) == sorted(cls.__name__ for cls in defined)  # names are unique
    for cls in defined:
        rebuilt = from_wire(*to_wire(cls("A sentence for the user.")), default=GenerationError)
        assert type(rebuilt) is cls and str(rebuilt) == "A sentence for the user."


def test_other_errors_arrive_as_the_default_with_their_name() -> None:
    rebuilt = from_wire(*to_wire(KeyError("n_ctx")), default=ModelLoadError)
    assert type(rebuilt) is ModelLoadError and "KeyError" in str(rebuilt) and "n_ctx" in str(rebuilt)
    # A name the parent does not know as an inference error is never looked up anywhere else.
    assert type(from_wire("SystemExit", "bye", default=GenerationError)) is GenerationError


def _send_each_error(conn, names: list[str]) -> None:
    """In a spawned child: raise each inference error class and send it the way the engine process does."""
    from inference import engine_host
    from inference.errors import wire_types

    for name in names:
        try:
            raise wire_types()[name](f"{name} raised in the engine process.")
        except Exception as exc:  # noqa: BLE001
            engine_host._send_error(conn, 7, exc)
    conn.close()


def test_each_inference_error_raised_in_another_process_arrives_with_its_type_and_message() -> None:
    names = sorted(wire_types())
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_send_each_error, args=(child, names))
    process.start()
    child.close()
    try:
        for name in names:
            reply = parent.recv()
            assert reply[:2] == ("error", 7)
            error = ProcessEngine._rebuild_error(reply, default=GenerationError)
            assert (type(error).__name__, str(error)) == (name, f"{name} raised in the engine process.")
            assert type(error) is wire_types()[name]
    finally:
        process.join(30)
        parent.close()


# Refuses any conversation with a system message, as some models' templates do.
NO_SYSTEM_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ raise_exception('System messages are not supported.') }}{% endif %}"
    "{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}assistant:"
)


@pytest.mark.slow
def test_a_chat_template_error_in_the_engine_process_keeps_its_type(tmp_path: Path) -> None:
    from inference.chat_format import ChatTemplateError

    model = write_random_llama(tmp_path / "no-system.gguf", chat_template=NO_SYSTEM_TEMPLATE)
    plan = ExecutionPlan(engine="llama.cpp", device="CPU", n_threads=min(2, CpuFacts.probe().physical_cores),
                         n_ctx=512, n_gpu_layers=0, reason="test")
    engine = ProcessEngine(plan, options=EngineOptions(state_cache_bytes=0))
    try:
        engine.load(read_gguf_info(model))
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
        stream = engine.stream_chat(messages, params=SamplingParams(max_tokens=4), cancel=threading.Event())
        with pytest.raises(ChatTemplateError, match="System messages are not supported"):
            list(stream)
    finally:
        engine.close()


def test_a_model_file_error_in_the_engine_process_keeps_its_type(tmp_path: Path, tiny_gguf: Path) -> None:
    from inference.errors import NotGgufError

    info = read_gguf_info(tiny_gguf)
    tiny_gguf.write_text("Not a model any more.", encoding="utf-8")  # the engine process reads it again
    plan = ExecutionPlan(engine="llama.cpp", device="CPU", n_threads=1, n_ctx=512, n_gpu_layers=0, reason="test")
    engine = ProcessEngine(plan, options=EngineOptions(state_cache_bytes=0))
    try:
        with pytest.raises(NotGgufError):
            engine.load(info)
    finally:
        engine.close()
