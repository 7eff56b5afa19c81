"""The API's errors, under one root, and their OpenAI-format body.

These are protocol errors (what a client did wrong, or why the server cannot
answer), not inference errors: they never cross the engine-process boundary,
so they do not derive from ``inference.errors.InferenceError`` (whose
subclasses are all rebuilt by name there). Inference errors that reach the
API become an :class:`ApiError` in :func:`from_inference_error`.
"""

from __future__ import annotations

from inference.errors import ContextOverflowError, InferenceError


class ApiError(Exception):
    """Root of the API's errors: an HTTP status and an OpenAI-format error body.

    Args:
        message: a sentence for the client's user.
        status: the HTTP status.
        type: OpenAI's error type (``invalid_request_error``, ``authentication_error``, ``server_error``…).
        code: OpenAI's machine-readable code, or None.
        param: the request field at fault, or None.
    """

    def __init__(self, message: str, *, status: int, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.code = code
        self.param = param

    @property
    def body(self) -> dict:
        """``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}


class ServerStartError(ApiError, OSError):
    """The server could not listen where it was told (the port is taken, the address is not this computer's)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=500, type="server_error", code="server_start_failed")


def from_inference_error(error: Exception) -> ApiError:
    """The API error for a failure the model owner reported: 400 for a prompt too long, else 500."""
    if isinstance(error, ContextOverflowError):
        return ApiError(str(error), status=400, code="context_length_exceeded", param="messages")
    if isinstance(error, InferenceError):
        return ApiError(str(error), status=500, type="server_error", code="engine_failed")
    return ApiError(f"The engine failed unexpectedly ({type(error).__name__}).", status=500, type="server_error",
                    code="engine_failed")
