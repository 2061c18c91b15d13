"""Durable recording of batches and rejected requests, written off the event loop.

Every write goes through one dedicated thread that owns the writing connection, so the event
loop stays free to read the next request while SQLite commits (the sqlite3 module releases the
GIL while SQLite works). A batch counts as recorded only once its transaction has committed;
the listener answers 200 after that and not before.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import xxhash
from filelock import FileLock, Timeout

from app.core.normalize import Message, normalize_batch
from app.store.codec import compress_body, decompress_body
from app.store.schema import connect, transaction


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


class RecordingInUse(RuntimeError):
    """Another process is already recording into this file."""


def batch_digest(body: bytes) -> bytes:
    """Identity of a batch body; a re-sent batch has the same one (128-bit, ~30 µs per MB)."""
    return xxhash.xxh3_128_digest(body)


#: Chunks are written when this many messages are waiting, or after FLUSH_SECONDS.
FLUSH_MESSAGES = 20_000
FLUSH_SECONDS = 2.0

TrackRows = dict[str, list[tuple[Any, ...]]]
NAME_KEY = "device.name"


@dataclass(slots=True)
class _ImportState:
    """What an import has written so far (its chunks are written once, at the end)."""

    session_id: int
    groups: TrackRows = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    new: int = 0
    seen: int = 0
    last: int = 0


def track_rows(batch_id: int, messages: list[Message]) -> TrackRows:
    """A batch's messages as packed track rows (see schema.TRACK_COLUMNS), grouped per device."""
    groups: TrackRows = {}
    for index, m in enumerate(messages):
        rows = groups.get(m.ident)
        if rows is None:
            rows = groups[m.ident] = []
        rows.append((batch_id, index, m.ts, m.server_ts, m.lat, m.lon, m.alt, m.speed, m.direction,
                     m.satellites, m.hdop, m.valid, m.flags))
    return groups


def merge_rows(into: TrackRows, more: TrackRows) -> None:
    """Append ``more``'s rows to ``into``, device by device."""
    for ident, rows in more.items():
        existing = into.get(ident)
        if existing is None:
            into[ident] = list(rows)
        else:
            existing.extend(rows)


def _write_chunks(conn: sqlite3.Connection, session_id: int, groups: TrackRows, names: dict[str, str]) -> None:
    conn.executemany(
        "INSERT INTO tracks (session_id, ident, name, n, t_min, t_max, rows) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(session_id, ident, names.get(ident, ""), len(rows), min(r[2] for r in rows), max(r[2] for r in rows),
          orjson.dumps(rows)) for ident, rows in groups.items()])


def _complete_chunks(conn: sqlite3.Connection, session_id: int, groups: TrackRows, names: dict[str, str],
                     through_batch: int) -> None:
    """Write chunks and record that the session is chunked through ``through_batch``, at once."""
    with transaction(conn):
        _write_chunks(conn, session_id, groups, names)
        conn.execute("UPDATE sessions SET indexed_batch = ? WHERE id = ?", (through_batch, session_id))


def device_names(messages: list[Message], into: dict[str, str]) -> None:
    """Remember the latest ``device.name`` each device sent (chunks carry it for exports)."""
    for m in messages:
        name = m.params.get(NAME_KEY)
        if name is not None:
            into[m.ident] = str(name)


class Recorder:
    """Owns one recording file: sessions, batches and rejects, written by a single thread."""

    def __init__(self, path: Path | str, *, sync_full: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One writer per file, whatever path leads to it (a symlink included): the lock is taken
        # on the resolved path, and the OS drops it if this process dies.
        self._lock = FileLock(f"{self.path.resolve()}.lock", thread_local=False)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise RecordingInUse(f"{self.path} is being recorded by another trackmon; choose another "
                                 "file with --db") from None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trackmon-writer")
        self._conn = self._executor.submit(connect, self.path, sync_full=sync_full).result()
        self.session_id: int | None = None
        self._pending: TrackRows = {}  # committed batches whose chunks are not written yet
        self._names: dict[str, str] = {}
        self._pending_count = 0
        self._last_flush = time.monotonic()
        self._executor.submit(self._recover).result()

    def _recover(self) -> None:
        """Write the chunks of batches committed after the last chunk flush (the process died
        before it could). The raw bodies are the truth; chunks are derived from them."""
        conn = self._conn
        behind = conn.execute(
            "SELECT s.id, s.indexed_batch, max(b.id) FROM sessions s JOIN batches b ON b.session_id = s.id "
            "GROUP BY s.id HAVING max(b.id) > s.indexed_batch").fetchall()
        for session_id, indexed, last in behind:
            groups: TrackRows = {}
            names: dict[str, str] = {}
            cursor = conn.execute("SELECT id, received_at, body FROM batches WHERE session_id = ? AND id > ? "
                                  "ORDER BY id", (session_id, indexed))
            for batch_id, received_at, body in cursor.fetchall():
                raw = decompress_body(body)
                messages = normalize_batch(orjson.loads(raw), received_at, raw)
                merge_rows(groups, track_rows(batch_id, messages))
                device_names(messages, names)
            _complete_chunks(conn, session_id, groups, names, last)

    # -- sessions ---------------------------------------------------------------------------
    def start_session(self, name: str = "", *, append: bool = False) -> int:
        """Begin recording into a new session, or into the most recent one with ``append``."""
        self.session_id = self._executor.submit(self._start_session, name, append).result()
        return self.session_id

    def _start_session(self, name: str, append: bool) -> int:
        self._flush_now()
        conn = self._conn
        if self.session_id is not None:  # the session recorded so far ends here
            conn.execute("UPDATE sessions SET ended_at = ? WHERE id = ?", (time.time(), self.session_id))
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
        flush = False
        flagged = sum(1 for m in messages if m.flags)
        try:
            with transaction(conn):
                earlier = conn.execute(
                    "SELECT id FROM batches WHERE digest = ? ORDER BY id LIMIT 1", (digest,)).fetchone()
                if earlier is not None:  # a re-sent batch: count it, store nothing
                    conn.execute("UPDATE batches SET retries = retries + 1 WHERE id = ?", (earlier[0],))
                    return BatchResult(int(earlier[0]), True, len(messages), flagged)
                batch_id = conn.execute(
                    "INSERT INTO batches (session_id, received_at, peer, wire_bytes, count, flagged,"
                    " process_ms, digest, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (session_id, received_at, peer, wire_bytes, len(messages), flagged, process_ms,
                     digest, compress_body(body))).lastrowid
                rows = track_rows(int(batch_id or 0), messages)
                device_names(messages, self._names)
                flush = (self._pending_count + len(messages) >= FLUSH_MESSAGES
                         or time.monotonic() - self._last_flush >= FLUSH_SECONDS)
                if flush:
                    merge_rows(self._pending, rows)
                    self._flush_pending(session_id, int(batch_id or 0))
        except BaseException:
            if flush:  # the chunks went with the rollback; rebuild what is pending from the file
                self._pending.clear()
                self._pending_count = 0
                self._recover()
            raise
        if flush:
            self._pending.clear()
            self._pending_count = 0
            self._last_flush = time.monotonic()
        else:
            merge_rows(self._pending, rows)
            self._pending_count += len(messages)
        return BatchResult(int(batch_id or 0), False, len(messages), flagged)

    def _flush_now(self) -> None:
        """Write whatever chunks are pending, in their own transaction."""
        if not self._pending or self.session_id is None:
            return
        last = self._conn.execute("SELECT max(id) FROM batches WHERE session_id = ?", (self.session_id,)).fetchone()
        with transaction(self._conn):
            self._flush_pending(self.session_id, int(last[0]))
        self._pending.clear()
        self._pending_count = 0
        self._last_flush = time.monotonic()

    def _flush_pending(self, session_id: int, through_batch: int) -> None:
        """Write pending chunks inside the caller's transaction."""
        _write_chunks(self._conn, session_id, self._pending, self._names)
        self._conn.execute("UPDATE sessions SET indexed_batch = ? WHERE id = ?", (through_batch, session_id))

    def rename_session(self, session_id: int, name: str) -> None:
        """Give a session a name."""
        self._executor.submit(self._conn.execute, "UPDATE sessions SET name = ? WHERE id = ?",
                              (name, session_id)).result()

    def set_note(self, session_id: int, note: str) -> None:
        """Attach a free-text note to a session."""
        self._executor.submit(self._conn.execute, "UPDATE sessions SET note = ? WHERE id = ?",
                              (note, session_id)).result()

    def import_session(self, name: str, batches: Iterable[list[Any]]) -> tuple[int, int, int]:
        """Record ``batches`` of raw messages into a new, closed session beside the live one.
        Returns (session id, new messages, messages already recorded).

        ``batches`` is consumed (a file parsed) in the calling thread; the writer thread gets one
        short job per batch, so live batches keep being recorded in between."""
        submit = self._executor.submit
        state = _ImportState(session_id=submit(self._create_import_session, name).result())
        for raws in batches:
            submit(self._import_batch, state, raws).result()
        submit(_complete_chunks, self._conn, state.session_id, state.groups, state.names, state.last).result()
        return state.session_id, state.new, state.seen

    def _create_import_session(self, name: str) -> int:
        now = time.time()
        return int(self._conn.execute("INSERT INTO sessions (name, started_at, ended_at) VALUES (?, ?, ?)",
                                      (name, now, now)).lastrowid or 0)

    def _import_batch(self, state: _ImportState, raws: list[Any]) -> None:
        conn = self._conn
        body = orjson.dumps(raws)
        digest = batch_digest(body)
        if conn.execute("SELECT 1 FROM batches WHERE digest = ?", (digest,)).fetchone():
            state.seen += len(raws)
            return
        now = time.time()
        messages = normalize_batch(raws, now, body)
        state.last = int(conn.execute(
            "INSERT INTO batches (session_id, received_at, peer, wire_bytes, count, flagged, digest, body)"
            " VALUES (?, ?, 'import', ?, ?, ?, ?, ?)",
            (state.session_id, now, len(body), len(raws), sum(1 for m in messages if m.flags), digest,
             compress_body(body))).lastrowid or 0)
        merge_rows(state.groups, track_rows(state.last, messages))
        device_names(messages, state.names)
        state.new += len(raws)

    def delete_session(self, session_id: int) -> None:
        """Remove a session and everything recorded in it."""
        self._executor.submit(self._delete_session, session_id).result()

    def _delete_session(self, session_id: int) -> None:
        if session_id == self.session_id:
            self._flush_now()
        with transaction(self._conn) as conn:
            for table in ("tracks", "batches", "rejects"):
                conn.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        if session_id == self.session_id:
            self.session_id = None

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
            self._flush_now()
            if self.session_id is not None:
                self._conn.execute("UPDATE sessions SET ended_at = ? WHERE id = ?",
                                   (time.time(), self.session_id))
            self._conn.close()
        try:
            self._executor.submit(_close).result()
        finally:
            self._executor.shutdown(wait=True)
            self._lock.release()
