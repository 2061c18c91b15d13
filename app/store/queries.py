"""Read-side questions about a recording: sessions, messages, rejects.

Everything a front end (CLI, UI, exporters, tests) asks of a recording file goes through here,
so the storage layout (raw batch bodies + packed per-device track rows) stays one module's
business.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import orjson

from app.core.normalize import Message, normalize
from app.core.raw_json import element_bytes
from app.store.codec import decompress_body
from app.store.faults import FileId
from app.store.points import PointFilter, RawCache, unchunked
from app.store.schema import file_of
from app.store.snapshot import read_snapshot


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """One session with the figures a user picks a recording by."""

    id: int
    name: str
    note: str
    started_at: float
    ended_at: float | None
    batches: int
    messages: int
    retries: int
    devices: int
    rejects: int
    first_ts: float | None
    last_ts: float | None
    duplicates: int = 0  # messages received again after they were recorded (stored once)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A recorded message with where and when it arrived."""

    batch_id: int
    index: int
    received_at: float
    message: Message


class MissingBatch(KeyError):
    """The batch asked for is not in this recording (its session deleted, or another file)."""

    def __init__(self, batch_id: int) -> None:
        super().__init__(batch_id)

    def __str__(self) -> str:  # KeyError's would be the quoted repr
        return f"batch {self.args[0]} is not in this recording file"


def list_sessions(conn: sqlite3.Connection) -> list[SessionSummary]:
    """Every session, oldest first, with counts and the device-time span of its data (sessions
    still being imported are left out: an import is all or nothing)."""
    rows = conn.execute(
        """
        SELECT s.id, s.name, s.note, s.started_at, s.ended_at,
               (SELECT count(*) FROM batches b WHERE b.session_id = s.id),
               (SELECT coalesce(sum(count), 0) FROM batches b WHERE b.session_id = s.id),
               (SELECT coalesce(sum(retries), 0) FROM batches b WHERE b.session_id = s.id),
               (SELECT count(DISTINCT ident) FROM tracks t WHERE t.session_id = s.id),
               (SELECT coalesce(sum(count), 0) FROM rejects r WHERE r.session_id = s.id),
               (SELECT min(t_min) FROM tracks t WHERE t.session_id = s.id),
               (SELECT max(t_max) FROM tracks t WHERE t.session_id = s.id),
               (SELECT coalesce(sum(duplicates + retries * count), 0) FROM batches b WHERE b.session_id = s.id),
               s.indexed_batch, (SELECT max(id) FROM batches b WHERE b.session_id = s.id)
        FROM sessions s WHERE s.indexed_batch >= 0 ORDER BY s.id
        """).fetchall()
    return [_with_tail(conn, SessionSummary(*row[:-2]), row[-2], row[-1]) for row in rows]


def _with_tail(conn: sqlite3.Connection, summary: SessionSummary, indexed: int, newest: int | None) -> SessionSummary:
    """``summary`` with its devices and span counting the batches not in chunks yet (the last
    seconds of a session whose chunks the deriver process writes, `store/deriver`)."""
    if newest is None or newest <= indexed:
        return summary
    tail = unchunked(conn, PointFilter(summary.id))
    if not tail:
        return summary
    chunked = {ident for (ident,) in conn.execute("SELECT DISTINCT ident FROM tracks WHERE session_id = ?",
                                                  (summary.id,))}
    times = [r[2] for chunk in tail.values() for r in chunk.rows]
    firsts = [t for t in (summary.first_ts, min(times)) if t is not None]
    lasts = [t for t in (summary.last_ts, max(times)) if t is not None]
    return replace(summary, devices=len(chunked | set(tail)), first_ts=min(firsts), last_ts=max(lasts))


def stored_sizes(conn: sqlite3.Connection) -> dict[int, int]:
    """Bytes each session's batches take in the file (compressed bodies)."""
    return dict(conn.execute("SELECT session_id, sum(length(body)) FROM batches GROUP BY session_id").fetchall())


@dataclass(frozen=True, slots=True)
class SessionList:
    """The session browser's list: every session and its stored size, and the file they were read
    from (`schema.RecordingConnection.file`; None: not known), where a change to one of them
    must be made (`Recorder.rename_session(file=…)`)."""

    sessions: list[SessionSummary]
    sizes: dict[int, int]
    file: FileId | None


def read_sessions(conn: sqlite3.Connection) -> SessionList:
    """The session browser's list, in one snapshot."""
    with read_snapshot(conn):
        return SessionList(list_sessions(conn), stored_sizes(conn), file_of(conn))


def latest_session_id(conn: sqlite3.Connection) -> int | None:
    """The most recent session, which CLI commands use when none is named."""
    row = conn.execute("SELECT max(id) FROM sessions WHERE indexed_batch >= 0").fetchone()  # not one importing
    return None if row[0] is None else int(row[0])


def session_exists(conn: sqlite3.Connection, session_id: int) -> bool:
    """Whether ``session_id`` names a session in this file."""
    return conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is not None


def iter_messages(conn: sqlite3.Connection, session_id: int) -> Iterator[StoredMessage]:
    """Every message of a session in arrival order, normalized again from its raw JSON.

    Re-sent messages were never stored twice (whole batches or single messages), so each
    message appears exactly once.
    """
    cursor = conn.execute(
        "SELECT id, received_at, body FROM batches WHERE session_id = ? ORDER BY id",
        (session_id,))
    for batch_id, received_at, body in cursor:
        for index, raw in enumerate(orjson.loads(decompress_body(body))):
            yield StoredMessage(batch_id, index, received_at, normalize(raw, received_at))


def raw_message(conn: sqlite3.Connection, batch_id: int, index: int) -> Any:
    """The JSON value a device sent, parsed, as stored in its batch."""
    if conn.execute("SELECT 1 FROM batches WHERE id = ?", (batch_id,)).fetchone() is None:
        raise MissingBatch(batch_id)
    return RawCache(conn, size=1).batch(batch_id)[1][index]


def raw_message_bytes(conn: sqlite3.Connection, batch_id: int, index: int) -> bytes:
    """The message byte for byte as the sender wrote it (numbers, key order and escapes as
    received): what the inspector shows as "exactly what the device sent"."""
    row = conn.execute("SELECT body FROM batches WHERE id = ?", (batch_id,)).fetchone()
    if row is None:
        raise MissingBatch(batch_id)
    return element_bytes(decompress_body(row[0]), index)


def batch_body(conn: sqlite3.Connection, batch_id: int) -> bytes:
    """A batch's body as stored: the JSON array of the messages it recorded (what a replay of the
    request re-sends)."""
    row = conn.execute("SELECT body FROM batches WHERE id = ?", (batch_id,)).fetchone()
    if row is None:
        raise MissingBatch(batch_id)
    return decompress_body(row[0])


def list_rejects(conn: sqlite3.Connection, session_id: int | None = None) -> list[dict[str, Any]]:
    """Refused requests (newest last) with status, reason, redacted headers and body.

    A row stands for ``count`` identical refusals from one peer, the first at ``received_at``
    and the last at ``last_at``."""
    sql = ("SELECT id, session_id, received_at, peer, method, path, status, reason, headers,"
           " body, body_bytes, count, coalesce(last_at, received_at) FROM rejects")
    args: tuple[Any, ...] = ()
    if session_id is not None:
        sql += " WHERE session_id = ?"
        args = (session_id,)
    names = ("id", "session_id", "received_at", "peer", "method", "path", "status", "reason",
             "headers", "body", "body_bytes", "count", "last_at")
    out = []
    for row in conn.execute(sql + " ORDER BY id", args):
        item = dict(zip(names, row, strict=True))
        item["headers"] = orjson.loads(item["headers"])
        out.append(item)
    return out
