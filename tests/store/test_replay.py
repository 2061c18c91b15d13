"""Seeking in a recorded session lands on the right state, checked against brute force."""

from __future__ import annotations

import random
import sqlite3

import orjson
import pytest

from app.core.normalize import UNUSABLE_FIX, normalize_batch
from app.store import recorder as recorder_module
from app.store.points import PointFilter, iter_points
from app.store.recorder import Recorder
from app.store.replay import ReplaySource

T0 = 1_767_225_600.0


@pytest.fixture
def session_db(tmp_path, monkeypatch):
    monkeypatch.setattr(recorder_module, "FLUSH_MESSAGES", 40)  # many small chunks
    monkeypatch.setattr(recorder_module, "FLUSH_SECONDS", 3600.0)
    rng = random.Random(4)
    db = tmp_path / "replay.sqlite"
    rec = Recorder(db)
    rec.start_session()
    batches = []
    for b in range(30):
        batch = []
        for ident in ("a", "b", "c"):
            ts = T0 + b * 10 + rng.random()
            message = {"ident": ident, "timestamp": ts, "position.latitude": 50 + b / 100,
                       "position.longitude": 10 + rng.random() / 100}
            if rng.random() < 0.15:
                message["position.valid"] = False
            batch.append(message)
        batches.append(batch)
    # Device "c" uploads buffered history late: old timestamps in the last batches.
    batches.append([{"ident": "c", "timestamp": T0 + 5 + i * 20.5, "position.latitude": 1.0,
                     "position.longitude": 1.0} for i in range(12)])
    for i, batch in enumerate(batches):
        body = orjson.dumps(batch)
        rec.write_batch(T0 + i, "p", len(body), body, normalize_batch(batch, T0 + i, body), 0.0)
    rec.close()
    conn = sqlite3.connect(db)
    yield conn
    conn.close()


def brute_force(conn, t: float, trail: int) -> dict:
    rows = [p for p in iter_points(conn, PointFilter(1)) if p.ts <= t]
    out = {}
    for ident in {p.ident for p in rows}:
        mine = [p for p in rows if p.ident == ident]
        fixes = [p for p in mine if not p.flags & UNUSABLE_FIX]
        out[ident] = (mine[-1].ts, mine[-2].ts if len(mine) > 1 else None,
                      fixes[-1].ts if fixes else None, [(p.lat, p.lon) for p in fixes[-trail:]])
    return out


def test_chunks_really_overlap_in_this_session(session_db) -> None:
    spans = session_db.execute("SELECT t_min, t_max FROM tracks WHERE ident = 'c' ORDER BY t_min").fetchall()
    assert len(spans) >= 3
    assert any(later[0] < earlier[1] for i, earlier in enumerate(spans) for later in spans[i + 1:])


@pytest.mark.parametrize("trail", [1, 5, 50])
def test_snapshot_at_any_instant_matches_brute_force(session_db, trail) -> None:
    source = ReplaySource(session_db, 1)
    assert source.idents == ["a", "b", "c"]
    for t in [T0 - 1, T0 + 0.5, T0 + 99.99, T0 + 150, T0 + 237.7, T0 + 290, T0 + 1000]:
        expected = brute_force(session_db, t, trail)
        got = source.snapshot(t, trail)
        assert set(got) == set(expected), t
        for ident, snap in got.items():
            latest, previous, fix, path = expected[ident]
            assert snap.latest.message.ts == latest
            assert (snap.previous.message.ts if snap.previous else None) == previous
            assert (snap.fix.message.ts if snap.fix else None) == fix
            assert snap.trail == path, (t, ident)


def test_stepping_and_playing_forward(session_db) -> None:
    source = ReplaySource(session_db, 1)
    everything = [p.ts for p in iter_points(session_db, PointFilter(1))]
    assert source.start == everything[0] and source.end == everything[-1]
    middle = everything[40]
    assert source.next_time(middle) == everything[41]
    assert source.previous_time(middle) == everything[39]
    assert source.next_time(source.end) is None and source.previous_time(source.start) is None
    played = [p.ts for p in source.points_between(everything[10], everything[50])]
    assert played == everything[11:51]
    message = source.message(next(source.points_between(everything[10], everything[11])))
    assert message.message.ts == everything[11] and message.message.params["position.latitude"] is not None


def test_density_spreads_every_message_over_the_timeline(session_db) -> None:
    source = ReplaySource(session_db, 1)
    density = source.density(50)
    assert len(density) == 50 and sum(density) == pytest.approx(102)  # 90 + 12 messages
    assert density[0] > 0 and density[-1] > 0


def test_a_subset_of_devices_replays_alone(session_db) -> None:
    source = ReplaySource(session_db, 1, idents=("b",))
    assert source.idents == ["b"] and set(source.snapshot(T0 + 200, 3)) == {"b"}
    assert {p.ident for p in source.points_between(T0, T0 + 400)} == {"b"}


def test_seek_trails_fit_a_budget_for_large_fleets() -> None:
    from app.store.replay import SEEK_TRAIL_BUDGET, seek_trail
    assert seek_trail(200, 50) == 200
    assert seek_trail(200, 1000) * 1000 <= SEEK_TRAIL_BUDGET
    assert seek_trail(200, 100_000) == 20 and seek_trail(5, 1) == 5
