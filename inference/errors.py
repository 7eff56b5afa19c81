"""Errors raised by inference, and the one place that turns any error into a sentence."""

from __future__ import annotations

import errno


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


def describe_error(exc: BaseException) -> str:
    """A sentence a person understands for any error Hearth meets.

    Hearth's own errors already carry such a sentence; common system errors
    get one here; anything else is named and pointed to the log file.
    """
    from model_store.errors import ModelStoreError  # core packages share one wording

    if isinstance(exc, (InferenceError, ModelStoreError)):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "Your computer ran out of memory. Close other programs or choose a smaller model."
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "The disk is full. Free some space and try again."
    if isinstance(exc, PermissionError):
        return f"Hearth is not allowed to open {exc.filename or 'a file it needs'}."
    return f"Something unexpected went wrong ({type(exc).__name__}: {exc}). Details are in Hearth's log file."
