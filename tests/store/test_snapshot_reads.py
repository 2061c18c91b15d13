"""Exports and replay read one snapshot: taken while a stream posts and chunks are flushed, every
export holds every committed message exactly once."""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
from collections import Counter
from datetime import datetime

import gpxpy
import pytest

from app.store import recorder as recorder_module
from app.store.exporters import run_export
from app.store.points import PointFilter, iter_points
from app.store.replay import ReplaySource
from tests.conftest import running_listener

T0 = 1_767_225_600
DEVICES = 5
PER_BATCH = 50
MIN_BATCHES = 60  # and then on until the readers have read 8 times meanwhile
MAX_BATCHES = 3000


def batch(number: int) -> list[dict]:
    """Messages with a distinct whole-second timestamp each, so (ident, time) names a message."""
    first = number * PER_BATCH
    return [{"ident": f"d{(first + i) % DEVICES}", "timestamp": T0 + first + i,
             "position.latitude": 50 + (first + i) / 1e5, "position.longitude": 10.0} for i in range(PER_BATCH)]


def seconds(rows: list[tuple[str, int]]) -> list[int]:
    return [second - T0 for _, second in rows]


def assert_a_committed_prefix(rows: list[tuple[str, int]]) -> int:
    """The export holds batches 0..k-1 completely, each message once, and nothing else."""
    counts = Counter(rows)
    doubled = [key for key, n in counts.items() if n > 1]
    assert not doubled, f"{len(doubled)} points exported twice, e.g. {doubled[:3]}"
    present = sorted(seconds(rows))
    assert present == list(range(len(present))), "an export is a whole prefix of the committed batches"
    assert len(present) % PER_BATCH == 0
    return len(present) // PER_BATCH


def export_rows(db, fmt: str) -> list[tuple[str, int]]:
    out = io.StringIO()
    conn = sqlite3.connect(db)
    try:
        run_export(conn, fmt, PointFilter(1), out)
    finally:
        conn.close()
    if fmt == "csv":
        return [(row["ident"], _csv_seconds(row["time_utc"])) for row in csv.DictReader(io.StringIO(out.getvalue()))]
    gpx = gpxpy.parse(out.getvalue())
    return [(track.name, int(point.time.timestamp())) for track in gpx.tracks for segment in track.segments
            for point in segment.points]


def _csv_seconds(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def test_exports_and_replay_while_recording_hold_every_message_once(db_path, monkeypatch) -> None:
    # Chunks every few batches: the raw tail and the chunk mark keep moving under the readers.
    monkeypatch.setattr(recorder_module, "FLUSH_SECONDS", 0.02)
    with running_listener(db_path) as served:
        failures: list[str] = []
        posted: list[int] = []
        enough = threading.Event()  # the readers have read often enough while the stream ran

        def stream() -> None:
            for number in range(MAX_BATCHES):
                if number >= MIN_BATCHES and enough.is_set():
                    return
                reply = served.post(batch(number))
                if reply.status != 200:
                    failures.append(f"batch {number}: {reply.status}")
                    return
                posted.append(number)

        sender = threading.Thread(target=stream)
        exports: list[int] = []

        def read_everything() -> None:
            exports.append(assert_a_committed_prefix(export_rows(db_path, ("gpx", "csv")[len(exports) % 2])))
            conn = sqlite3.connect(db_path)
            try:
                assert_a_committed_prefix([(p.ident, int(p.ts)) for p in
                                           iter_points(conn, PointFilter(1), by_device=True)])
                source = ReplaySource(conn, 1)
                assert_a_committed_prefix([(p.ident, int(p.ts)) for p in
                                           source.points_between(source.start - 1, source.end)])
            finally:
                conn.close()

        sender.start()
        try:
            while sender.is_alive():
                read_everything()
                if len([k for k in exports if k > 0]) >= 8:
                    enough.set()
        finally:
            enough.set()
            sender.join(60)
        assert not failures
        read_everything()
        read_everything()
    assert exports[-2:] == [len(posted), len(posted)]
    assert exports == sorted(exports), "later exports never hold less"


@pytest.mark.parametrize("fmt", ["gpx", "csv"])
def test_an_export_of_a_finished_session_holds_every_message_once(db_path, fmt) -> None:
    with running_listener(db_path) as served:
        for number in range(3):
            assert served.post(batch(number)).status == 200
    assert assert_a_committed_prefix(export_rows(db_path, fmt)) == 3
