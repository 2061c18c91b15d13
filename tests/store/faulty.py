"""Helpers for the fault tests: a flespi-like stream that re-sends what was not acknowledged,
and the check that a recording holds every acknowledged message exactly once."""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from app.store.points import PointFilter, iter_points
from app.store.queries import iter_messages, list_sessions
from tests.conftest import HttpReply

T0 = 1_767_225_600
DEVICES = 4


def batch(number: int, size: int = 50, pad: int = 0) -> list[dict]:
    """Messages with a distinct timestamp each, and ``pad`` characters of a parameter that does
    not compress away (so a batch needs the file to grow); the same every time it is built."""
    first = number * size
    return [{"ident": f"d{(first + i) % DEVICES}", "timestamp": T0 + first + i,
             "server.timestamp": T0 + first + i + 0.5, "position.latitude": 50 + (first + i) / 1e5,
             "position.longitude": 10.0,
             **({"pad": _noise(first + i, pad)} if pad else {})} for i in range(size)]


def _noise(seed: int, length: int) -> str:
    blocks = (hashlib.sha256(f"{seed}:{n}".encode()).hexdigest() for n in range(length // 64 + 1))
    return "".join(blocks)[:length]


def names(messages: list[dict]) -> set[tuple[str, float]]:
    return {(m["ident"], float(m["timestamp"])) for m in messages}


class Stream:
    """Posts numbered batches one at a time and remembers which were acknowledged (200)."""

    def __init__(self, post: Callable[[list[dict]], HttpReply], size: int = 50, pad: int = 0) -> None:
        self.post, self.size, self.pad = post, size, pad
        self.acked: set[tuple[str, float]] = set()
        self.replies: list[HttpReply] = []

    def send(self, number: int) -> HttpReply:
        messages = batch(number, self.size, self.pad)
        reply = self.post(messages)
        self.replies.append(reply)
        if reply.status == 200:
            self.acked |= names(messages)
        return reply


def assert_each_once(db: Path, expected: set[tuple[str, float]]) -> None:
    """The file holds exactly ``expected``, each once: raw batches, track chunks and exports."""
    conn = sqlite3.connect(db)
    try:
        raw = Counter((m.message.ident, m.message.ts) for s in list_sessions(conn) for m in iter_messages(conn, s.id))
        assert set(raw) == expected, (len(set(raw) - expected), len(expected - set(raw)))
        assert max(raw.values(), default=1) == 1, "a message stored twice"
        sessions = [s.id for s in list_sessions(conn)]
        points = Counter((p.ident, p.ts) for s in sessions for p in iter_points(conn, PointFilter(s)))
        assert points == raw, "track chunks (and the raw tail) hold each message once"
        chunked = conn.execute("SELECT count(*), count(DISTINCT batch_id || ':' || batch_index) FROM messages"
                               ).fetchone()
        assert chunked[0] == chunked[1]
    finally:
        conn.close()
