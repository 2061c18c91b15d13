"""Per-device track chunks, derived from batches of messages.

The raw batch bodies are the truth; the chunks (``tracks`` rows of packed fix columns, see
``schema.TRACK_COLUMNS``) are derived from them and say, through ``sessions.indexed_batch``, up
to which batch they are complete. Three writers derive them the same way, with the functions
here: the recorder as it records (the window's mode), the deriver process (`store/deriver.py`,
``trackmon record``), and start-up recovery for batches committed after the last chunk flush.

Two of those can run at once (a deriver left over from a killed recorder while the next one
recovers), so a session's chunks are committed with a compare-and-set on ``indexed_batch``
(`complete_chunks`): whoever derived from a stale mark writes nothing, and no message gets two
chunk rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.core.normalize import Message, normalize_batch
from app.store.codec import decompress_body
from app.store.schema import transaction

#: Chunks are written when this many messages are waiting, or after FLUSH_SECONDS.
FLUSH_MESSAGES = 20_000
FLUSH_SECONDS = 2.0

TrackRows = dict[str, list[tuple[Any, ...]]]
NAME_KEY = "device.name"
#: ``sessions.indexed_batch`` of a session still being imported (hidden, deleted if left over);
#: the recorder chunks an import itself.
IMPORTING = -1


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


def device_names(messages: list[Message], into: dict[str, str]) -> None:
    """Remember the latest ``device.name`` each device sent (chunks carry it for exports)."""
    for m in messages:
        name = m.params.get(NAME_KEY)
        if name is not None:
            into[m.ident] = str(name)


def write_chunks(conn: sqlite3.Connection, session_id: int, groups: TrackRows, names: dict[str, str]) -> None:
    """Insert one chunk per device of ``groups`` (inside the caller's transaction)."""
    insert_chunks(conn, chunk_params(session_id, groups, names))


def chunk_params(session_id: int, groups: TrackRows, names: dict[str, str]) -> list[tuple[Any, ...]]:
    """The ``tracks`` rows for ``groups``, serialized (before a transaction: it holds the lock)."""
    return [(session_id, ident, names.get(ident, ""), len(rows), min(r[2] for r in rows), max(r[2] for r in rows),
             orjson.dumps(rows)) for ident, rows in groups.items()]


def insert_chunks(conn: sqlite3.Connection, params: list[tuple[Any, ...]]) -> None:
    conn.executemany(
        "INSERT INTO tracks (session_id, ident, name, n, t_min, t_max, rows) VALUES (?, ?, ?, ?, ?, ?, ?)", params)


@dataclass(slots=True)
class Derived:
    """What deriving a run of one session's stored batches produced, not yet written."""

    groups: TrackRows = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    flagged: list[tuple[int, int]] = field(default_factory=list)  # (flagged messages, batch id)
    count: int = 0  # messages
    last: int = 0  # the last batch derived

    def add(self, batch_id: int, received_at: float, stored_body: bytes) -> None:
        """Derive one stored batch (its compressed body, as in ``batches.body``)."""
        self.add_messages(batch_id, stored_messages(received_at, stored_body))

    def add_messages(self, batch_id: int, messages: list[Message]) -> None:
        """Derive one stored batch, its messages normalized already."""
        merge_rows(self.groups, track_rows(batch_id, messages))
        device_names(messages, self.names)
        self.flagged.append((sum(1 for m in messages if m.flags), batch_id))
        self.count += len(messages)
        self.last = batch_id


def stored_messages(received_at: float, stored_body: bytes) -> list[Message]:
    """A stored batch's messages (its compressed body, as in ``batches.body``), normalized."""
    raw = decompress_body(stored_body)
    return normalize_batch(orjson.loads(raw), received_at, raw)


def derive_stored(rows: Iterable[tuple[int, float, bytes]], into: Derived | None = None) -> Derived:
    """Derive ``(batch id, received_at, stored body)`` rows, in batch order."""
    derived = into if into is not None else Derived()
    for batch_id, received_at, body in rows:
        derived.add(batch_id, received_at, body)
    return derived


@dataclass(slots=True, frozen=True)
class ChunkPiece:
    """A `Derived` run serialized, ready to be committed (`commit_piece`): its ``tracks`` rows,
    its batches' flagged counts, the last batch it covers. Serialized before the write
    transaction, which then holds the file's write lock only for the inserts."""

    chunks: list[tuple[Any, ...]]
    flagged: list[tuple[int, int]]
    last: int


def serialize(session_id: int, derived: Derived, names: dict[str, str]) -> ChunkPiece:
    """``derived``'s chunks for ``session_id``, named by ``names`` (before a transaction: it holds the lock)."""
    return ChunkPiece(chunk_params(session_id, derived.groups, names), derived.flagged, derived.last)


def commit_piece(conn: sqlite3.Connection, session_id: int, piece: ChunkPiece, expected: int) -> bool:
    """Write ``piece``'s chunks, its batches' flagged counts, and the session's chunk mark
    (``indexed_batch``: ``expected`` → ``piece.last``) in one transaction — only if the mark is
    still ``expected``; False (nothing written) if another writer moved it or the session is gone."""
    with transaction(conn):
        moved = conn.execute("UPDATE sessions SET indexed_batch = ? WHERE id = ? AND indexed_batch = ?",
                             (piece.last, session_id, expected)).rowcount
        if moved != 1:
            return False
        insert_chunks(conn, piece.chunks)
        conn.executemany("UPDATE batches SET flagged = ? WHERE id = ? AND flagged != ?",
                         [(flagged, batch_id, flagged) for flagged, batch_id in piece.flagged])
    return True


def complete_chunks(conn: sqlite3.Connection, session_id: int, derived: Derived, names: dict[str, str],
                    expected: int) -> bool:
    """`commit_piece` of ``derived``, named by ``names``."""
    return commit_piece(conn, session_id, serialize(session_id, derived, names), expected)
