"""The recording file: migrations, version guard, and the SQL view for ad-hoc queries."""

from __future__ import annotations

import sqlite3

import orjson
import pytest

from app.core.normalize import normalize_batch
from app.store.codec import compress_body
from app.store.queries import iter_messages
from app.store.recorder import Recorder
from app.store.schema import (
    DUPLICATES,
    MIGRATIONS,
    SCHEMA_VERSION,
    TRACKS_END_COVERING,
    SchemaTooNew,
    _statements,
    connect,
)
from app.store.stored_params import WAITING_SQL


def test_new_file_is_migrated_to_the_current_version_in_wal_mode(tmp_path) -> None:
    conn = connect(tmp_path / "a.sqlite")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    connect(tmp_path / "a.sqlite").close()  # re-opening an up-to-date file changes nothing


def test_file_from_a_newer_trackmon_is_refused_untouched(tmp_path) -> None:
    path = tmp_path / "future.sqlite"
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(SchemaTooNew, match="Upgrade trackmon"):
        connect(path)
    with pytest.raises(SchemaTooNew):
        connect(path, readonly=True)


def test_messages_view_unpacks_every_message_with_its_raw_json(tmp_path) -> None:
    recorder = Recorder(tmp_path / "v.sqlite")
    recorder.start_session()
    raws = [{"ident": "a", "timestamp": 10.0, "position.latitude": 1.0, "position.longitude": 2.0},
            {"ident": "b", "timestamp": 11.0, "x": "<&>"},
            {"ident": "a", "timestamp": 12.0, "position.valid": False}]
    body = orjson.dumps(raws)
    recorder.write_batch(100.0, "127.0.0.1", len(body), body, normalize_batch(raws, 100.0), 1.0)
    recorder.close()
    conn = sqlite3.connect(tmp_path / "v.sqlite")
    rows = conn.execute("SELECT ident, ts, lat, valid, flags, batch_index FROM messages ORDER BY ts").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [("a", 10.0, 1.0), ("b", 11.0, None), ("a", 12.0, None)]
    assert [r[5] for r in rows] == [0, 1, 2]  # position in the batch, where the raw JSON is
    assert rows[2][3] == 0 and rows[2][4] != 0
    index_plan = " ".join(str(r) for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT rows FROM tracks WHERE session_id = 1 AND ident = 'a' ORDER BY t_min"))
    assert "tracks_device_time" in index_plan


def file_before(path, migration: str) -> sqlite3.Connection:
    """A recording file as a trackmon without ``migration`` (and every later one) left it."""
    raw = sqlite3.connect(path)
    before = MIGRATIONS.index(migration)
    for script in MIGRATIONS[:before]:
        for statement in _statements(script):
            raw.execute(statement)
    raw.execute(f"PRAGMA user_version = {before}")
    return raw


def test_a_file_from_before_per_message_duplicates_is_migrated_and_keeps_its_data(tmp_path) -> None:
    path = tmp_path / "old.sqlite"
    raw = file_before(path, DUPLICATES)
    old_body = orjson.dumps([{"ident": "old", "timestamp": 1.0}])
    raw.execute("INSERT INTO sessions (name, started_at) VALUES ('old', 1.0)")
    raw.execute("INSERT INTO batches (session_id, received_at, wire_bytes, count, digest, body)"
                " VALUES (1, 1.0, ?, 1, x'00', ?)", (len(old_body), compress_body(old_body)))
    raw.commit()
    raw.close()
    recorder = Recorder(path)
    recorder.start_session()
    raws = [{"ident": "a", "timestamp": 10.0}, {"ident": "a", "timestamp": 10.0}]
    body = orjson.dumps(raws)
    result = recorder.write_batch(100.0, "p", len(body), body, normalize_batch(raws, 100.0, body), 1.0)
    recorder.close()
    assert result.duplicates == 1
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT count, duplicates FROM batches ORDER BY id").fetchall() == [(1, 0), (1, 1)]
    assert [m.message.ident for m in iter_messages(conn, 1)] == ["old"]
    assert conn.execute("SELECT sum(n) FROM tracks WHERE session_id = 1").fetchone()[0] == 1  # chunked on open


def test_replays_overlap_question_is_answered_from_the_index_after_migrating(tmp_path) -> None:
    path = tmp_path / "before.sqlite"
    raw = file_before(path, TRACKS_END_COVERING)
    raw.execute("INSERT INTO sessions (name, started_at) VALUES ('old', 1.0)")
    raw.execute("INSERT INTO tracks (session_id, ident, n, t_min, t_max, rows) VALUES (1, 'a', 1, 5.0, 5.0, '[]')")
    raw.commit()
    raw.close()
    conn = connect(path)
    plan = " ".join(str(r) for r in conn.execute(  # the question `ReplaySource._latest_rows` asks
        "EXPLAIN QUERY PLAN SELECT rows FROM tracks WHERE session_id = 1 AND ident = 'a' AND t_max >= 1 AND t_min < 9"))
    assert "tracks_device_end" in plan
    ids = conn.execute("SELECT id FROM tracks WHERE session_id = 1 AND ident = 'a' AND t_max >= 1 AND t_min < 9")
    assert [row[0] for row in ids] == [1]  # the data is untouched
    covering = " ".join(str(r) for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM tracks WHERE session_id = 1 AND ident = 'a' AND t_max >= 1 AND t_min < 9"))
    assert "COVERING INDEX tracks_device_end" in covering


def test_how_far_the_live_view_is_behind_is_read_from_the_batches_after_it(tmp_path) -> None:
    # Asked once a second on the GUI thread: by batch id (the few not shown yet), never through the
    # session's index (every batch of a day-long session).
    conn = connect(tmp_path / "lag.sqlite")
    plan = " ".join(str(r) for r in conn.execute("EXPLAIN QUERY PLAN " + WAITING_SQL, (10, 1)))
    assert "INTEGER PRIMARY KEY (rowid>?)" in plan and "batches_session" not in plan
