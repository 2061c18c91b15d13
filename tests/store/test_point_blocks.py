"""The block merge that exports read: every point once, in (time, batch, index) order, however the
chunks overlap — checked against a plain sort of every stored row."""

from __future__ import annotations

import random
import sqlite3

import orjson
import pytest

from app.core.normalize import UNUSABLE_FIX, normalize_batch
from app.store import points as points_module
from app.store import recorder as recorder_module
from app.store.points import PointFilter, iter_blocks, iter_points
from app.store.recorder import Recorder

START = 1_767_225_600.0


def overlapping_session(db, monkeypatch) -> tuple[int, Recorder]:
    """Four devices whose timestamps jump back and forth, so their chunks overlap each other and
    themselves; ties in time across devices; a few flagged fixes; a tail never chunked."""
    rng = random.Random(5)
    monkeypatch.setattr(recorder_module, "FLUSH_MESSAGES", 250)  # a chunk flush every 2-3 batches
    rec = Recorder(db)
    session = rec.start_session("overlap")
    for b in range(11):
        batch = [{"ident": f"dev{i % 4}", "timestamp": START + rng.choice([rng.uniform(0, 600), 300.0]),
                  "position.latitude": rng.choice([10.0, 0.0, 95.0]) if i % 17 == 0 else 10.0 + i / 1000,
                  "position.longitude": 20.0, "device.name": f"name{b}"} for i in range(100)]
        body = orjson.dumps(batch)
        rec.write_batch(START + b, "127.0.0.1", len(body), body, normalize_batch(batch, START + b, body), 1.0)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM tracks").fetchone()[0] > 4
    conn.close()
    return session, rec


def every_row(db, session: int) -> list[tuple]:
    """All stored points, plainly sorted: what the merge must give."""
    conn = sqlite3.connect(db)
    got = []
    for ident, name, rows in conn.execute("SELECT ident, name, rows FROM tracks WHERE session_id = ?", (session,)):
        got.extend((ident, name, *row) for row in orjson.loads(rows))
    conn.close()
    return got


@pytest.mark.parametrize(("buffer", "joined"), [(7, False), (100_000, False), (20_000, True), (7, True)])
def test_blocks_give_every_point_once_in_time_order(tmp_path, monkeypatch, buffer, joined) -> None:
    monkeypatch.setattr(points_module, "MERGE_BUFFER", buffer)
    if joined:  # every run short: runs of several devices gathered into blocks of ~5 rows
        monkeypatch.setattr(points_module, "SMALL_RUN", 10**9)
        monkeypatch.setattr(points_module, "BLOCK_ROWS", 5)
    db = tmp_path / "overlap.sqlite"
    session, rec = overlapping_session(db, monkeypatch)
    rec.close()  # every batch chunked
    expected = sorted(every_row(db, session), key=lambda r: (r[4], r[2], r[3]))
    conn = sqlite3.connect(db)
    blocks = list(iter_blocks(conn, PointFilter(session), join_short=joined))
    got = [tuple(p) for block in blocks for p in block.points()]
    assert got == expected
    assert [tuple(p) for p in iter_points(conn, PointFilter(session))] == expected
    per_device = [tuple(p) for p in iter_points(conn, PointFilter(session), by_device=True)]
    assert per_device == sorted(expected, key=lambda r: (r[0], r[4], r[2], r[3]))
    valid = [tuple(p) for p in iter_points(conn, PointFilter(session, t_from=START + 100, t_to=START + 300,
                                                                 valid_only=True))]
    assert valid == [r for r in expected if START + 100 <= r[4] <= START + 300 and not r[14] & UNUSABLE_FIX]
    conn.close()


def test_blocks_include_batches_not_yet_chunked(tmp_path, monkeypatch) -> None:
    db = tmp_path / "tail.sqlite"
    session, rec = overlapping_session(db, monkeypatch)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT indexed_batch FROM sessions").fetchone()[0] < 11  # a tail read raw
    live = [tuple(p) for p in iter_points(conn, PointFilter(session))]
    conn.close()
    rec.close()
    assert live == sorted(every_row(db, session), key=lambda r: (r[4], r[2], r[3]))


def test_short_runs_of_different_devices_are_gathered_into_blocks_that_keep_each_points_device(
        tmp_path, monkeypatch) -> None:
    """Devices taking turns (no chunk overlaps another): every chunk goes out as a run of its own
    device, and short runs are joined into blocks of several devices (as with 1,000 devices)."""
    monkeypatch.setattr(recorder_module, "FLUSH_MESSAGES", 10)  # a chunk per device per batch
    monkeypatch.setattr(points_module, "BLOCK_ROWS", 25)
    db = tmp_path / "turns.sqlite"
    rec = Recorder(db)
    session = rec.start_session("turns")
    for turn in range(12):
        batch = [{"ident": f"dev{turn % 3}", "timestamp": START + turn * 100 + i, "position.latitude": 1.0,
                  "position.longitude": 2.0, "device.name": f"name{turn % 3}"} for i in range(10)]
        body = orjson.dumps(batch)
        rec.write_batch(START + turn, "127.0.0.1", len(body), body, normalize_batch(batch, START + turn, body), 1.0)
    rec.close()
    expected = sorted(every_row(db, session), key=lambda r: (r[4], r[2], r[3]))
    conn = sqlite3.connect(db)
    blocks = list(iter_blocks(conn, PointFilter(session), join_short=True))
    conn.close()
    assert max(len(set(block.ident)) for block in blocks) > 1  # joined across devices
    assert [tuple(p) for block in blocks for p in block.points()] == expected
