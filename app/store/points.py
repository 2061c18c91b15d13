"""Stream a session's track points in time order — per device, or across all devices.

Points come from the ``tracks`` chunks (plus, for a session still being written or cut short by
a crash, the batches not yet chunked, normalized from their raw bodies). Chunks are read in
``t_min`` order and merged through a small heap: a point is emitted once no later chunk can hold
an earlier one, so memory holds only chunks that overlap in time, however large the session.
Used by exports, replay and anything else that walks a recording.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from app.core.normalize import UNUSABLE_FIX, normalize_batch
from app.store.codec import decompress_body
from app.store.snapshot import read_snapshot


class TrackPoint(NamedTuple):
    """One message's extracted fix, with where its raw JSON is stored (batch_id, idx)."""

    ident: str
    name: str
    batch_id: int
    idx: int
    ts: float
    server_ts: float | None
    lat: float | None
    lon: float | None
    alt: float | None
    speed: float | None
    direction: float | None
    satellites: float | None
    hdop: float | None
    valid: bool | None
    flags: int

    @property
    def has_fix(self) -> bool:
        """True when the position may be drawn or exported as a real location."""
        return not self.flags & UNUSABLE_FIX


@dataclass(frozen=True, slots=True)
class PointFilter:
    """Which points to read: a session, optionally some devices, a time range, valid fixes only."""

    session_id: int
    idents: tuple[str, ...] | None = None
    t_from: float | None = None
    t_to: float | None = None
    valid_only: bool = False


class _Chunk(NamedTuple):
    t_min: float
    ident: str
    name: str
    rows: Any  # JSON text (from the table) or a list of rows (from unchunked batches)


def _where(f: PointFilter, ident: str | None = None) -> tuple[str, list[Any]]:
    sql, args = ["session_id = ?"], [f.session_id]
    if ident is not None:
        sql.append("ident = ?")
        args.append(ident)
    elif f.idents is not None:
        sql.append(f"ident IN ({','.join('?' * len(f.idents))})")
        args.extend(f.idents)
    if f.t_from is not None:
        sql.append("t_max >= ?")
        args.append(f.t_from)
    if f.t_to is not None:
        sql.append("t_min <= ?")
        args.append(f.t_to)
    return " AND ".join(sql), args


def _unchunked(conn: sqlite3.Connection, f: PointFilter) -> dict[str, _Chunk]:
    """Per device, the rows of batches committed after the last chunk flush."""
    indexed = conn.execute("SELECT indexed_batch FROM sessions WHERE id = ?", (f.session_id,)).fetchone()
    if indexed is None:
        return {}
    rows: dict[str, list[list[Any]]] = {}
    names: dict[str, str] = {}
    cursor = conn.execute("SELECT id, received_at, body FROM batches WHERE session_id = ? AND id > ? ORDER BY id",
                          (f.session_id, indexed[0]))
    for batch_id, received_at, body in cursor:
        raw = decompress_body(body)
        for index, m in enumerate(normalize_batch(orjson.loads(raw), received_at, raw)):
            if f.idents is not None and m.ident not in f.idents:
                continue
            rows.setdefault(m.ident, []).append([batch_id, index, m.ts, m.server_ts, m.lat, m.lon, m.alt, m.speed,
                                                 m.direction, m.satellites, m.hdop, m.valid, m.flags])
            name = m.params.get("device.name")
            if name is not None:
                names[m.ident] = str(name)
    return {ident: _Chunk(min(r[2] for r in device_rows), ident, names.get(ident, ""), device_rows)
            for ident, device_rows in rows.items()}


def _chunks(conn: sqlite3.Connection, f: PointFilter, ident: str | None, extra: Iterable[_Chunk]) -> Iterator[_Chunk]:
    where, args = _where(f, ident)
    stored = (_Chunk(*row) for row in conn.execute(
        f"SELECT t_min, ident, name, rows FROM tracks WHERE {where} ORDER BY t_min", args))
    return heapq.merge(stored, sorted(extra, key=lambda chunk: chunk.t_min), key=lambda chunk: chunk.t_min)


def _merge(chunks: Iterable[_Chunk], f: PointFilter) -> Iterator[TrackPoint]:
    heap: list[tuple[float, int, int, TrackPoint]] = []
    t_from = float("-inf") if f.t_from is None else f.t_from
    t_to = float("inf") if f.t_to is None else f.t_to
    unusable = UNUSABLE_FIX if f.valid_only else 0
    make = TrackPoint._make
    iterator = iter(chunks)
    chunk = next(iterator, None)
    while chunk is not None:
        following = next(iterator, None)
        rows = orjson.loads(chunk.rows) if isinstance(chunk.rows, (bytes, str)) else chunk.rows
        head = (chunk.ident, chunk.name)
        points = [make(head + tuple(row)) for row in rows
                  if t_from <= row[2] <= t_to and not row[12] & unusable]
        last = max((p.ts for p in points), default=chunk.t_min)
        if not heap and (following is None or following.t_min >= last):
            # Nothing earlier can follow: emit this chunk directly (the usual case per device).
            points.sort(key=lambda p: (p.ts, p.batch_id, p.idx))
            yield from points
        else:
            for point in points:
                heapq.heappush(heap, (point.ts, point.batch_id, point.idx, point))
            limit = float("inf") if following is None else following.t_min
            while heap and heap[0][0] < limit:
                yield heapq.heappop(heap)[3]
        chunk = following
    while heap:
        yield heapq.heappop(heap)[3]


def session_idents(conn: sqlite3.Connection, f: PointFilter, tail: dict[str, _Chunk] | None = None) -> list[str]:
    """Devices of the session that pass the filter's device list, sorted."""
    where, args = _where(PointFilter(f.session_id, f.idents))
    with read_snapshot(conn):
        found = {row[0] for row in conn.execute(f"SELECT DISTINCT ident FROM tracks WHERE {where}", args)}
        return sorted(found | set(_unchunked(conn, f) if tail is None else tail))


def count_points(conn: sqlite3.Connection, f: PointFilter) -> int:
    """How many points the filter's chunks hold (an upper bound once time/valid filters apply)."""
    where, args = _where(f)
    with read_snapshot(conn):
        stored = conn.execute(f"SELECT coalesce(sum(n), 0) FROM tracks WHERE {where}", args).fetchone()[0]
        return int(stored) + sum(len(chunk.rows) for chunk in _unchunked(conn, f).values())


def iter_points(conn: sqlite3.Connection, f: PointFilter, *, by_device: bool = False) -> Iterator[TrackPoint]:
    """Points in time order across devices, or device by device (each in time order).

    The chunk mark, the raw tail and the chunks are read in one snapshot (held until the points
    are exhausted or the iterator is closed), so a chunk flush meanwhile cannot double a point."""
    with read_snapshot(conn):
        tail = _unchunked(conn, f)
        if not by_device:
            yield from _merge(_chunks(conn, f, None, tail.values()), f)
            return
        for ident in session_idents(conn, f, tail):
            extra = [tail[ident]] if ident in tail else []
            yield from _merge(_chunks(conn, f, ident, extra), f)


class RawCache:
    """Stored batches decoded on demand, keeping the last few (points come in time order, so
    neighbours mostly share a batch)."""

    def __init__(self, conn: sqlite3.Connection, size: int = 16) -> None:
        self.conn = conn
        self.size = size
        self._batches: dict[int, tuple[float, list[Any]]] = {}

    def batch(self, batch_id: int) -> tuple[float, list[Any]]:
        """(receive time, raw messages) of a stored batch."""
        found = self._batches.get(batch_id)
        if found is None:
            received_at, body = self.conn.execute("SELECT received_at, body FROM batches WHERE id = ?",
                                                  (batch_id,)).fetchone()
            found = (received_at, orjson.loads(decompress_body(body)))
            if len(self._batches) >= self.size:
                self._batches.pop(next(iter(self._batches)))
            self._batches[batch_id] = found
        return found

    def raw(self, point: TrackPoint) -> Any:
        """The message exactly as the device sent it."""
        return self.batch(point.batch_id)[1][point.idx]
