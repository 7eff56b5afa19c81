"""Errors raised by inference, all under one root, and how they cross the engine-process boundary.

Every error the package raises derives from :class:`InferenceError`. The
engine process sends one to Hearth by class name and message (:func:`to_wire`)
and Hearth raises the same class again (:func:`from_wire`): only inference
error classes are ever rebuilt, never an arbitrary class the other side names,
and nothing is unpickled. Turning errors into sentences for people is the
GUI's job (``gui/messages.py``).
"""

from __future__ import annotations


class InferenceError(Exception):
    """Root of every error inference raises. Its message is a sentence for the user."""


class ModelFileError(InferenceError):
    """The model file cannot be used."""


class ModelNotFoundError(ModelFileError, FileNotFoundError):
    """The model file does not exist."""


class NotGgufError(ModelFileError, ValueError):
    """The file is not a GGUF model."""


class TruncatedModelError(ModelFileError, ValueError):
    """The GGUF file ends before its data does (an incomplete download or copy)."""


class CorruptModelError(ModelFileError, ValueError):
    """The GGUF header holds values no valid model can have."""


class UnsupportedModelError(ModelFileError, ValueError):
    """The model's architecture is one the engines here cannot run."""


class ModelTooLargeError(ModelFileError, MemoryError):
    """The model cannot fit in this computer's memory; refused before loading."""


class ModelLoadError(InferenceError, RuntimeError):
    """The engine could not load a model file that looked valid."""


class EngineCrashedError(InferenceError, RuntimeError):
    """The engine's process died (an abort inside llama.cpp, out of memory, a crash)."""


class ContextOverflowError(InferenceError, ValueError):
    """The prompt does not fit in the model's context window."""


class GenerationError(InferenceError, RuntimeError):
    """The engine failed while generating a reply."""


class RemoteError(InferenceError):
    """A remote OpenAI-compatible server (a provider) could not give a reply; the message names it."""


class RemoteUnreachableError(RemoteError, ConnectionError):
    """The provider's host name does not resolve, there is no route to it, or connecting timed out."""


class RemoteConnectionRefusedError(RemoteError, ConnectionRefusedError):
    """Nothing listens at the provider's address and port."""


class RemoteTlsError(RemoteError, ConnectionError):
    """The provider's TLS certificate could not be verified."""


class RemoteAuthError(RemoteError, PermissionError):
    """The provider refused the API key (HTTP 401 or 403): wrong or missing."""


class RemoteModelNotFoundError(RemoteError, LookupError):
    """The provider does not serve the chosen model (HTTP 404)."""


class RemoteRateLimitError(RemoteError):
    """The provider asks to slow down (HTTP 429); ``retry_after_s`` is its Retry-After, when given."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RemoteServerError(RemoteError):
    """The provider failed (HTTP 5xx, an error reported mid-reply) or refused the request with another status."""


class RemoteStreamBrokenError(RemoteError, ConnectionError):
    """The reply stream ended without a finish, or the connection dropped mid-reply."""


class RemoteProtocolError(RemoteError, ValueError):
    """The provider's answer is not an OpenAI-compatible reply (malformed JSON, unexpected shape)."""


def wire_types() -> dict[str, type[InferenceError]]:
    """The classes that may cross the engine-process boundary, by name: every inference error class.

    That is :class:`InferenceError` and its subclasses defined in the
    ``inference`` package (the parent imports every module that defines one:
    ``process_engine`` imports the chat formats, and with them the template
    sandbox's errors). Nothing outside the package is ever rebuilt by name.
    """
    found: dict[str, type[InferenceError]] = {}
    waiting: list[type[InferenceError]] = [InferenceError]
    while waiting:
        cls = waiting.pop()
        if cls.__module__.split(".")[0] == "inference":
            found.setdefault(cls.__name__, cls)
        waiting.extend(cls.__subclasses__())
    return found


def to_wire(exc: BaseException) -> tuple[str, str]:
    """``(class name, message)``: what the engine process sends the parent for ``exc``."""
    return type(exc).__name__, str(exc)


def from_wire(type_name: str, message: str, *, default: type[InferenceError]) -> InferenceError:
    """The error :func:`to_wire` described, as its own class when that is an inference error.

    Anything else (a bug, an error of a library the engine uses) becomes
    ``default`` with the other side's class name in its message.
    """
    error_type = wire_types().get(type_name)
    if error_type is not None:
        return error_type(message)
    detail = f"{type_name}: {message}" if message else type_name
    return default(f"The engine failed unexpectedly ({detail}).")
