"""Stream a session's track points in time order — per device, or across all devices.

Points come from the ``tracks`` chunks (plus, for a session still being written or cut short by
a crash, the batches not yet chunked, normalized from their raw bodies). Chunks are read in
``t_min`` order and merged a block of columns at a time: points are emitted once no later chunk
can hold an earlier one, so memory holds only chunks that overlap in time (and at most
`MERGE_BUFFER` points of them at once), however large the session. Exporters take the blocks
(`iter_blocks`) and format each one whole; replay and everything else that walks a recording
take the points one by one (`iter_points`), in the same order.
"""

from __future__ import annotations

import heapq
import operator
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
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
    #: Points strictly before this time only (a half-open range: parts of one export meet exactly).
    t_before: float | None = None

    @staticmethod
    def from_plain(spec: dict[str, Any]) -> PointFilter:
        """The filter `dataclasses.asdict` made plain (for a child process), back."""
        idents = spec["idents"]
        return PointFilter(**{**spec, "idents": tuple(idents) if idents is not None else None})


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
    if f.t_before is not None:
        sql.append("t_min < ?")
        args.append(f.t_before)
    return " AND ".join(sql), args


def unchunked(conn: sqlite3.Connection, f: PointFilter) -> dict[str, _Chunk]:
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


class PointBlock(NamedTuple):
    """Consecutive points of the stream, column by column (the columns of `TrackPoint`).

    Exporters format a whole block at once (one join per block instead of one write per point);
    ``ident`` and ``name`` are per row, the name being the chunk's device name."""

    ident: Sequence[str]
    name: Sequence[str]
    batch_id: Sequence[int]
    idx: Sequence[int]
    ts: Sequence[float]
    server_ts: Sequence[float | None]
    lat: Sequence[float | None]
    lon: Sequence[float | None]
    alt: Sequence[float | None]
    speed: Sequence[float | None]
    direction: Sequence[float | None]
    satellites: Sequence[float | None]
    hdop: Sequence[float | None]
    valid: Sequence[bool | None]
    flags: Sequence[int]

    def points(self) -> Iterator[TrackPoint]:
        """The block's points one at a time."""
        return map(TrackPoint._make, zip(*self, strict=True))


#: Points held back (overlapping chunks) before they are sorted and emitted as far as possible;
#: after an emission, the next waits until the rows still held have doubled, so every sort emits
#: as much as it keeps (amortised O(n log n) however the chunks overlap). A recorder's flush writes
#: every device's chunk over the same span (~20,000 rows that overlap): 20,000 measured fastest
#: (1M-message CSV export: 287,000 rows per CPU-second at 81 MB; 100,000: 222,000 at 213 MB).
MERGE_BUFFER = 20_000
_ROW_WIDTH = len(TrackPoint._fields) - 2


def _in_order(ts: Sequence[float]) -> bool:
    steps = np.diff(np.asarray(ts, dtype=np.float64))
    return steps.size == 0 or bool((steps > 0).all())


class _Run(NamedTuple):
    """Consecutive points of the merge: rows as stored, with their devices (one device for a
    whole chunk, or one per row when overlapping chunks were merged)."""

    ident: str | list[str]
    name: str | list[str]
    rows: list[Any]

    def block(self) -> PointBlock:
        n = len(self.rows)
        idents = [self.ident] * n if isinstance(self.ident, str) else self.ident
        names = [self.name] * n if isinstance(self.name, str) else self.name
        return PointBlock(idents, names, *zip(*self.rows, strict=True))  # type: ignore[arg-type]

    def points(self) -> list[TrackPoint]:
        make = TrackPoint._make
        if isinstance(self.ident, str):
            head = (self.ident, self.name)
            return [make(head + tuple(row)) for row in self.rows]
        return [make((ident, name, *row)) for ident, name, row in zip(self.ident, self.name, self.rows, strict=True)]


class _Held:
    """Rows of overlapping chunks waiting to be merged: rows as stored, with their device."""

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.idents: list[str] = []
        self.names: list[str] = []
        self.keys: list[list[Any]] = [[], [], []]  # ts, batch_id, idx
        self.latest = float("-inf")
        self.kept = 0  # rows the last emission left held

    def add(self, ident: str, name: str, rows: list[Any], ts: list[float], latest: float) -> None:
        self.rows.extend(rows)
        self.idents.extend([ident] * len(rows))
        self.names.extend([name] * len(rows))
        self.keys[0].extend(ts)
        self.keys[1].extend([row[0] for row in rows])
        self.keys[2].extend([row[1] for row in rows])
        self.latest = max(self.latest, latest)

    def take_before(self, limit: float) -> _Run | None:
        """The held rows earlier than ``limit``, in (ts, batch_id, idx) order; the rest stay.

        Sorted with numpy; the rows are gathered whole (one gather, not one per column)."""
        ts = np.asarray(self.keys[0], dtype=np.float64)
        order = np.lexsort((np.asarray(self.keys[2]), np.asarray(self.keys[1]), ts))
        cut = len(order) if limit > self.latest else int(np.searchsorted(ts[order], limit, side="left"))
        if not cut:
            self.kept = len(self.rows)  # nothing to emit yet: sort again once twice as many are held
            return None
        picked, rest = order[:cut].tolist(), order[cut:].tolist()
        run = _Run(_gather(self.idents, picked), _gather(self.names, picked), _gather(self.rows, picked))
        self.rows, self.idents, self.names = _gather(self.rows, rest), _gather(self.idents, rest), \
            _gather(self.names, rest)
        self.keys = [_gather(keys, rest) for keys in self.keys]
        self.kept = len(self.rows)
        if not self.rows:
            self.latest = float("-inf")
        return run


def _gather(values: list[Any], at: list[int]) -> list[Any]:
    if not at:
        return []
    if len(at) == 1:
        return [values[at[0]]]
    return list(operator.itemgetter(*at)(values))


def _merge(chunks: Iterable[_Chunk], f: PointFilter) -> Iterator[_Run]:
    """Chunks (in ``t_min`` order) → runs of rows in (ts, batch_id, idx) order.

    A chunk that no later chunk overlaps goes out whole (the usual case per device);
    overlapping chunks wait (`_Held`) and are sorted and emitted up to the next chunk's start
    once that start is past everything held, or once `MERGE_BUFFER` points are held (memory
    holds only chunks that overlap in time)."""
    t_from = float("-inf") if f.t_from is None else f.t_from
    t_to = float("inf") if f.t_to is None else f.t_to
    before = float("inf") if f.t_before is None else f.t_before
    unusable = UNUSABLE_FIX if f.valid_only else 0
    filtering = f.t_from is not None or f.t_to is not None or f.t_before is not None or bool(unusable)
    held = _Held()
    iterator = iter(chunks)
    chunk = next(iterator, None)
    while chunk is not None:
        following = next(iterator, None)
        rows = orjson.loads(chunk.rows) if isinstance(chunk.rows, (bytes, str)) else chunk.rows
        if filtering:
            rows = [row for row in rows if t_from <= row[2] <= t_to and row[2] < before and not row[12] & unusable]
        limit = float("inf") if following is None else following.t_min
        if rows:
            if len(rows[0]) != _ROW_WIDTH:
                raise ValueError(f"a track chunk of {chunk.ident!r} has rows of an unknown shape")
            ts = [row[2] for row in rows]
            last = max(ts)
            if not held.rows and limit > last and _in_order(ts):
                yield _Run(chunk.ident, chunk.name, rows)
                chunk = following
                continue
            held.add(chunk.ident, chunk.name, rows, ts, last)
        if held.rows and (limit > held.latest or len(held.rows) >= max(MERGE_BUFFER, 2 * held.kept)):
            run = held.take_before(limit)
            if run is not None:
                yield run
        chunk = following


def session_idents(conn: sqlite3.Connection, f: PointFilter, tail: dict[str, _Chunk] | None = None) -> list[str]:
    """Devices of the session that pass the filter's device list, sorted."""
    where, args = _where(PointFilter(f.session_id, f.idents))
    with read_snapshot(conn):
        found = {row[0] for row in conn.execute(f"SELECT DISTINCT ident FROM tracks WHERE {where}", args)}
        return sorted(found | set(unchunked(conn, f) if tail is None else tail))


def chunk_sizes(conn: sqlite3.Connection, f: PointFilter) -> list[tuple[float, float, int]]:
    """(t_min, t_max, points) of every stored chunk the filter reads (chunks only)."""
    where, args = _where(f)
    return [(float(lo), float(hi), int(n))
            for lo, hi, n in conn.execute(f"SELECT t_min, t_max, n FROM tracks WHERE {where}", args)]


def count_points(conn: sqlite3.Connection, f: PointFilter) -> int:
    """How many points the filter's chunks hold (an upper bound once time/valid filters apply)."""
    where, args = _where(f)
    with read_snapshot(conn):
        stored = conn.execute(f"SELECT coalesce(sum(n), 0) FROM tracks WHERE {where}", args).fetchone()[0]
        return int(stored) + sum(len(chunk.rows) for chunk in unchunked(conn, f).values())


def iter_points(conn: sqlite3.Connection, f: PointFilter, *, by_device: bool = False) -> Iterator[TrackPoint]:
    """Points in time order across devices, or device by device (each in time order).

    The chunk mark, the raw tail and the chunks are read in one snapshot (held until the points
    are exhausted or the iterator is closed), so a chunk flush meanwhile cannot double a point."""
    with read_snapshot(conn):
        tail = unchunked(conn, f)
        for run in _runs(conn, f, tail, by_device):
            yield from run.points()


#: Runs shorter than SMALL_RUN rows are gathered into blocks of about BLOCK_ROWS before they are
#: handed out: with 1,000 devices a run is one chunk of ~20 rows, and formatting a block column by
#: column costs ~0.2 ms whatever its size (GPX of 1,000 devices: 106,000 → 204,000 points per
#: CPU-second). Longer runs go out as they are: joining them cost more than it saved.
BLOCK_ROWS = 4096
SMALL_RUN = 128


def iter_blocks(conn: sqlite3.Connection, f: PointFilter, *, by_device: bool = False,
                join_short: bool = False) -> Iterator[PointBlock]:
    """The points of `iter_points`, in the same order, a block of columns at a time;
    ``join_short`` for a reader that formats whole blocks (for one that walks the points one by
    one, joining only costs)."""
    with read_snapshot(conn):
        pending: list[_Run] = []
        size = 0
        for run in _runs(conn, f, unchunked(conn, f), by_device):
            if not join_short or len(run.rows) >= SMALL_RUN:
                if pending:
                    yield _joined(pending).block()
                    pending, size = [], 0
                yield run.block()
                continue
            pending.append(run)
            size += len(run.rows)
            if size >= BLOCK_ROWS:
                yield _joined(pending).block()
                pending, size = [], 0
        if pending:
            yield _joined(pending).block()


def _joined(runs: list[_Run]) -> _Run:
    """Consecutive runs as one (a device's own when they are all of one device)."""
    if len(runs) == 1:
        return runs[0]
    rows = [row for run in runs for row in run.rows]
    first = runs[0]
    if all(run.ident is first.ident or run.ident == first.ident for run in runs) and \
            all(isinstance(run.ident, str) and run.name == first.name for run in runs):
        return _Run(first.ident, first.name, rows)
    idents: list[str] = []
    names: list[str] = []
    for run in runs:
        n = len(run.rows)
        idents.extend([run.ident] * n if isinstance(run.ident, str) else run.ident)
        names.extend([run.name] * n if isinstance(run.name, str) else run.name)
    return _Run(idents, names, rows)


def _runs(conn: sqlite3.Connection, f: PointFilter, tail: dict[str, _Chunk], by_device: bool) -> Iterator[_Run]:
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
