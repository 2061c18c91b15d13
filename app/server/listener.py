"""The HTTP listener a flespi stream posts to.

A POST is answered 200 only after its batch is committed, so anything acknowledged survives a
crash and anything not acknowledged is re-sent by the stream. Every refused request gets a
specific status with a JSON body and is kept in ``rejects`` with its reason. Front ends (the
desktop window, the status endpoint) observe traffic through `RequestEvent` callbacks.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from app.core.normalize import Message, normalize_batch
from app.core.payload import PayloadShapeError, locate_messages
from app.server.auth import HeaderAuth, redact_headers
from app.store.recorder import Recorder, Reject

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 64 * 1024 * 1024
#: How much of an oversized body is kept with its reject, so the user can see what it was.
OVERSIZE_PREVIEW = 64 * 1024
JSON_CONTENT_TYPES = frozenset({"application/json", "text/json", "text/plain", ""})
ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})
STATUS_PATH = "/status"


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """How the listener answers: where it listens, what it requires, what it accepts."""

    path: str = "/"
    auth: HeaderAuth | None = None
    max_body: int = DEFAULT_MAX_BODY
    messages_path: str = ""

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"path must start with '/', got {self.path!r}")
        if self.path == STATUS_PATH:
            raise ValueError(f"path {STATUS_PATH} is reserved for the status endpoint")
        if self.max_body <= 0:
            raise ValueError("max body size must be positive")


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """One POST as the requests panel shows it: who, what, and how it was answered."""

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
    wire_bytes: int = 0
    last_batch_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict, with uptime computed now."""
        return {
            "uptime_s": round(time.time() - self.started_at, 3),
            "batches": self.batches, "messages": self.messages, "flagged": self.flagged,
            "retries": self.retries, "duplicates": self.duplicates, "rejects": self.rejects,
            "bytes": self.wire_bytes,
            "last_batch_at": self.last_batch_at,
        }


BatchCallback = Callable[[RequestEvent, list[Message]], None]
RequestCallback = Callable[[RequestEvent], None]


class _Refused(Exception):
    """Internal: a request is being refused with ``status`` and ``reason``."""

    def __init__(self, status: int, code: str, reason: str, body: bytes = b"",
                 body_bytes: int = 0) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason
        self.body, self.body_bytes = body, body_bytes


class Listener:
    """Builds the aiohttp application and turns requests into recorded batches or rejects."""

    def __init__(self, recorder: Recorder, config: ListenerConfig | None = None) -> None:
        self.recorder = recorder
        self.config = config or ListenerConfig()
        self.stats = ListenerStats()
        self._batch_callbacks: list[BatchCallback] = []
        self._request_callbacks: list[RequestCallback] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)

    def on_batch(self, callback: BatchCallback) -> None:
        """Call ``callback(event, messages)`` after each committed batch, with the messages it
        recorded (re-sent ones already recorded are left out)."""
        self._batch_callbacks.append(callback)

    def on_request(self, callback: RequestCallback) -> None:
        """Call ``callback(event)`` after every POST, accepted or not."""
        self._request_callbacks.append(callback)

    # -- routing ----------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if request.method == "POST":
            return await self._handle_post(request)
        if request.method in ("GET", "HEAD"):
            if path == STATUS_PATH:
                return _json(200, self.status())
            if path == self.config.path:
                return _json(200, {"service": "trackmon", "hint":
                                   f"POST a JSON array of messages to {self.config.path}"})
            return _json(404, {"error": "not_found", "detail": f"nothing at {path}"})
        return _json(405, {"error": "method_not_allowed",
                           "detail": f"{request.method} is not supported; POST messages to "
                                     f"{self.config.path}"})

    def status(self) -> dict[str, Any]:
        """What ``GET /status`` answers: live totals and where data is going."""
        return {**self.stats.as_json(), "session": self.recorder.session_id,
                "path": self.config.path, "auth": self.config.auth is not None,
                "database": str(self.recorder.path), "recording_problem": self.recorder.problem,
                "recording_problem_since": self.recorder.problem_since}

    # -- POST -------------------------------------------------------------------------------
    async def _handle_post(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        received_at = time.time()
        peer = request.remote or ""
        wire_bytes = request.content_length or 0
        try:
            if request.path != self.config.path:
                raise _Refused(404, "wrong_path", f"no listener at {request.path}; the stream "
                                                  f"path is {self.config.path}")
            self._check_headers(request)
            wire = await _read_limited(request, self.config.max_body)
            wire_bytes = len(wire)
            body = _decode(wire, request.headers.get("Content-Encoding", ""), self.config.max_body)
            document = _parse_json(body)
            try:
                messages_raw = locate_messages(document, self.config.messages_path)
            except PayloadShapeError as exc:
                raise _Refused(422, "unprocessable", str(exc), body, len(body)) from None
            is_array = type(document) is list and not self.config.messages_path
            messages = normalize_batch(messages_raw, received_at, body if is_array else None)
            stored = body if is_array else orjson.dumps(messages_raw)
        except _Refused as refused:
            return await self._refuse(request, refused, received_at, peer, started, wire_bytes)

        process_ms = (time.perf_counter() - started) * 1000.0
        try:
            result = await self.recorder.record_batch(
                received_at=received_at, peer=peer, wire_bytes=wire_bytes, body=stored,
                messages=messages, process_ms=process_ms)
        except Exception as exc:  # disk full, file locked...: not acknowledged, so re-sent
            log.exception("could not record batch")
            return _json(503, {"error": "not_recorded", "detail": f"batch not recorded: {exc}"})
        total_ms = (time.perf_counter() - started) * 1000.0
        stats = self.stats
        if result.duplicate:
            stats.retries += 1
        else:
            stats.batches += 1
            stats.messages += result.new
            stats.flagged += result.flagged
            stats.last_batch_at = received_at
        stats.wire_bytes += wire_bytes
        stats.duplicates += result.duplicates
        reason = ("re-sent batch, already recorded" if result.duplicate else
                  f"{result.duplicates} re-sent messages already recorded" if result.duplicates else "")
        event = RequestEvent(received_at, peer, request.path, 200, result.count, wire_bytes,
                             total_ms, reason, result.batch_id, result.duplicate)
        if not result.duplicate:
            for batch_callback in self._batch_callbacks:
                batch_callback(event, result.messages)  # only the messages recorded now
        self._notify(event)
        return _json(200, {"accepted": result.count, "batch": result.batch_id,
                           "duplicate": result.duplicate, "duplicates": result.duplicates,
                           "flagged": result.flagged})

    def _check_headers(self, request: web.Request) -> None:
        auth = self.config.auth
        if auth is not None:
            reason = auth.check(request.headers)
            if reason is not None:
                raise _Refused(401, "unauthorized", reason)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in JSON_CONTENT_TYPES and not content_type.endswith("+json"):
            raise _Refused(415, "unsupported_media_type",
                           f"content type {content_type!r} is not JSON; send application/json")
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ENCODINGS:
            raise _Refused(415, "unsupported_encoding",
                           f"content encoding {encoding!r} is not supported; use gzip, deflate "
                           "or none")

    async def _refuse(self, request: web.Request, refused: _Refused, received_at: float,
                      peer: str, started: float, wire_bytes: int) -> web.StreamResponse:
        reject = Reject(received_at, peer, request.method, request.path_qs, refused.status,
                        refused.reason, redact_headers(request.headers, self.config.auth),
                        refused.body, refused.body_bytes)
        reject_id = None
        try:
            reject_id = await self.recorder.record_reject(reject)
        except Exception:  # the refusal still goes out; losing the reject row is logged
            log.exception("could not record rejected request")
        self.stats.rejects += 1
        self._notify(RequestEvent(received_at, peer, request.path, refused.status, 0,
                                  wire_bytes or refused.body_bytes,
                                  (time.perf_counter() - started) * 1000.0, refused.reason,
                                  reject_id=reject_id))
        return _json(refused.status, {"error": refused.code, "detail": refused.reason})

    def _notify(self, event: RequestEvent) -> None:
        for callback in self._request_callbacks:
            callback(event)


async def _read_limited(request: web.Request, limit: int) -> bytes:
    """Read the body as sent, refusing it with 413 once it passes ``limit`` bytes."""
    declared = request.content_length
    chunks: list[bytes] = []
    size = 0
    try:
        if declared is not None and declared > limit:
            preview = await request.content.read(OVERSIZE_PREVIEW)
            raise _Refused(413, "too_large", f"body of {declared} bytes exceeds the limit of "
                                             f"{limit} bytes", preview, declared)
        while True:
            chunk = await request.content.readany()
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                preview = b"".join(chunks)[:OVERSIZE_PREVIEW]
                raise _Refused(413, "too_large", f"body exceeds the limit of {limit} bytes", preview, size)
            chunks.append(chunk)
    except _Refused:
        raise
    except Exception as exc:  # connection dropped mid-body
        raise _Refused(400, "bad_body", f"could not read the body: {exc}",
                       b"".join(chunks)[:OVERSIZE_PREVIEW], size) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _decode(wire: bytes, encoding: str, limit: int) -> bytes:
    """Undo gzip/deflate, never producing more than ``limit`` bytes (a zip bomb gets 413)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return wire
    attempts = (16 + zlib.MAX_WBITS,) if "gzip" in encoding else (zlib.MAX_WBITS, -zlib.MAX_WBITS)
    for wbits in attempts:  # "deflate" is zlib-wrapped per the RFC; some senders use raw deflate
        decoder = zlib.decompressobj(wbits)
        try:
            body = decoder.decompress(wire, limit + 1)
        except zlib.error as exc:
            error = str(exc)
            continue
        if len(body) > limit:
            raise _Refused(413, "too_large", f"body exceeds the limit of {limit} bytes after "
                                             "decompression", body[:OVERSIZE_PREVIEW], len(wire))
        if not decoder.eof:
            raise _Refused(400, "bad_body", f"{encoding} body is truncated",
                           wire[:OVERSIZE_PREVIEW], len(wire))
        return body
    raise _Refused(400, "bad_body", f"cannot decode {encoding} body: {error}", wire[:OVERSIZE_PREVIEW],
                   len(wire))


def _parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        detail = "empty body" if not body.strip() else f"invalid JSON: {exc}"
        raise _Refused(400, "invalid_json", detail, body, len(body)) from None


def _json(status: int, payload: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")
