"""Durable recording of batches and rejected requests, written off the event loop.

Every write goes through one dedicated thread that owns the writing connection, so the event
loop stays free to read the next request while SQLite commits (the sqlite3 module releases the
GIL while SQLite works). A batch counts as recorded only once its transaction has committed;
the listener answers 200 after that and not before.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import xxhash

from app.core.normalize import Message
from app.store.codec import compress_body
from app.store.schema import connect


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What happened to one batch: its row id, or the earlier batch it duplicated."""

    batch_id: int
    duplicate: bool
    count: int
    flagged: int


@dataclass(frozen=True, slots=True)
class Reject:
    """A request that was refused, kept so the user can see what was sent and why it failed."""

    received_at: float
    peer: str
    method: str
    path: str
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    body_bytes: int


def batch_digest(body: bytes) -> bytes:
    """Identity of a batch body; a re-sent batch has the same one (128-bit, ~30 µs per MB)."""
    return xxhash.xxh3_128_digest(body)


def pack_tracks(messages: list[Message]) -> list[tuple[str, int, float, float, bytes]]:
    """Group a batch's messages per device into packed rows for the ``tracks`` table.

    Returns (ident, count, t_min, t_max, rows_json) per device, in first-seen order.
    """
    groups: dict[str, list[tuple[Any, ...]]] = {}
    for index, m in enumerate(messages):
        rows = groups.get(m.ident)
        if rows is None:
            rows = groups[m.ident] = []
        rows.append((index, m.ts, m.server_ts, m.lat, m.lon, m.alt, m.speed, m.direction,
                     m.satellites, m.hdop, m.valid, m.flags))
    packed = []
    for ident, rows in groups.items():
        times = [row[1] for row in rows]
        packed.append((ident, len(rows), min(times), max(times), orjson.dumps(rows)))
    return packed


class Recorder:
    """Owns one recording file: sessions, batches and rejects, written by a single thread."""

    def __init__(self, path: Path | str, *, sync_full: bool = False) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trackmon-writer")
        self._conn = self._executor.submit(connect, self.path, sync_full=sync_full).result()
        self.session_id: int | None = None

    # -- sessions ---------------------------------------------------------------------------
    def start_session(self, name: str = "", *, append: bool = False) -> int:
        """Begin recording into a new session, or into the most recent one with ``append``."""
        self.session_id = self._executor.submit(self._start_session, name, append).result()
        return self.session_id

    def _start_session(self, name: str, append: bool) -> int:
        conn = self._conn
        if append:
            row = conn.execute("SELECT id FROM sessions ORDER BY id DESC LIMIT 1").fetchone()
            if row is not None:
                conn.execute("UPDATE sessions SET ended_at = NULL WHERE id = ?", (row[0],))
                return int(row[0])
        cursor = conn.execute("INSERT INTO sessions (name, started_at) VALUES (?, ?)",
                              (name, time.time()))
        return int(cursor.lastrowid or 0)

    def _require_session(self) -> int:
        if self.session_id is None:
            raise RuntimeError("start_session() must be called before recording")
        return self.session_id

    # -- batches ----------------------------------------------------------------------------
    async def record_batch(self, *, received_at: float, peer: str, wire_bytes: int, body: bytes,
                           messages: list[Message], process_ms: float) -> BatchResult:
        """Commit one batch (off the loop) and return only once it is durable."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self.write_batch, received_at, peer, wire_bytes, body, messages,
            process_ms)

    def write_batch(self, received_at: float, peer: str, wire_bytes: int, body: bytes,
                    messages: list[Message], process_ms: float) -> BatchResult:
        """Synchronous form of `record_batch`; runs in the writer thread."""
        session_id = self._require_session()
        conn = self._conn
        digest = batch_digest(body)
        flagged = sum(1 for m in messages if m.flags)
        conn.execute("BEGIN IMMEDIATE")
        try:
            earlier = conn.execute(
                "SELECT id FROM batches WHERE digest = ? ORDER BY id LIMIT 1", (digest,)).fetchone()
            if earlier is not None:
                conn.execute("UPDATE batches SET retries = retries + 1 WHERE id = ?", (earlier[0],))
                conn.execute("COMMIT")
                return BatchResult(int(earlier[0]), True, len(messages), flagged)
            batch_id = conn.execute(
                "INSERT INTO batches (session_id, received_at, peer, wire_bytes, count, flagged,"
                " process_ms, digest, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, received_at, peer, wire_bytes, len(messages), flagged, process_ms,
                 digest, compress_body(body))).lastrowid
            conn.executemany(
                "INSERT INTO tracks (session_id, batch_id, ident, n, t_min, t_max, rows)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(session_id, batch_id, *track) for track in pack_tracks(messages)])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return BatchResult(int(batch_id or 0), False, len(messages), flagged)

    # -- rejects ----------------------------------------------------------------------------
    async def record_reject(self, reject: Reject) -> int:
        """Keep a refused request with its reason; returns its row id."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.write_reject, reject)

    def write_reject(self, reject: Reject) -> int:
        """Synchronous form of `record_reject`; runs in the writer thread."""
        cursor = self._conn.execute(
            "INSERT INTO rejects (session_id, received_at, peer, method, path, status, reason,"
            " headers, body, body_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self.session_id, reject.received_at, reject.peer, reject.method, reject.path,
             reject.status, reject.reason, orjson.dumps(reject.headers).decode(), reject.body,
             reject.body_bytes))
        return int(cursor.lastrowid or 0)

    # -- lifetime ---------------------------------------------------------------------------
    def close(self) -> None:
        """Mark the session as ended and release the file."""
        def _close() -> None:
            if self.session_id is not None:
                self._conn.execute("UPDATE sessions SET ended_at = ? WHERE id = ?",
                                   (time.time(), self.session_id))
            self._conn.close()
        self._executor.submit(_close).result()
        self._executor.shutdown(wait=True)
