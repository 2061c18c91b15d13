"""The client side of a flespi HTTP stream: post batches exactly the way flespi does.

One request in flight; the next batch only after the previous one was answered 200; anything
else (an error status, a refused connection, a timeout) means the same batch is sent again after
a growing pause. The emulator (`trackmon simulate`) and replay (`trackmon replay`) both send
through `StreamSender`, so they test a listener the way the real stream will.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import aiohttp

from app.server.error_words import send_problem


@dataclass(slots=True)
class SendStats:
    """Totals of one sending run, printed by the CLI and read by tests and benchmarks."""

    batches: int = 0
    messages: int = 0
    retries: int = 0
    bytes: int = 0
    ack_ms: list[float] = field(default_factory=list)
    last_error: str = ""


class GiveUp(RuntimeError):
    """A batch was refused more times than allowed; the message says the last answer."""


class StreamSender:
    """Posts pre-encoded JSON batches with flespi's single-request, re-send-until-200 rules."""

    def __init__(self, url: str, headers: Mapping[str, str] | None = None, *,
                 ssl_context: ssl.SSLContext | bool | None = None, timeout: float = 60.0,
                 first_backoff: float = 0.2, max_backoff: float = 30.0,
                 max_attempts: int | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.url = url
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.ssl_context = ssl_context
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.max_attempts = max_attempts
        self.on_error = on_error
        self.stats = SendStats()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> StreamSender:
        connector = aiohttp.TCPConnector(limit=1, ssl=self.ssl_context if self.ssl_context is not None else True)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, body: bytes, count: int) -> None:
        """Deliver one batch; returns only once the receiver answered 200 (or raises GiveUp)."""
        if self._session is None:
            raise RuntimeError("use StreamSender as an async context manager")
        backoff = self.first_backoff
        attempts = 0
        while True:
            attempts += 1
            started = time.perf_counter()
            try:
                async with self._session.post(self.url, data=body, headers=self.headers) as reply:
                    answer = await reply.read()
                    if reply.status == 200:
                        self.stats.ack_ms.append((time.perf_counter() - started) * 1000.0)
                        self.stats.batches += 1
                        self.stats.messages += count
                        self.stats.bytes += len(body)
                        return
                    error = f"HTTP {reply.status}: {answer[:300].decode(errors='replace')}"
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                error = send_problem(exc, self.url)
            self.stats.retries += 1
            if error != self.stats.last_error and self.on_error is not None:
                self.on_error(error)
            self.stats.last_error = error
            if self.max_attempts is not None and attempts >= self.max_attempts:
                raise GiveUp(f"gave up after {attempts} attempts; last answer: {error}")
            await asyncio.sleep(backoff)
            backoff = min(self.max_backoff, backoff * 2)
