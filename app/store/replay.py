"""Replay a recorded session: the state of every device at any instant, and what happens next.

Seeking needs no scan: for each device, the chunk index `(session, ident, t_min)` finds the
chunks just before t, which hold its latest message and its trail. Playing forward streams points
in time order from t. Messages are rebuilt from their raw JSON, so the inspector and table show
exactly what was recorded.

Every call reads one snapshot of the file (a short read transaction), so a chunk flush by the
recorder meanwhile cannot show a message twice; no snapshot is held between calls (the window's
reader connection serves the live views too, and a long-held snapshot stops the WAL from being
reset while recording).
"""

from __future__ import annotations

import copy
import sqlite3
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson

from app.core.normalize import UNUSABLE_FIX, Message, normalize
from app.store.faults import FileId
from app.store.points import PointFilter, RawCache, TrackPoint, iter_points, session_idents, unchunked
from app.store.schema import file_of
from app.store.snapshot import read_snapshot

SEEK_TRAIL_BUDGET = 40_000  # trail points restored on a seek, over all devices
_TIME_ORDER = itemgetter(2, 0, 1)  # a packed row's (ts, batch_id, idx)


def seek_trail(trail_length: int, devices: int) -> int:
    """Trail points each device gets back on a seek: the full trail for small fleets, fewer for
    large ones (1,000 devices × 200 points is too slow to rebuild and too dense to read); trails
    grow back to full length as the replay plays."""
    return min(trail_length, max(20, SEEK_TRAIL_BUDGET // max(devices, 1)))


@dataclass(frozen=True, slots=True)
class ReplayedMessage:
    """A recorded message with where it came from."""

    message: Message
    received_at: float
    batch_id: int
    index: int


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """A device at an instant: its latest message, the one before, and its trail up to then."""

    latest: ReplayedMessage
    previous: ReplayedMessage | None
    fix: ReplayedMessage | None
    trail: list[tuple[float, float]]


class ReplaySource:
    """One session opened for replay (optionally a subset of its devices)."""

    def __init__(self, conn: sqlite3.Connection, session_id: int, idents: tuple[str, ...] | None = None,
                 tail: dict[str, Any] | None = None) -> None:
        """``tail``: the session's batches not chunked yet for these devices (`points.unchunked`),
        when the caller has read them in the snapshot it holds around this call."""
        self.conn = conn
        self.session_id = session_id
        self.filter = PointFilter(session_id, idents)
        where = "session_id = ?" + ("" if idents is None else f" AND ident IN ({','.join('?' * len(idents))})")
        self._where = where
        self._args: list[Any] = [session_id, *(idents or ())]
        with read_snapshot(conn):  # devices and span from one view of a file that may be growing
            # The batches not chunked yet count as much as the chunks: the chunks' process lags
            # by seconds as a rule, by minutes under a load the machine cannot keep up with.
            if tail is None:
                tail = unchunked(conn, self.filter)
            self.idents = session_idents(conn, self.filter, tail)
            first, last = conn.execute(f"SELECT min(t_min), max(t_max) FROM tracks WHERE {where}",
                                       self._args).fetchone()
        times = _tail_times(tail)
        firsts = [t for t in (first, min(times, default=None)) if t is not None]
        lasts = [t for t in (last, max(times, default=None)) if t is not None]
        self.start = float(min(firsts, default=0.0))
        self.end = float(max(lasts, default=0.0))
        self._raw = RawCache(conn, size=64)  # a snapshot touches the latest batch of every device

    def on(self, conn: sqlite3.Connection) -> ReplaySource:
        """The same session, span and devices, read through ``conn`` (another thread's connection:
        a sqlite3 connection is used by one thread at a time)."""
        other = copy.copy(self)
        other.conn = conn
        other._raw = RawCache(conn, size=64)
        return other

    # -- raw messages ---------------------------------------------------------------------------
    def message(self, point: TrackPoint) -> ReplayedMessage:
        """The full message behind a point (all parameters), normalized from its raw JSON."""
        received_at, raws = self._raw.batch(point.batch_id)
        return ReplayedMessage(normalize(raws[point.idx], received_at), received_at, point.batch_id, point.idx)

    def raw(self, batch_id: int, index: int) -> Any:
        """Exactly what the device sent."""
        return self._raw.batch(batch_id)[1][index]

    # -- timeline -------------------------------------------------------------------------------
    def density(self, bins: int, tail: dict[str, Any] | None = None) -> list[float]:
        """Messages per time bin over the session (each chunk spread evenly over its span, each
        message not chunked yet in its own bin). ``tail`` as for the constructor."""
        counts = [0.0] * bins
        span = max(self.end - self.start, 1e-9)

        def at(t: float) -> int:
            return min(bins - 1, max(0, int((t - self.start) / span * bins)))

        with read_snapshot(self.conn):  # the chunks and the batches not in them, as of one commit
            if tail is None:
                tail = unchunked(self.conn, self.filter)
            for t_min, t_max, n in self.conn.execute(f"SELECT t_min, t_max, n FROM tracks WHERE {self._where}",
                                                     self._args):
                first, last = at(t_min), at(t_max)
                share = n / (last - first + 1)
                for b in range(first, last + 1):
                    counts[b] += share
        for t in _tail_times(tail):
            counts[at(t)] += 1.0
        return counts

    def points_between(self, after: float, until: float) -> Iterator[TrackPoint]:
        """Points with after < ts <= until, in time order."""
        f = PointFilter(self.session_id, self.filter.idents, t_from=after, t_to=until)
        return (p for p in iter_points(self.conn, f) if p.ts > after)

    def next_time(self, after: float) -> float | None:
        """The first message time after ``after`` (for stepping forward)."""
        for window in (60.0, 3600.0, float("inf")):
            for point in self.points_between(after, after + window):
                return point.ts
        return None

    def previous_time(self, before: float) -> float | None:
        """The last message time before ``before`` (for stepping back)."""
        with read_snapshot(self.conn):
            tail = unchunked(self.conn, self.filter)
            times = [rows[-1][2] for ident in self.idents
                     if (rows := self._latest_rows(ident, before, 1, tail, strict=True))]
        return max(times) if times else None

    # -- snapshots ------------------------------------------------------------------------------
    def _latest_rows(self, ident: str, t: float, fixes_wanted: int, tail: dict[str, Any], *,
                     strict: bool = False) -> list[list[Any]]:
        """A device's rows up to t (before t if ``strict``), oldest first: at least its latest two
        and its last ``fixes_wanted`` usable fixes, when it has that many. ``tail``: the session's
        batches not in chunks yet (`points.unchunked`: the last seconds of a session the deriver
        process has not chunked yet), read in the same snapshot."""
        before = (lambda r: r[2] < t) if strict else (lambda r: r[2] <= t)
        unchunked_rows = tail.get(ident)
        rows: list[list[Any]] = [r for r in unchunked_rows.rows if before(r)] if unchunked_rows is not None else []
        oldest_read = None
        cursor = self.conn.execute(
            "SELECT t_min, t_max, rows FROM tracks WHERE session_id = ? AND ident = ? AND t_min <= ? "
            "ORDER BY t_min DESC", (self.session_id, ident, t))
        for t_min, t_max, packed in cursor:
            oldest_read = t_min
            chunk = orjson.loads(packed)
            if t_max > t or (strict and t_max == t):  # only the chunk straddling t needs filtering
                chunk = [r for r in chunk if r[2] < t] if strict else [r for r in chunk if r[2] <= t]
            rows.extend(chunk)
            # Counting usable fixes is a pass over the rows: only once there could be enough.
            if len(rows) >= max(2, fixes_wanted) and (
                    sum(1 for r in rows if not r[12] & UNUSABLE_FIX) >= fixes_wanted):
                break
        if not rows:
            return []
        # Chunks overlap when a tracker uploads buffered history: an older chunk may still hold
        # rows later than some of those read. Fetch the ones that reach into the range read (as a
        # rule there are none, so the common case costs one indexed query).
        threshold = min(r[2] for r in rows)
        extra = self.conn.execute(
            "SELECT rows FROM tracks WHERE session_id = ? AND ident = ? AND t_max >= ? AND t_min < ?",
            (self.session_id, ident, threshold, oldest_read)).fetchall()
        if extra:
            seen = {(r[0], r[1]) for r in rows}
            for (packed,) in extra:
                rows.extend(r for r in orjson.loads(packed) if before(r) and (r[0], r[1]) not in seen)
        rows.sort(key=_TIME_ORDER)
        return rows

    def snapshot(self, t: float, trail_length: int, tail: dict[str, Any] | None = None) -> dict[str, DeviceSnapshot]:
        """Every device as it was at ``t``: devices with no message yet are absent. ``tail`` as
        for the constructor."""
        out: dict[str, DeviceSnapshot] = {}
        with read_snapshot(self.conn):  # every device as of the same committed state
            if tail is None:
                tail = unchunked(self.conn, self.filter)
            for ident in self.idents:
                rows = self._latest_rows(ident, t, trail_length, tail)
                if not rows:
                    continue
                latest = self.message(TrackPoint(ident, "", *rows[-1]))
                previous = self.message(TrackPoint(ident, "", *rows[-2])) if len(rows) > 1 else None
                fix_rows = [r for r in rows if not r[12] & UNUSABLE_FIX]
                fix = None
                if fix_rows:  # usually the latest message itself: rebuilt once
                    fix = latest if fix_rows[-1] is rows[-1] else self.message(TrackPoint(ident, "", *fix_rows[-1]))
                trail = [(r[4], r[5]) for r in fix_rows[-trail_length:]]
                out[ident] = DeviceSnapshot(latest, previous, fix, trail)
        return out


def _tail_times(tail: dict[str, Any]) -> array[float]:
    """The device times of the messages not chunked yet (`points.unchunked`)."""
    return array("d", (row[2] for chunk in tail.values() for row in chunk.rows))


@dataclass(frozen=True, slots=True)
class OpenedSession:
    """What replay mode needs to show a session, read in one go: the source (bound to the
    connection that read it: rebind with `ReplaySource.on`), every device of the session (for the
    device picker), its name, how its messages spread over time and every device at its start."""

    source: ReplaySource
    everyone: list[str]
    name: str
    density: list[float]
    start: dict[str, DeviceSnapshot]
    #: The file it was read from (`schema.RecordingConnection.file`; None: not known): the replay
    #: goes on reading that one.
    file: FileId | None = None


def open_session(session_id: int, idents: tuple[str, ...] | None, trail_length: int, density_bins: int,
                 conn: sqlite3.Connection) -> OpenedSession:
    """Open a session for replay (on a long session, seconds of reading: a reader thread's job)."""
    with read_snapshot(conn):
        whole_tail = unchunked(conn, PointFilter(session_id))  # decoded once, for all of what follows
        tail = whole_tail if idents is None else {ident: whole_tail[ident] for ident in idents if ident in whole_tail}
        source = ReplaySource(conn, session_id, idents, tail)
        everyone = source.idents if idents is None else session_idents(conn, PointFilter(session_id), whole_tail)
        name = session_name(conn, session_id)
        density = source.density(density_bins, tail)
        start = source.snapshot(source.start, seek_trail(trail_length, len(source.idents)), tail)
    return OpenedSession(source, everyone, name, density, start, file_of(conn))


@dataclass(frozen=True, slots=True)
class ExportChoices:
    """What the dialog offers for a session: its devices (with their names), its span, and its
    name ('' if it has none), which titles the exported file; and the file they were read from,
    the one the export must read (`schema.RecordingConnection.file`; None: not known)."""

    idents: list[str]
    names: dict[str, str]
    start: float
    end: float
    name: str
    file: FileId | None = None


def read_export_choices(session_id: int, conn: sqlite3.Connection) -> ExportChoices:
    """What the export dialog offers for a session, in one snapshot (a reader thread's job: 0.6 s
    for a 3M-message session)."""
    with read_snapshot(conn):
        tail = unchunked(conn, PointFilter(session_id))
        source = ReplaySource(conn, session_id, tail=tail)
        names = dict(conn.execute("SELECT ident, name FROM tracks WHERE session_id = ? AND name != ''",
                                  (session_id,)).fetchall())
        names.update({ident: chunk.name for ident, chunk in tail.items() if chunk.name})  # newer than the chunks'
        name = session_name(conn, session_id)
    return ExportChoices(source.idents, names, source.start, source.end, name, file_of(conn))


def session_name(conn: sqlite3.Connection, session_id: int) -> str:
    """A session's name ('' if it has none, or is gone)."""
    row = conn.execute("SELECT name FROM sessions WHERE id = ?", (session_id,)).fetchone()
    return row[0] if row and row[0] else ""
