"""What the API server is told: its token, where it listens, and its limits."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from inference.engine import SamplingParams

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
# Names a client on this computer may put in the Host header, whatever address the server listens on.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class ServerConfig:
    """The API server's settings.

    Args:
        token: the bearer token every request must carry (never logged, echoed or stored here).
        host: the address to listen on; the default keeps the server to this computer.
        port: the port; 0 lets the system choose one (the server then reports it).
        max_body_bytes: the largest request body accepted (413 above it).
        max_tokens_cap: the most tokens one reply may have, and the default when a request names none.
        sampling: what a request that does not set temperature, top-p or seed gets (the user's settings).
    """

    token: str = field(repr=False)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_body_bytes: int = 1 << 20
    max_tokens_cap: int = 4096
    sampling: SamplingParams = SamplingParams()

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("The API server needs a token.")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"Port {self.port} is not a valid port (0 to 65535).")


def is_loopback_host(host: str) -> bool:
    """True when listening on ``host`` keeps the server to this computer (``localhost``, 127.x, ``::1``)."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_wildcard_host(host: str) -> bool:
    """True for an address that listens on every network interface (``0.0.0.0``, ``::``, or empty)."""
    host = host.strip().strip("[]")
    if not host:
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False
