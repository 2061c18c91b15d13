"""The HTTP listener a flespi stream posts to.

A POST is answered 200 only after its batch is committed, so anything acknowledged survives a
crash and anything not acknowledged is re-sent by the stream. Every refused request gets a
specific status with a JSON body ``{"error": code, "detail": ...}`` and is kept in ``rejects``
(bounded and redacted by `reject_capture`). Front ends (the desktop window, the status endpoint)
observe traffic through `RequestEvent` callbacks.

The limits a client meets are in `limits.Limits`; how a body becomes messages is `body`; the
connection-level guards (header deadline, connection cap) are `connections`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import orjson
from aiohttp import web

from app.core.normalize import Message
from app.server import body as bodies
from app.server import gcpause
from app.server.auth import HeaderAuth
from app.server.connections import ConnectionStats
from app.server.keyed_body import KeyedBody, read_keyed
from app.server.limits import Limits
from app.server.poison import Stall, StallWatch
from app.server.refusal import Refused
from app.server.reject_capture import capture, safe_headers
from app.store.faults import RecordingUnavailable
from app.store.recorder import BatchResult, Recorder, batch_digest
from app.store.stuck import StuckBatch

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 64 * 1024 * 1024
#: How much of an oversized body is read to keep a preview with its reject.
OVERSIZE_PREVIEW = 4096
JSON_CONTENT_TYPES = frozenset({"application/json", "text/json", "text/plain", ""})
ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})
STATUS_PATH = "/status"
#: The 503 body for an unexpected failure: no exception text (the sender may be anyone); the
#: reason is in the window and the log.
NOT_RECORDED = {"error": "not_recorded", "detail": "batch not recorded: an internal error (see where trackmon runs); "
                                                   "send it again later"}


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """How the listener answers: where it listens, what it requires, what it accepts."""

    path: str = "/"
    auth: HeaderAuth | None = None
    max_body: int = DEFAULT_MAX_BODY
    messages_path: str = ""
    limits: Limits = field(default_factory=Limits)
    #: Answer 200 to a batch a stalled stream keeps re-sending, keeping it whole as a stuck
    #: batch (see `poison`); changeable at run time through `Listener.stalls.accept`.
    accept_stuck: bool = False

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"path must start with '/', got {self.path!r}")
        if self.path == STATUS_PATH:
            raise ValueError(f"path {STATUS_PATH} is reserved for the status endpoint")
        if self.max_body <= 0:
            raise ValueError("max body size must be positive")


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """One POST as the requests panel shows it: who, what, and how it was answered.

    ``repeats`` is, for a refusal, how many identical refusals its reject row now stands for
    (a burst from one peer is kept as one row with a count)."""

    received_at: float
    peer: str
    path: str
    status: int
    count: int
    wire_bytes: int
    process_ms: float
    reason: str = ""
    batch_id: int | None = None
    duplicate: bool = False
    reject_id: int | None = None
    repeats: int = 1
    # What an inspector shows (like ngrok's): the request's headers (secrets redacted, see
    # reject_capture.safe_headers) and the answer we gave — status above, headers and JSON body.
    request_headers: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""


@dataclass(slots=True)
class ListenerStats:
    """Running totals since the listener started, served at ``/status``."""

    started_at: float = field(default_factory=time.time)
    batches: int = 0
    messages: int = 0
    flagged: int = 0
    retries: int = 0
    duplicates: int = 0  # messages received again after they were recorded (stored once)
    rejects: int = 0
    stuck: int = 0  # batches a stalled stream kept re-sending, accepted as flagged and kept whole
    wire_bytes: int = 0
    last_batch_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict, with uptime computed now."""
        return {
            "uptime_s": round(time.time() - self.started_at, 3),
            "batches": self.batches, "messages": self.messages, "flagged": self.flagged,
            "retries": self.retries, "duplicates": self.duplicates, "rejects": self.rejects, "stuck": self.stuck,
            "bytes": self.wire_bytes,
            "last_batch_at": self.last_batch_at,
        }


#: Returns None, or something to await before the batch is answered (a front end catching up).
BatchCallback = Callable[[RequestEvent, list[Message]], "Awaitable[None] | None"]
RequestCallback = Callable[[RequestEvent], None]


class Listener:
    """Turns requests into recorded batches or rejects; served by `service.ListenerService`."""

    def __init__(self, recorder: Recorder, config: ListenerConfig | None = None) -> None:
        self.recorder = recorder
        self.config = config or ListenerConfig()
        self.stats = ListenerStats()
        self.connections = ConnectionStats()
        self._batch_callbacks: list[BatchCallback] = []
        self._request_callbacks: list[RequestCallback] = []
        self._status_parts: dict[str, Callable[[], Any]] = {}
        #: Notices a stream stuck on one refused batch (and accepts it when told to).
        self.stalls = StallWatch(accept=self.config.accept_stuck)
        # Large bodies: one parsing thread, and a bound on how many are held at once.
        self._parser: ThreadPoolExecutor | None = None
        self._large = asyncio.Semaphore(self.config.limits.large_bodies)

    def on_batch(self, callback: BatchCallback) -> None:
        """Call ``callback(event, messages)`` after each committed batch, with the messages it
        recorded (re-sent ones already recorded are left out)."""
        self._batch_callbacks.append(callback)

    def on_request(self, callback: RequestCallback) -> None:
        """Call ``callback(event)`` after every POST, accepted or not."""
        self._request_callbacks.append(callback)

    def add_status(self, name: str, part: Callable[[], Any]) -> None:
        """Serve ``part()`` under ``name`` in the authorised ``GET /status`` (another source's
        state, such as the MQTT source's, or a stalled stream)."""
        self._status_parts[name] = part

    def close(self) -> None:
        """Stop the parsing thread once its queued work is done (the service calls this when it
        stops; queued work includes freeing batches, which ends a `gcpause` hold)."""
        if self._parser is not None:
            self._parser.shutdown(wait=False)
            self._parser = None

    # -- routing ----------------------------------------------------------------------------
    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Answer one request (the aiohttp handler)."""
        path = request.path
        if request.method == "POST":
            return await self._handle_post(request)
        if path == STATUS_PATH and request.method in ("GET", "HEAD"):
            return _json(200, self.status(authorised=self._authorised(request)))
        if path != self.config.path:  # says nothing about where the stream path is
            return _json(404, {"error": "not_found", "detail": "nothing here"})
        if request.method in ("GET", "HEAD"):
            return _json(200, {"service": "trackmon", "hint": f"POST a JSON array of messages to {path}"})
        return _json(405, {"error": "method_not_allowed",
                           "detail": f"{request.method} is not supported; POST messages here"})

    def _authorised(self, request: web.BaseRequest) -> bool:
        auth = self.config.auth
        return auth is None or auth.check(request.headers) is None

    def status(self, *, authorised: bool = True) -> dict[str, Any]:
        """What ``GET /status`` answers. Without the token (when one is configured) only that
        the listener is alive; with it, live totals and where data is going."""
        if not authorised:
            return {"service": "trackmon", "status": "ok", "auth": True,
                    "uptime_s": round(time.time() - self.stats.started_at, 3)}
        return {**self.stats.as_json(), "session": self.recorder.session_id,
                "path": self.config.path, "auth": self.config.auth is not None,
                "database": str(self.recorder.path), "connections": self.connections.as_json(),
                "recording_problem": self.recorder.problem, "recording_problem_since": self.recorder.problem_since,
                "stalled": self.stalls.status(),
                **{name: part() for name, part in self._status_parts.items()}}

    # -- POST -------------------------------------------------------------------------------
    async def _handle_post(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        received_at = time.time()
        peer = request.remote or ""
        wire_bytes = _declared_length(request)
        config = self.config
        authenticated = config.auth is None
        try:
            if request.path != config.path:
                raise Refused(404, "not_found", f"no listener at {request.path}; the stream path is "
                                                f"{config.path}", detail="nothing here")
            self._check_headers(request)
            authenticated = True
            encoding = request.headers.get("Content-Encoding", "")
            async with self._body_slot(request) as read:
                wire = await self._read_body(request, read)
                wire_bytes = len(wire)
                if bodies.runs_inline(wire_bytes, encoding, config.limits):
                    keyed = self._keyed(wire, encoding)
                    if keyed is not None:  # derived later, by the deriver process
                        return await self._record(request, received_at, peer, started, wire_bytes, partial(
                            self.recorder.record_keyed, received_at=received_at, peer=peer, wire_bytes=wire_bytes,
                            body=bytes(wire), keys=keyed.keys))
                    batch = bodies.read_batch(wire, encoding, received_at, config.limits, config.max_body,
                                              config.messages_path)
                    del wire
                    return await self._record_batch(request, batch, received_at, peer, started, wire_bytes)
                return await self._record_large(request, wire, encoding, received_at, peer, started)
        except Refused as refused:
            return await self._refuse(request, refused, received_at, peer, started, wire_bytes, authenticated)

    async def _record_large(self, request: web.BaseRequest, wire: bytes | bytearray, encoding: str, received_at: float,
                            peer: str, started: float) -> web.StreamResponse:
        """A large or compressed body: parsed in the worker thread, full garbage collections held
        off while its messages are alive, and those messages freed in the worker afterwards (a
        100,000-message list freed at once holds the GIL for tens of milliseconds)."""
        config = self.config
        loop = asyncio.get_running_loop()
        wire_bytes = len(wire)
        gcpause.hold()
        batch = None
        try:
            batch = await loop.run_in_executor(
                self._parsing_thread(), bodies.read_batch, wire, encoding, received_at, config.limits,
                config.max_body, config.messages_path, bodies.yield_gil)
            del wire
            return await self._record_batch(request, batch, received_at, peer, started, wire_bytes)
        finally:
            messages = batch.messages if batch is not None else []
            try:
                loop.run_in_executor(self._parsing_thread(), _free_slowly, messages)
            except RuntimeError:  # the listener was closed meanwhile: free them here
                _free_slowly(messages)

    def _keyed(self, wire: bytes | bytearray, encoding: str) -> KeyedBody | None:
        """The acknowledgement's fast path (`server.keyed_body`), where it applies: the recorder
        derives in its own process, nothing here wants the messages (no window, or a window whose
        live fleet is folded by that process: its batch callbacks get none), the body is a plain
        array as sent. None: the full path."""
        recorder = self.recorder
        if (not recorder.derive_elsewhere or (self._batch_callbacks and recorder.on_frame is None)
                or self.config.messages_path
                or encoding.strip().lower() not in ("", "identity")):
            return None
        return read_keyed(wire, self.config.limits.max_messages)

    async def _record_batch(self, request: web.BaseRequest, batch: bodies.Batch, received_at: float, peer: str,
                            started: float, wire_bytes: int) -> web.StreamResponse:
        return await self._record(request, received_at, peer, started, wire_bytes, partial(
            self.recorder.record_batch, received_at=received_at, peer=peer, wire_bytes=wire_bytes,
            body=batch.stored, messages=batch.messages))

    async def _record(self, request: web.BaseRequest, received_at: float, peer: str, started: float,
                      wire_bytes: int, commit: Callable[..., Awaitable[BatchResult]]) -> web.StreamResponse:
        """Commit a batch (``commit(process_ms=...)``), answer the sender, tell the views."""
        process_ms = (time.perf_counter() - started) * 1000.0
        try:
            result = await commit(process_ms=process_ms)
        except RecordingUnavailable as exc:  # disk full, file gone...: said once, not a traceback per batch
            log.warning("batch not recorded (503): %s", exc)
            # The sender learns why (it shows in flespi's stream log) but not where the file lives.
            reason = str(exc).replace(str(self.recorder.path.parent), "…")
            response = _json(503, {"error": "not_recorded", "detail": f"batch not recorded: {reason}"})
            self._notify(self._answered(request, response, RequestEvent(
                received_at, peer, request.path, 503, 0, wire_bytes, (time.perf_counter() - started) * 1000.0,
                f"not recorded: {exc}")))
            return response
        except Exception:  # anything else: not acknowledged, so re-sent
            log.exception("could not record batch")
            return _json(503, NOT_RECORDED)
        total_ms = (time.perf_counter() - started) * 1000.0
        stats = self.stats
        if result.duplicate:
            stats.retries += 1
        else:
            stats.batches += 1
            stats.messages += result.new
            stats.flagged += result.flagged or 0
            stats.last_batch_at = received_at
        stats.wire_bytes += wire_bytes
        stats.duplicates += result.duplicates
        self.stalls.accepted(request.path)
        reason = ("re-sent batch, already recorded" if result.duplicate else
                  f"{result.duplicates} re-sent messages already recorded" if result.duplicates else "")
        answer = {"accepted": result.count, "batch": result.batch_id, "duplicate": result.duplicate,
                  "duplicates": result.duplicates}
        if result.flagged is not None:  # not known yet when the batch is derived afterwards
            answer["flagged"] = result.flagged
        response = _json(200, answer)
        event = self._answered(request, response, RequestEvent(received_at, peer, request.path, 200, result.count,
                                                               wire_bytes, total_ms, reason, result.batch_id,
                                                               result.duplicate))
        if not result.duplicate:
            for batch_callback in self._batch_callbacks:
                # Only the messages recorded now, in a list of their own: a large batch's list is
                # emptied by the parsing thread afterwards (`_free_slowly`), the views keep theirs.
                behind = batch_callback(event, list(result.messages))
                if behind is not None:  # a front end far behind: the answer waits for it (back-pressure)
                    await behind
        self._notify(event)
        return response

    def _answered(self, request: web.BaseRequest, response: web.Response, event: RequestEvent) -> RequestEvent:
        """``event`` with the request's (redacted) headers and our response, for the inspector."""
        return replace(event, request_headers=safe_headers(request.headers.items(), self.config.auth),
                       response_headers=_response_headers(response), response_body=_response_body(response))

    def _check_headers(self, request: web.BaseRequest) -> None:
        auth = self.config.auth
        if auth is not None:
            reason = auth.check(request.headers)
            if reason is not None:
                raise Refused(401, "unauthorized", reason, b"", _declared_length(request))
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in JSON_CONTENT_TYPES and not content_type.endswith("+json"):
            raise Refused(415, "unsupported_media_type",
                          f"content type {content_type!r} is not JSON; send application/json")
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ENCODINGS:
            raise Refused(415, "unsupported_encoding",
                          f"content encoding {encoding!r} is not supported; use gzip, deflate or none")

    # -- reading the body --------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _body_slot(self, request: web.BaseRequest) -> AsyncIterator[_BodyRead]:
        """A read of this request's body under its deadlines; a large body also holds one of
        the `Limits.large_bodies` slots until it is parsed (taken when it proves large)."""
        limits = self.config.limits
        read = _BodyRead(asyncio.get_running_loop().time() + limits.body_timeout, self._large)
        try:
            yield read
        finally:
            read.release()

    async def _read_body(self, request: web.BaseRequest, read: _BodyRead) -> bytes | bytearray:
        """Read the body as sent, refusing it with 413 once it passes ``max_body`` bytes and with
        408 when it stalls or takes too long. The chunks are joined by the caller's parser."""
        limit = self.config.max_body
        limits = self.config.limits
        declared = request.content_length
        chunks: list[bytes] = []
        large: bytearray | None = None  # a large body grows here, so it is never joined in one go
        size = 0
        try:
            if declared is not None and declared > limit:
                async with read.deadline(limits.body_idle_timeout):
                    preview = await request.content.read(OVERSIZE_PREVIEW)
                raise Refused(413, "too_large", f"body of {declared} bytes exceeds the limit of {limit} bytes",
                              preview, declared)
            if declared is not None and declared > limits.inline_bytes:
                await read.large()
            while True:
                async with read.deadline(limits.body_idle_timeout):
                    chunk = await request.content.readany()
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise Refused(413, "too_large", f"body exceeds the limit of {limit} bytes",
                                  _head(chunks, large), size)
                if large is not None:
                    large += chunk
                    continue
                chunks.append(chunk)
                if size > limits.inline_bytes:
                    if not read.holds_slot:
                        await read.large()
                    # Joining 64 MiB at the end holds the GIL ~100 ms (fresh pages); growing a
                    # buffer chunk by chunk spreads that over the whole read.
                    large = bytearray(b"".join(chunks))
                    chunks = []
        except Refused:
            raise
        except TimeoutError:
            raise Refused(408, "body_timeout", read.timeout_reason(limits), _head(chunks, large), size) from None
        except Exception as exc:  # connection dropped mid-body
            raise Refused(400, "bad_body", f"could not read the body: {type(exc).__name__}",
                          _head(chunks, large), size) from None
        if large is not None:
            return large
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _parsing_thread(self) -> ThreadPoolExecutor:
        if self._parser is None:
            self._parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trackmon-parse")
        return self._parser

    # -- refusing ---------------------------------------------------------------------------
    async def _refuse(self, request: web.BaseRequest, refused: Refused, received_at: float, peer: str,
                      started: float, wire_bytes: int, authenticated: bool) -> web.StreamResponse:
        stall = self.stalls.refused(request.path, refused, authenticated, received_at)
        if self.stalls.should_accept(stall):
            return await self._keep_stuck(request, refused, stall, received_at, peer, started)
        reject = capture(received_at=received_at, peer=peer, method=request.method, raw_path=request.raw_path,
                         headers=request.headers.items(), refused=refused, auth=self.config.auth,
                         authenticated=authenticated)
        row = None
        try:
            row = await self.recorder.record_reject(reject)
        except Exception:  # the refusal still goes out; losing the reject row is logged
            log.exception("could not record rejected request")
        self.stats.rejects += 1
        response = _json(refused.status, {"error": refused.code, "detail": refused.detail})
        if refused.status in (408, 413) or not authenticated:
            response.force_close()  # do not wait for (or drain) the rest of a body we refused
        self._notify(RequestEvent(received_at, peer, reject.path, refused.status, 0,
                                  wire_bytes or reject.body_bytes, (time.perf_counter() - started) * 1000.0,
                                  reject.reason, reject_id=row.id if row else None, repeats=row.count if row else 1,
                                  request_headers=dict(reject.headers), response_headers=_response_headers(response),
                                  response_body=_response_body(response)))
        return response

    async def _keep_stuck(self, request: web.BaseRequest, refused: Refused, stall: Stall, received_at: float,
                          peer: str, started: float) -> web.StreamResponse:
        """Answer 200 to a batch the stream is stuck on, once it is kept whole (see `poison`)."""
        reason = f"stuck batch accepted as flagged (refused {stall.count - 1} times before: {refused.reason})"
        try:
            row = await self.recorder.record_stuck(StuckBatch(
                received_at, peer, request.path, refused.status, refused.reason, stall.count, bytes(refused.body),
                batch_digest(refused.body)))
        except RecordingUnavailable as exc:
            log.warning("stuck batch not kept (503): %s", exc)
            reason = str(exc).replace(str(self.recorder.path.parent), "…")
            return _json(503, {"error": "not_recorded", "detail": f"batch not recorded: {reason}"})
        except Exception:
            log.exception("could not keep a stuck batch")
            return _json(503, NOT_RECORDED)
        log.warning("stream on %s moved on: %s", request.path, reason)
        self.stats.stuck += 1
        self.stalls.accepted(request.path)
        self._notify(RequestEvent(received_at, peer, request.path, 200, 0, refused.body_bytes,
                                  (time.perf_counter() - started) * 1000.0, reason))
        return _json(200, {"accepted": 0, "stuck": row, "detail": reason})

    def _notify(self, event: RequestEvent) -> None:
        for callback in self._request_callbacks:
            callback(event)


class _BodyRead:
    """Deadlines of one body read, and whether it holds a large-body slot."""

    def __init__(self, total_deadline: float, slots: asyncio.Semaphore) -> None:
        self.total_deadline = total_deadline
        self.slots = slots
        self.holds_slot = False
        self.total_expired = False

    def deadline(self, idle: float) -> asyncio.Timeout:
        """A timeout for the next read: ``idle`` seconds, or less if the total deadline is nearer."""
        loop = asyncio.get_running_loop()
        idle_at = loop.time() + idle
        self.total_expired = self.total_deadline <= idle_at
        return asyncio.timeout_at(min(idle_at, self.total_deadline))

    async def large(self) -> None:
        """Take a large-body slot, waiting (within the total deadline) for one to free up."""
        self.total_expired = True
        async with asyncio.timeout_at(self.total_deadline):
            await self.slots.acquire()
        self.holds_slot = True

    def release(self) -> None:
        if self.holds_slot:
            self.slots.release()
            self.holds_slot = False

    def timeout_reason(self, limits: Limits) -> str:
        if self.total_expired:
            return f"the body did not arrive within {limits.body_timeout:g} s"
        return f"no body data for {limits.body_idle_timeout:g} s"


def _head(chunks: list[bytes], large: bytearray | None) -> bytes:
    """The start of what was read so far, for a reject's preview."""
    if large is not None:
        return bytes(large[:OVERSIZE_PREVIEW])
    return b"".join(chunks)[:OVERSIZE_PREVIEW]


def _free_slowly(messages: list[Message], step: int = 2_000) -> None:
    """Drop a batch's messages a slice at a time (worker thread), then let full collections
    run again (see `gcpause`). Anyone else holding a message (the window's fleet) keeps it."""
    try:
        while messages:
            del messages[-step:]
            bodies.yield_gil()
    finally:
        gcpause.release()


def _declared_length(request: web.BaseRequest) -> int:
    try:
        return request.content_length or 0
    except ValueError:
        return 0


def _response_headers(response: web.Response) -> dict[str, str]:
    """The headers we set on ``response`` (aiohttp adds Date, Server, Content-Length on sending)."""
    headers = dict(response.headers.items())
    if response.keep_alive is False:  # force_close(): the connection is closed after it
        headers["Connection"] = "close"
    return headers


def _response_body(response: web.Response) -> bytes:
    return response.body if isinstance(response.body, bytes) else b""


def _json(status: int, payload: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")
