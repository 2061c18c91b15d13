"""Replaying one request against the listener, as ngrok's inspector does: the same body (as
recorded) to the same listener, and the answer kept for showing.

What cannot be the same: secret header values were never kept (see reject_capture), so a replay
carries this listener's own authorization header instead when asked; hop-by-hop and encoding
headers are left to the client (the recorded body is the decoded JSON). Re-sent messages are
recognised by the recorder, so a replay of an accepted batch never records anything twice.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import aiohttp

from app.server.error_words import send_problem

#: Headers a replay does not copy: the client sets them for the body it actually sends.
NOT_COPIED = frozenset({"host", "content-length", "connection", "content-encoding", "transfer-encoding",
                        "accept-encoding", "keep-alive", "te", "upgrade", "…"})


@dataclass(frozen=True, slots=True)
class Answer:
    """What the listener answered a replay (status 0: no answer; ``error`` says why)."""

    status: int
    headers: dict[str, str]
    body: bytes
    error: str = ""


def replay_headers(original: dict[str, str], auth_header: str | None) -> dict[str, str]:
    """The headers to replay with: the recorded ones minus redacted secrets and hop-by-hop
    headers, plus ``auth_header`` ("Name: value") when given."""
    headers = {name: value for name, value in original.items()
               if name.lower() not in NOT_COPIED and not value.startswith("<redacted")}
    headers.setdefault("Content-Type", "application/json")
    if auth_header:
        name, _, value = auth_header.partition(": ")
        headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
        headers[name] = value
    return headers


async def replay(url: str, body: bytes, headers: dict[str, str], *, ssl_context: ssl.SSLContext | bool | None = None,
                 timeout: float = 30.0) -> Answer:
    """POST ``body`` to ``url`` once and return the answer (never raises for network errors)."""
    connector = aiohttp.TCPConnector(ssl=ssl_context if ssl_context is not None else True)
    try:
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session, \
                session.post(url, data=body, headers=headers) as reply:
            return Answer(reply.status, dict(reply.headers.items()), await reply.read())
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return Answer(0, {}, b"", send_problem(exc, url))
