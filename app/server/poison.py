"""A stalled stream: the same refused batch, again and again.

flespi re-sends a batch until it is answered 200 and sends nothing newer meanwhile (one request
in flight; see `stream_client`), so one batch the listener refuses for its content — too many
messages, too deep, not an array of objects, not JSON — stops the whole stream, and only the
reject count grows. This module notices that: a refusal is identified by what was refused (path,
status, error code) and how the body *starts* (an xxh3-128 digest of its first `HEAD_BYTES`):
flespi cuts each attempt from the head of its queue, so a re-send starts with the same message
even when it was cut again and ends elsewhere (see `stream_client`), while a stream that moved on
starts with another. The same refusal coming back `STALL_AFTER` times, each within `STALL_GAP` s
of the previous, is a stall. It ends when any batch on that path is accepted (the stream has
moved on) or the refusal stops coming back.

Which refusals can stall a stream and may be *accepted as flagged* (``--accept-stuck-batches``):
only refusals of an authenticated request for what its body holds — `CONTENT_CODES`. Never auth
failures (401), a wrong path (404), a wrong method or media type (405, 415: a set-up error the
user must fix, and nothing is lost by refusing), timeouts (408: the network, not the batch) or
503 (the recording file; the batch is fine). A body over ``--max-body`` (``too_large``) stalls
the stream too and is reported, but cannot be accepted: it was never read.

Accepted as flagged means: answered 200 so the stream moves on, and the whole body kept,
compressed, in the ``stuck_batches`` table with why it was refused and how often — never in the
tracks, since its messages could not be read as messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import xxhash

from app.server.refusal import Refused

#: Identical refusals in a row that make a stall (the first refusal and two re-sends).
STALL_AFTER = 3
#: How much of the start of a refused body identifies it: within the first message of a flespi
#: batch (~300-1,000 bytes), so a re-cut re-send matches; two different batches that start with
#: the same 256 bytes start with the same message, which means the stream has not moved on.
HEAD_BYTES = 256
#: A re-send later than this after the previous one starts counting again (flespi backs off
#: between re-sends; its pauses are not documented, minutes are assumed).
STALL_GAP = 600.0
#: Refusals for what the body holds: the ones that stall a stream and may be accepted.
CONTENT_CODES = frozenset({"too_many_messages", "too_deep", "not_messages", "unprocessable", "invalid_json",
                           "bad_body"})
#: Stalls that are reported but never accepted (the body was not read whole).
UNREAD_CODES = frozenset({"too_large"})

ADVICE = {
    "too_many_messages": "lower limit_messages in the flespi stream's configuration (or raise the listener's "
                         "--max-messages)",
    "too_large": "lower limit_messages in the flespi stream's configuration (or raise the listener's --max-body)",
    "too_deep": "flatten the stream's message format (or raise the listener's --max-depth)",
    "not_messages": "the stream sends something other than message objects: check its format settings "
                    "(or set the listener's --messages-path)",
    "unprocessable": "the stream sends an unexpected shape: check its format settings (or the listener's "
                     "--messages-path)",
    "invalid_json": "the stream sends bodies that are not JSON: check its format settings",
    "bad_body": "the body cannot be decoded: check the stream's compression setting",
}


@dataclass(frozen=True, slots=True)
class Stall:
    """The batch a stream is stuck on: what was refused, how often, since when, and what to do."""

    path: str
    status: int
    code: str
    reason: str
    body_bytes: int
    digest: bytes
    count: int
    first_at: float
    last_at: float
    acceptable: bool

    @property
    def advice(self) -> str:
        return ADVICE.get(self.code, "check the stream's configuration")

    def text(self) -> str:
        """One paragraph for the window's banner and `record`'s log."""
        return (f"The stream is stuck: the same batch ({self.body_bytes:,} bytes) was refused {self.count} times "
                f"(HTTP {self.status}: {self.reason}). flespi re-sends it forever and sends nothing newer. "
                f"To fix: {self.advice}.")

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "status": self.status, "error": self.code, "reason": self.reason,
                "body_bytes": self.body_bytes, "refusals": self.count, "since": self.first_at,
                "last_at": self.last_at, "advice": self.advice, "acceptable": self.acceptable,
                "text": self.text()}


@dataclass(slots=True)
class _Seen:
    key: tuple[str, int, str, bytes]
    reason: str
    body_bytes: int
    count: int
    first_at: float
    last_at: float


@dataclass(slots=True)
class StallWatch:
    """Counts identical refusals per path; says when one is a stall and whether to accept it.

    ``accept`` (the ``--accept-stuck-batches`` option, or the window's banner button) may be
    changed at any time; it applies to the next re-send."""

    accept: bool = False
    stall_after: int = STALL_AFTER
    gap: float = STALL_GAP
    _last: dict[str, _Seen] = field(default_factory=dict)  # per path: the latest refusal
    _callbacks: list[Callable[[Stall | None], None]] = field(default_factory=list)
    accepted_stuck: int = 0

    def on_change(self, callback: Callable[[Stall | None], None]) -> None:
        """``callback(stall)`` when a stall starts or grows, ``callback(None)`` when it ends."""
        self._callbacks.append(callback)

    @property
    def stall(self) -> Stall | None:
        """The current stall (the most recent, if several paths are stuck), or None."""
        now = time.time()
        stalls = [self._stall(seen) for seen in self._last.values()
                  if seen.count >= self.stall_after and now - seen.last_at <= self.gap]
        if not stalls:
            return None
        return max(stalls, key=lambda s: s.last_at)

    def refused(self, path: str, refused: Refused, authenticated: bool, at: float | None = None) -> Stall | None:
        """Note a refusal; returns the stall it belongs to (None if it is not one, or not yet).
        Refusals that cannot stall a stream (see module doc) are ignored."""
        if not authenticated or refused.code not in CONTENT_CODES | UNREAD_CODES:
            return None
        now = time.time() if at is None else at
        key = (path, refused.status, refused.code, xxhash.xxh3_128_digest(refused.body[:HEAD_BYTES]))
        seen = self._last.get(path)
        if seen is not None and seen.key == key and now - seen.last_at <= self.gap:
            seen.count += 1
            seen.last_at = now
            seen.reason, seen.body_bytes = refused.reason, refused.body_bytes  # the latest cut
        else:
            seen = self._last[path] = _Seen(key, refused.reason, refused.body_bytes, 1, now, now)
        if seen.count < self.stall_after:
            return None
        stall = self._stall(seen)
        self._notify(stall)
        return stall

    def should_accept(self, stall: Stall | None) -> bool:
        """Whether this re-send is to be answered 200 and kept as a stuck batch."""
        return self.accept and stall is not None and stall.acceptable

    def accepted(self, path: str) -> None:
        """A batch on ``path`` was accepted (or a stuck one kept): that stream moved on."""
        if self._last.pop(path, None) is not None and self.stall is None:
            self._notify(None)

    def status(self) -> dict[str, Any] | None:
        """For ``GET /status`` (``stalled``): the current stall, or None."""
        stall = self.stall
        return None if stall is None else {**stall.as_json(), "accepting": self.accept}

    def _stall(self, seen: _Seen) -> Stall:
        path, status, code, digest = seen.key
        return Stall(path, status, code, seen.reason, seen.body_bytes, digest, seen.count, seen.first_at,
                     seen.last_at, code in CONTENT_CODES)

    def _notify(self, stall: Stall | None) -> None:
        for callback in self._callbacks:
            callback(stall)
