"""`trackmon simulate` against `trackmon record`, both real processes over loopback."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections import Counter

import orjson

from app.store.queries import iter_messages, list_sessions
from tests.conftest import http
from tests.processes import ROOT, free_port, recorder_process, trackmon


def all_messages(db) -> list:
    conn = sqlite3.connect(db)
    try:
        return [m for s in list_sessions(conn) for m in iter_messages(conn, s.id)]
    finally:
        conn.close()


def test_simulated_fleet_is_recorded_completely(tmp_path) -> None:
    db = tmp_path / "fleet.sqlite"
    with recorder_process(db, "--token", "tok") as rec:
        sent = trackmon("simulate", "--to", rec.url, "--token", "tok", "--devices", "7",
                        "--batch", "250", "--rate", "0", "--count", "3000", "--seed", "4")
        assert sent.returncode == 0, sent.stderr
        assert "sent 3000 messages in 12 batches" in sent.stdout
        output = rec.stop()
    assert "3000 messages in 12 batches" in output
    messages = all_messages(db)
    assert len(messages) == 3000
    assert len({m.message.ident for m in messages}) == 7
    assert sum(m.message.has_fix for m in messages) > 2800  # a few deliberately bad fixes
    [session] = list_sessions(sqlite3.connect(db))
    assert session.devices == 7 and session.messages == 3000 and session.ended_at is not None


def test_nested_stream_records_the_same_data_as_flat(tmp_path) -> None:
    results = []
    for shape in ([], ["--nested"]):
        db = tmp_path / f"shape{len(shape)}.sqlite"
        with recorder_process(db) as rec:
            sent = trackmon("simulate", "--to", rec.url, "--rate", "0", "--count", "200",
                            "--devices", "3", "--seed", "9", "--start", "1700000000", *shape)
            assert sent.returncode == 0, sent.stderr
        results.append([(m.message.ident, m.message.ts, m.message.lat, m.message.params)
                        for m in all_messages(db)])
    assert results[0] == results[1]


def test_kill_9_mid_stream_then_restart_loses_and_duplicates_nothing(tmp_path) -> None:
    db = tmp_path / "crash.sqlite"
    port = free_port()
    total = 30_000
    with recorder_process(db, port=port) as first:
        sender = subprocess.Popen(
            [sys.executable, "-m", "app", "simulate", "--to", first.url, "--rate", "0",
             "--count", str(total), "--batch", "300", "--devices", "25", "--seed", "2"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while http("GET", first.url + "status").body["messages"] < 6000:
                assert time.monotonic() < deadline, "stream never got going"
                time.sleep(0.02)
            first.kill_hard()  # no chance to finish the batch in hand or close the session
            time.sleep(0.5)  # the emulator now meets refused connections and backs off
            with recorder_process(db, port=port):
                _out, err = sender.communicate(timeout=120)
            assert sender.returncode == 0, err
            assert "delivery failed, will re-send" in err
        finally:
            if sender.poll() is None:
                sender.kill()
                sender.wait(10)
    messages = all_messages(db)
    keys = Counter((m.message.ident, m.message.ts) for m in messages)
    assert len(keys) == total, "every message sent is in the file"
    assert max(keys.values()) == 1, "and none of them twice"
    sessions = list_sessions(sqlite3.connect(db))
    assert len(sessions) == 2 and sessions[0].ended_at is None  # the killed run never closed
    # The per-device track chunks the killed run had not written yet were rebuilt on restart.
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT sum(n) FROM tracks").fetchone()[0] == total
    assert conn.execute("SELECT count(*) FROM (SELECT DISTINCT batch_id, batch_index FROM messages)"
                        ).fetchone()[0] == total


def test_append_records_into_the_previous_session(tmp_path) -> None:
    db = tmp_path / "append.sqlite"
    for extra in ([], ["--append"]):
        with recorder_process(db, *extra) as rec:
            assert trackmon("simulate", "--to", rec.url, "--rate", "0", "--count", "50",
                            "--seed", str(len(extra))).returncode == 0
    [session] = list_sessions(sqlite3.connect(db))
    assert session.messages == 100


def test_sessions_command_lists_counts_and_span(tmp_path) -> None:
    db = tmp_path / "s.sqlite"
    with recorder_process(db, "--session-name", "bench-1") as rec:
        trackmon("simulate", "--to", rec.url, "--rate", "0", "--count", "40", "--devices", "4",
                 "--start", "2026-01-02T03:04:05Z", "--interval", "10")
    listing = trackmon("sessions", "--db", str(db))
    assert listing.returncode == 0
    line = listing.stdout.splitlines()[1].split()
    assert line[:4] == ["1", "bench-1", "4", "40"]
    assert "2026-01-02 03:04:05" in listing.stdout and "2026-01-02 03:05:42" in listing.stdout  # 39 × 2.5 s later
    assert "closed" in listing.stdout
    as_json = trackmon("sessions", "--db", str(db), "--json")
    assert '"messages": 40' in as_json.stdout


def test_replay_to_a_second_trackmon_delivers_every_message_once(tmp_path) -> None:
    source = tmp_path / "source.sqlite"
    with recorder_process(source) as rec:
        assert trackmon("simulate", "--to", rec.url, "--rate", "0", "--count", "2500", "--batch", "300",
                        "--devices", "6", "--seed", "12", "--nested").returncode == 0
    target = tmp_path / "target.sqlite"
    with recorder_process(target, "--token", "second") as second:
        result = trackmon("replay", "--db", str(source), "--to", second.url, "--token", "second",
                          "--speed", "max", "--batch", "700")
        assert result.returncode == 0, result.stderr
        assert "replayed 2500 messages of session 1 in 4 batches" in result.stdout
    sent = [orjson.dumps(raw) for _, raw in raw_messages(source)]
    received = [orjson.dumps(raw) for _, raw in raw_messages(target)]
    assert sorted(received) == sorted(sent) and len(set(received)) == 2500


def test_replay_keeps_the_original_pace_scaled_by_speed(tmp_path) -> None:
    source = tmp_path / "paced.sqlite"
    with recorder_process(source) as rec:
        assert trackmon("simulate", "--to", rec.url, "--rate", "20", "--duration", "1.5",
                        "--batch", "5").returncode == 0
    target = tmp_path / "paced-target.sqlite"
    with recorder_process(target) as second:
        started = time.monotonic()
        assert trackmon("replay", "--db", str(source), "--to", second.url, "--speed", "3").returncode == 0
        elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 5  # ~1.5 s of recording at 3x, plus process start-up


def raw_messages(db) -> list:
    from app.server.replay_sender import recorded_messages
    conn = sqlite3.connect(db)
    try:
        return [(None, raw) for _, raw in recorded_messages(conn, 1)]
    finally:
        conn.close()
