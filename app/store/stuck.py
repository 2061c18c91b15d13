"""Batches a stalled stream kept re-sending, accepted as flagged so it moves on (see
``server/poison.py``): written whole, read back for the user."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from app.store.codec import compress_body, decompress_body


@dataclass(frozen=True, slots=True)
class StuckBatch:
    """One accepted stuck batch: the body as received and why it had been refused."""

    received_at: float
    peer: str
    path: str
    status: int
    reason: str
    refusals: int
    body: bytes
    digest: bytes


def insert_stuck(conn: sqlite3.Connection, session_id: int | None, stuck: StuckBatch) -> int:
    """Write one row inside the caller's transaction; returns its id."""
    return int(conn.execute(
        "INSERT INTO stuck_batches (session_id, received_at, peer, path, status, reason, refusals, body_bytes,"
        " digest, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (session_id, stuck.received_at, stuck.peer, stuck.path, stuck.status, stuck.reason, stuck.refusals,
         len(stuck.body), stuck.digest, compress_body(stuck.body))).lastrowid or 0)


def list_stuck(conn: sqlite3.Connection, session_id: int | None = None) -> list[dict[str, Any]]:
    """Stuck batches kept in a recording (of one session, or all), oldest first, bodies included."""
    sql = ("SELECT id, session_id, received_at, peer, path, status, reason, refusals, body_bytes, body"
           " FROM stuck_batches")
    args: tuple[Any, ...] = ()
    if session_id is not None:
        sql += " WHERE session_id = ?"
        args = (session_id,)
    rows = conn.execute(sql + " ORDER BY id", args).fetchall()
    names = ("id", "session_id", "received_at", "peer", "path", "status", "reason", "refusals", "body_bytes")
    return [dict(zip(names, row[:-1], strict=True)) | {"body": decompress_body(row[-1])} for row in rows]
