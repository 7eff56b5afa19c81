"""Hearth's local OpenAI-compatible API server (Starlette on uvicorn), safe by default.

Modules: :mod:`~inference.api.config` (what the server is told), :mod:`~inference.api.guards`
(the ASGI checks every request passes: Host, Origin, token, body size),
:mod:`~inference.api.schemas` (request validation), :mod:`~inference.api.app` (the
endpoints) and :mod:`~inference.api.server` (running it). Nothing else in ``inference``
imports this package, and it imports neither ``model_store`` nor Qt: the token is passed in.

``ApiServer`` and ``build_app`` are imported on first use, so that reading the config
(e.g. :func:`is_loopback_host` in the Settings dialog) does not import Starlette and uvicorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inference.api.config import ServerConfig, is_loopback_host

if TYPE_CHECKING:
    from inference.api.app import build_app
    from inference.api.server import ApiServer

__all__ = ["ApiServer", "ServerConfig", "build_app", "is_loopback_host"]


def __getattr__(name: str):
    if name == "build_app":
        from inference.api.app import build_app

        return build_app
    if name == "ApiServer":
        from inference.api.server import ApiServer

        return ApiServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
