"""Each ASGI guard on its own, driven with hand-made scopes (no server, no model)."""

from __future__ import annotations

import asyncio
import json

import pytest

from inference.api.guards import BearerAuth, BodyLimit, HostGuard, OriginGuard, host_name, is_loopback_origin

TOKEN = "test-token-0123456789"


async def _inner(scope, receive, send) -> None:
    """The app behind a guard: reads the whole body, answers 200 with its length."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def call(guard, headers: dict[str, str], body_chunks: tuple[bytes, ...] = (b"",)) -> tuple[int, dict, bytes, int]:
    """Run ``guard`` on one request: the status, response headers, body, and how many times it read the body."""
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]}
    chunks = list(body_chunks)
    sent: list[dict] = []
    read = 0

    async def receive():
        nonlocal read
        read += 1
        body = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message):
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body, read


def error_of(body: bytes) -> dict:
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


# ------------------------------------------------------------------ Host

@pytest.mark.parametrize("host", ["localhost", "localhost:8765", "127.0.0.1", "127.0.0.1:1", "[::1]", "[::1]:8765",
                                  "LOCALHOST:8765"])
def test_host_guard_lets_this_computer_in(host: str) -> None:
    status, _, _, _ = call(HostGuard(_inner, bind_host="127.0.0.1"), {"host": host})
    assert status == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "localhost.evil.example", "127.0.0.1.nip.io",
                                  "192.168.1.20:8765", "", "localhost:80@evil"])
def test_host_guard_refuses_other_names_with_421(host: str) -> None:
    status, _, body, read = call(HostGuard(_inner, bind_host="127.0.0.1"), {"host": host} if host else {})
    assert status == 421 and error_of(body)["code"] == "misdirected_request"
    assert read == 0  # refused before the body is read


def test_host_guard_accepts_the_bind_address_and_on_a_wildcard_bind_only_ip_literals() -> None:
    lan = HostGuard(_inner, bind_host="192.168.1.20")
    assert lan.allowed("192.168.1.20:8765") and lan.allowed("localhost") and not lan.allowed("192.168.1.21")
    everywhere = HostGuard(_inner, bind_host="0.0.0.0")
    assert everywhere.allowed("10.0.0.5:8765") and everywhere.allowed("[fe80::1]:8765")
    assert not everywhere.allowed("evil.example:8765")  # DNS rebinding needs a name: names stay refused


def test_host_name_parsing() -> None:
    assert host_name("[::1]:8765") == "::1" and host_name("Example.COM:80") == "example.com"
    assert host_name("localhost") == "localhost"


# ---------------------------------------------------------------- Origin

@pytest.mark.parametrize("origin", ["https://evil.example", "http://evil.example:8765", "null", "file://",
                                    "http://localhost.evil.example", "http://user@localhost", "http://localhost:x",
                                    "chrome-extension://abc"])
def test_origin_guard_refuses_pages_not_on_this_computer(origin: str) -> None:
    status, headers, body, read = call(OriginGuard(_inner), {"origin": origin})
    assert status == 403 and error_of(body)["code"] == "origin_not_allowed" and read == 0
    assert not any(name.startswith("access-control-") for name in headers)


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1", "https://[::1]:8443"])
def test_origin_guard_passes_loopback_origins_and_requests_without_one(origin: str) -> None:
    assert call(OriginGuard(_inner), {"origin": origin})[0] == 200
    assert call(OriginGuard(_inner), {})[0] == 200
    assert is_loopback_origin(origin)


# ------------------------------------------------------------------ auth

def test_auth_refuses_a_missing_or_wrong_token_without_echoing_it() -> None:
    guard = BearerAuth(_inner, token=TOKEN)
    for headers in ({}, {"authorization": "Bearer wrong-token-abc"}, {"authorization": TOKEN},
                    {"authorization": f"Basic {TOKEN}"}, {"authorization": f"Bearer {TOKEN}x"}):
        status, response_headers, body, read = call(guard, headers)
        assert status == 401 and response_headers["www-authenticate"] == "Bearer" and read == 0
        assert error_of(body)["code"] == "invalid_api_key"
        assert b"wrong-token" not in body and TOKEN.encode() not in body


def test_auth_accepts_the_token_whatever_the_scheme_case() -> None:
    guard = BearerAuth(_inner, token=TOKEN)
    assert call(guard, {"authorization": f"Bearer {TOKEN}"})[0] == 200
    assert call(guard, {"authorization": f"bearer  {TOKEN} "})[0] == 200
    assert not guard.authorized("Bearer é")  # non-ASCII is compared as bytes, never raises


def test_auth_needs_a_token() -> None:
    with pytest.raises(ValueError):
        BearerAuth(_inner, token="")


# ------------------------------------------------------------- body size

def test_body_limit_refuses_a_declared_length_over_the_limit_without_reading() -> None:
    status, _, body, read = call(BodyLimit(_inner, max_bytes=100), {"content-length": "101"}, (b"x" * 101,))
    assert status == 413 and error_of(body)["code"] == "request_too_large" and read == 0


def test_body_limit_counts_a_chunked_body_as_it_is_read() -> None:
    chunks = (b"x" * 40,) * 5
    status, _, body, read = call(BodyLimit(_inner, max_bytes=100), {"transfer-encoding": "chunked"}, chunks)
    assert status == 413 and error_of(body)["code"] == "request_too_large"
    assert read == 3  # stopped at the chunk that passed the limit


def test_body_limit_passes_bodies_up_to_the_limit() -> None:
    assert call(BodyLimit(_inner, max_bytes=100), {"content-length": "100"}, (b"x" * 100,))[2] == b"100"
    assert call(BodyLimit(_inner, max_bytes=100), {}, (b"x" * 50, b"x" * 50))[2] == b"100"
    assert call(BodyLimit(_inner, max_bytes=100), {"content-length": "12abc"})[0] == 400
