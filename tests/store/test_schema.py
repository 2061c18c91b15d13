"""The recording file: migrations, version guard, and the SQL view for ad-hoc queries."""

from __future__ import annotations

import sqlite3

import orjson
import pytest

from app.core.normalize import normalize_batch
from app.store.recorder import Recorder
from app.store.schema import SCHEMA_VERSION, SchemaTooNew, connect


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
