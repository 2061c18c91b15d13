"""The client side of a flespi HTTP stream: post batches exactly the way flespi does.

One request in flight; the next batch only after the previous one was answered 200; anything
else (an error status, a refused connection, a timeout) means the batch is sent again after a
growing pause. The emulator (`trackmon simulate`) and replay (`trackmon replay`) both send
through `StreamSender`, so they test a listener the way the real stream will.

Documented by flespi (its HTTP stream protocol page and KB): one request at a time, a batch of at
most ``limit_messages`` messages, re-sent until the receiver answers 200. Assumed, not documented:
what a retry holds. flespi keeps a queue and cuts each attempt from its head, so a retry after a
timeout or a 503 starts with the same message but may end elsewhere (more queued meanwhile, or a
smaller cut) — it is not promised to be byte-identical. `send_from` does that: a receiver that
relies on identical retries (a digest of the body) loses or doubles messages against it.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

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
        """Deliver one batch byte for byte; returns only once the receiver answered 200 (or
        raises GiveUp)."""
        backoff = self.first_backoff
        attempts = 0
        while True:
            attempts += 1
            error = await self.attempt(body, count)
            if error is None:
                return
            await self._failed(error, attempts, backoff)
            backoff = min(self.max_backoff, backoff * 2)

    async def send_from(self, queue: deque[Any], limit: int, encode: Callable[[list[Any]], bytes], *,
                        recut: random.Random | None = None, top_up: Callable[[], None] | None = None) -> int:
        """Deliver the head of ``queue`` (at most ``limit`` messages) the way flespi's queue does,
        removing what was acknowledged; returns how many. After a failed attempt ``top_up()``
        may add what was queued meanwhile, and the retry is cut again from the head: up to
        ``limit`` (it grows with the queue), or, with ``recut``, at a random other length — the
        same first message, another last one (see the module doc)."""
        backoff = self.first_backoff
        attempts = 0
        size = min(limit, len(queue))
        while True:
            attempts += 1
            batch = list(islice(queue, size))
            error = await self.attempt(encode(batch), len(batch))
            if error is None:
                for _ in batch:
                    queue.popleft()
                return len(batch)
            await self._failed(error, attempts, backoff)
            backoff = min(self.max_backoff, backoff * 2)
            if top_up is not None:
                top_up()
            longest = min(limit, len(queue))
            size = longest
            if recut is not None and longest > 1:
                size = recut.choice([n for n in range(1, longest + 1) if n != len(batch)])

    async def attempt(self, body: bytes, count: int) -> str | None:
        """One POST: None when answered 200 (counted in `stats`), else what went wrong."""
        if self._session is None:
            raise RuntimeError("use StreamSender as an async context manager")
        started = time.perf_counter()
        try:
            async with self._session.post(self.url, data=body, headers=self.headers) as reply:
                answer = await reply.read()
                if reply.status == 200:
                    self.stats.ack_ms.append((time.perf_counter() - started) * 1000.0)
                    self.stats.batches += 1
                    self.stats.messages += count
                    self.stats.bytes += len(body)
                    return None
                return f"HTTP {reply.status}: {answer[:300].decode(errors='replace')}"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return send_problem(exc, self.url)

    async def _failed(self, error: str, attempts: int, backoff: float) -> None:
        """Count a failed attempt, say it (once per distinct error), give up or pause."""
        self.stats.retries += 1
        if error != self.stats.last_error and self.on_error is not None:
            self.on_error(error)
        self.stats.last_error = error
        if self.max_attempts is not None and attempts >= self.max_attempts:
            raise GiveUp(f"gave up after {attempts} attempts; last answer: {error}")
        await asyncio.sleep(backoff)
