"""Connections that cannot hold the listener hostage: deadlines, a cap, and scrubbed errors.

What aiohttp 3.14 offers and is used as is (handler arguments of `web.Server`):

* ``keepalive_timeout`` — an idle keep-alive connection is closed after it. aiohttp arms the
  same timer when a connection opens and after each response, and it closes the connection
  only while no complete request has arrived, so it also bounds a client that never finishes
  a request line or headers (but only at keep-alive length, 75 s by default);
* ``lingering_time`` — how long the unread rest of a refused body is drained (we answer 401
  before reading a body);
* ``max_line_size``, ``max_field_size``, ``max_headers`` — the size of a request head.

What it does not offer, added here as the smallest thing that works:

* a **header deadline** (`Limits.header_timeout`): from a connection's start, or the first byte
  of its next request, to the moment the request reaches the handler;
* a **cap on open connections** (`Limits.max_connections`, kept below the open-file limit),
  which closes the connection that has waited longest for a request to make room, so slow or
  idle clients cannot lock a valid stream out; when every connection is busy with a request the
  newcomer is closed instead;
* **scrubbed protocol errors**: aiohttp answers a malformed request (e.g. a folded
  ``Authorization`` header) with a text body quoting the offending bytes and logs them with a
  traceback; here the answer is JSON naming only the kind of error, and the log line is short
  and rate-limited (`ratelog`);
* raising the soft ``RLIMIT_NOFILE`` to the hard limit at start.

The body deadlines are the listener's business (`listener._read_body`): it is the one reading.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from app.server.limits import Limits

log = logging.getLogger(__name__)

#: File descriptors kept free for the recording file, its WAL, logs, TLS files, tunnels...
FD_RESERVE = 64

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class ConnectionStats:
    """What the guard did since the listener started (served at ``/status``)."""

    open: int = 0
    busy: int = 0  # connections whose request is being handled
    header_timeouts: int = 0
    evicted: int = 0
    refused: int = 0
    bad_requests: int = 0

    def as_json(self) -> dict[str, int]:
        """The figures as a JSON-ready dict."""
        return {"open": self.open, "busy": self.busy, "header_timeouts": self.header_timeouts, "evicted": self.evicted,
                "refused": self.refused, "bad_requests": self.bad_requests}


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (never lower it); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:  # e.g. above the kernel's nr_open
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    return soft


class ConnectionGuard:
    """The open connections of one server, and the cap on them."""

    def __init__(self, limits: Limits, stats: ConnectionStats, open_files: int | None = None) -> None:
        self.limits = limits
        self.stats = stats
        files = open_files if open_files is not None else resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        room = files - FD_RESERVE if files != resource.RLIM_INFINITY else limits.max_connections
        #: The cap in force: the configured one, or what the open-file limit leaves room for.
        self.max_connections = max(1, min(limits.max_connections, room))
        self._open: dict[GuardedRequestHandler, None] = {}

    def admit(self, handler: GuardedRequestHandler) -> bool:
        """Register a new connection; at the cap, make room or refuse. False = refused."""
        if len(self._open) >= self.max_connections:
            waiting = [h for h in self._open if not h.busy]
            if not waiting:
                self.stats.refused += 1
                log.warning("connection refused: %d connections open, all busy with requests",
                            len(self._open))
                return False
            oldest = min(waiting, key=lambda h: h.waiting_since)
            self.stats.evicted += 1
            log.info("closed a connection idle for %.1f s to make room (cap %d)",
                     asyncio.get_running_loop().time() - oldest.waiting_since, self.max_connections)
            self.forget(oldest)
            oldest.force_close()
        self._open[handler] = None
        self.stats.open = len(self._open)
        return True

    def forget(self, handler: GuardedRequestHandler) -> None:
        """The connection is gone."""
        self._open.pop(handler, None)
        self.stats.open = len(self._open)


class GuardedRequestHandler(RequestHandler):
    """aiohttp's protocol handler with a header deadline, the connection cap and scrubbed errors."""

    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop, guard: ConnectionGuard,
                 **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self.guard = guard
        self.event_loop = loop
        self.busy = False  # a request is being handled (headers in; body being read or answered)
        self.waiting_since = 0.0
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.waiting_since = self.event_loop.time()
        if not self.guard.admit(self):
            self.force_close()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if data and not self.busy and self._header_deadline is None:
            self._arm()  # the first byte of a new request starts its header deadline
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self.guard.forget(self)
        super().connection_lost(exc)

    def request_began(self) -> None:
        """Headers are complete and the handler runs: the header deadline is met."""
        self.busy = True
        self.guard.stats.busy += 1
        self._disarm()

    def request_ended(self) -> None:
        """The handler answered; the connection waits for the next request (keep-alive)."""
        self.busy = False
        self.guard.stats.busy -= 1
        self.waiting_since = self.event_loop.time()

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.event_loop.call_later(self.guard.limits.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if not self.busy:
            self.guard.stats.header_timeouts += 1
            log.info("closed a connection that sent no complete request within %.0f s",
                     self.guard.limits.header_timeout)
            self.force_close()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """Answer a malformed request (or a handler crash) without quoting what was sent."""
        kind = type(exc).__name__ if exc is not None else "error"
        if status >= 500:
            log.error("error handling a request from %s: %s", request.remote, kind, exc_info=exc)
            payload = {"error": "internal_error", "detail": "the listener failed to handle the request"}
        else:
            self.guard.stats.bad_requests += 1
            log.info("malformed request from %s: %s", request.remote, kind)
            payload = {"error": "bad_http", "detail": f"malformed HTTP request ({kind})"}
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error response")
        response = web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")
        response.force_close()
        return response


class GuardedServer(web.Server):
    """aiohttp's low-level server making `GuardedRequestHandler` protocols."""

    def __init__(self, handler: Handler, *, limits: Limits, stats: ConnectionStats, **kwargs: Any) -> None:
        super().__init__(_tracked(handler), **kwargs)
        self.guard = ConnectionGuard(limits, stats)
        self._handler_args = kwargs

    def __call__(self) -> GuardedRequestHandler:
        return GuardedRequestHandler(self, loop=asyncio.get_running_loop(), guard=self.guard,
                                     **self._handler_args)


def _tracked(handler: Handler) -> Handler:
    """``handler`` telling its connection when a request starts and ends."""
    async def tracked(request: web.BaseRequest) -> web.StreamResponse:
        protocol = request.protocol
        guarded = isinstance(protocol, GuardedRequestHandler)
        if guarded:
            protocol.request_began()
        try:
            return await handler(request)
        finally:
            if guarded:
                protocol.request_ended()
    return tracked
