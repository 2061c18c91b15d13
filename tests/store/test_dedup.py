"""Re-sent messages are recorded once, however the retry is cut: per-message keys, across
restarts, bounded, and kept out of views, tracks, exports, replay and re-sending. Imports keep
every point."""

from __future__ import annotations

import io
import random
import sqlite3

import orjson
import pytest

from app.core.normalize import normalize_batch
from app.server.replay_sender import recorded_messages
from app.store.exporters import run_export
from app.store.importers import import_file
from app.store.points import PointFilter
from app.store.queries import iter_messages, list_sessions
from app.store.recorder import Recorder
from app.store.replay import ReplaySource
from app.store.seen import WINDOW
from tests.conftest import http, running_listener
from tests.store.faulty import assert_each_once, batch, names


def write(rec: Recorder, messages: list, received_at: float = 100.0):
    body = orjson.dumps(messages)
    return rec.write_batch(received_at, "127.0.0.1", len(body), body, normalize_batch(messages, received_at, body), 1.0)


def test_a_retry_cut_differently_is_recorded_once_everywhere(db_path) -> None:
    a, b, c = batch(0), batch(1), batch(2)
    seen_by_views: list[tuple[str, float]] = []
    with running_listener(db_path) as served:
        served.listener.on_batch(lambda _event, messages: seen_by_views.extend((m.ident, m.ts) for m in messages))
        first = served.post(a)
        assert first.status == 200 and first.body["duplicates"] == 0
        recut = served.post(a[25:] + b)  # the reply to `a` was lost; the retry was cut anew
        assert recut.status == 200 and recut.body["accepted"] == 75 and recut.body["duplicates"] == 25
        assert not recut.body["duplicate"]
        grown = served.post(a + b + c)  # and grew
        assert grown.body["duplicates"] == 100 and not grown.body["duplicate"]
        nothing_new = served.post(b[10:] + a[:5])
        assert nothing_new.status == 200 and nothing_new.body["duplicate"] and nothing_new.body["duplicates"] == 45
        identical = served.post(a)  # byte for byte: recognised by the batch digest, as before
        assert identical.body["duplicate"] and identical.body["batch"] == first.body["batch"]
        status = http("GET", served.url.rstrip("/") + "/status").body
        assert status["messages"] == 150 and status["duplicates"] == 25 + 100 + 45 + 50
        assert status["retries"] == 2
    expected = names(a + b + c)
    assert sorted(seen_by_views) == sorted(expected), "views get each new message once"
    assert_each_once(db_path, expected)  # raw batches, track chunks, the points exports read
    conn = sqlite3.connect(db_path)
    try:
        [session] = list_sessions(conn)
        assert session.messages == 150 and session.duplicates == 220
        csv_out = io.StringIO()
        assert run_export(conn, "csv", PointFilter(session.id), csv_out).written == 150
        gpx_out = io.StringIO()
        assert run_export(conn, "gpx", PointFilter(session.id), gpx_out).written == 150
        source = ReplaySource(conn, session.id)
        replayed = [(p.ident, p.ts) for p in source.points_between(source.start - 1, source.end)]
        assert sorted(replayed) == sorted(expected)
        resent = [orjson.dumps(raw) for _, raw in recorded_messages(conn, session.id)]  # `trackmon replay`
        assert len(resent) == len(set(resent)) == 150
        # The stored retry holds only its new messages, each exactly as sent.
        stored = {(m.message.ident, m.message.ts): m.message.params for m in iter_messages(conn, session.id)}
        assert stored[(b[0]["ident"], float(b[0]["timestamp"]))] == b[0]
    finally:
        conn.close()


def test_repeats_inside_a_batch_are_dropped_but_messages_without_time_never_merge(tmp_path) -> None:
    rec = Recorder(tmp_path / "r.sqlite")
    rec.start_session()
    message = batch(0)[0]
    result = write(rec, [message, message, batch(0)[1]])
    assert (result.count, result.duplicates, result.new) == (3, 1, 2)
    untimed = {"ident": "beacon", "battery": 3.7}  # no timestamp, no server.timestamp
    assert write(rec, [untimed, untimed]).duplicates == 0
    assert write(rec, [untimed, {"ident": "beacon", "battery": 3.6}]).duplicates == 0
    rec.close()
    conn = sqlite3.connect(tmp_path / "r.sqlite")
    stored = [m.message.params for m in iter_messages(conn, 1)]
    assert stored.count(message) == 1 and stored.count(untimed) == 3 and len(stored) == 6


def test_nested_and_flat_notation_of_one_message_are_one_message(tmp_path) -> None:
    rec = Recorder(tmp_path / "n.sqlite")
    rec.start_session()
    flat = {"ident": "n1", "timestamp": 1000.0, "position.latitude": 1.5, "position.longitude": 2.5}
    nested = {"ident": "n1", "timestamp": 1000.0, "position": {"latitude": 1.5, "longitude": 2.5}}
    assert write(rec, [flat]).duplicates == 0
    assert write(rec, [nested]).duplicate
    assert write(rec, [dict(flat, timestamp=1001.0)]).duplicates == 0  # another time: another message
    rec.close()


def test_a_recut_retry_after_a_restart_is_still_recognised(tmp_path) -> None:
    db = tmp_path / "restart.sqlite"
    rec = Recorder(db)
    rec.start_session()
    write(rec, batch(0))
    write(rec, batch(1))
    rec.close()
    again = Recorder(db)  # the window is rebuilt from the file's track chunks
    again.start_session()
    result = write(again, batch(1)[20:] + batch(2))
    assert (result.duplicates, result.new) == (30, 50)
    again.close()
    assert_each_once(db, names(batch(0) + batch(1) + batch(2)))


def test_the_window_is_bounded(tmp_path) -> None:
    db = tmp_path / "bounded.sqlite"
    rec = Recorder(db, window=100)
    rec.start_session()
    for number in range(4):
        write(rec, batch(number))
    # A retry of messages still in the window is recognised...
    assert write(rec, batch(3)[40:] + batch(4)).duplicates == 10
    # ...one of messages that left it is recorded again, unless byte-identical to its batch.
    assert write(rec, batch(0)).duplicate
    late = write(rec, batch(0)[:10] + batch(5))
    assert late.duplicates == 0 and late.new == 60
    rec.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT sum(count) FROM batches").fetchone()[0] == 6 * 50 + 10
    conn.close()


def test_messages_of_one_instant_are_told_apart_by_content(tmp_path) -> None:
    # A tracker's two records stamped the same instant and received in one packet share ident,
    # timestamp and server.timestamp; only their content tells them apart, before and after a
    # restart (when the window is rebuilt from the file).
    db = tmp_path / "instant.sqlite"
    same = {"ident": "t", "timestamp": 500.0, "server.timestamp": 501.0}
    event, periodic = same | {"event": "ignition"}, same | {"event": None, "battery": 12.1}
    rec = Recorder(db)
    rec.start_session()
    assert write(rec, [event, periodic]).duplicates == 0
    assert write(rec, [periodic, same]).duplicates == 1
    rec.close()
    rec = Recorder(db)
    rec.start_session()
    result = write(rec, [same | {"event": "door"}, event, periodic, same])
    assert (result.duplicates, result.new) == (3, 1)
    rec.close()
    conn = sqlite3.connect(db)
    stored = [m.message.params.get("event") for session in (1, 2) for m in iter_messages(conn, session)]
    assert sorted(map(str, stored)) == ["None", "None", "door", "ignition"]
    conn.close()


def test_imports_keep_every_point_and_do_not_hide_live_data(tmp_path) -> None:
    db = tmp_path / "imports.sqlite"
    gpx = tmp_path / "twice.gpx"
    point = '<trkpt lat="50.1" lon="10.2"><time>2026-01-01T00:00:00Z</time></trkpt>'
    gpx.write_text('<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">'
                   f'<trk><name>car</name><trkseg>{point}{point}{point}</trkseg></trk></gpx>')
    summary = import_file(db, gpx)
    session = summary.session_id
    assert summary.points == 3
    conn = sqlite3.connect(db)
    assert len(list(iter_messages(conn, session))) == 3, "identical points of a file are all kept"
    imported = next(iter_messages(conn, session)).message.params
    rec = Recorder(db)
    rec.start_session()
    assert write(rec, [imported]).duplicates == 0, "a live message is not hidden by an imported one"
    rec.close()
    rec = Recorder(db)  # the window rebuilt from the file leaves imports out too
    rec.start_session()
    assert write(rec, [imported | {"position.hdop": 1.0}, imported]).duplicates == 1
    rec.close()
    conn.close()


@pytest.mark.parametrize("window", [WINDOW, 30])
def test_random_recuts_repeats_and_restarts_store_every_message_once(tmp_path, window) -> None:
    # Messages come in pairs that share ident, timestamp and server.timestamp (two records of
    # one instant), so most look-ups need the content comparison, including after a restart.
    # A window smaller than the retries' reach may record a message again, but never loses one.
    rng = random.Random(11)
    pool = [{"ident": f"d{(i // 2) % 5}", "timestamp": 1000.0 + i // 2, "server.timestamp": 1000.5 + i // 2,
             "n": i} for i in range(400)]
    db = tmp_path / "random.sqlite"
    rec = Recorder(db, window=window)
    rec.start_session()
    sent: set[bytes] = set()
    for request in range(150):
        if request % 37 == 36:
            rec.close()
            rec = Recorder(db, window=window)
            rec.start_session(append=True)
        start = rng.randrange(0, 380)
        messages = pool[start:start + rng.randrange(1, 40)]
        messages = messages + rng.sample(messages, k=min(len(messages), rng.randrange(0, 4)))  # repeats
        rng.shuffle(messages)
        write(rec, messages, received_at=2000.0 + request)
        sent |= {orjson.dumps(m) for m in messages}
    rec.close()
    conn = sqlite3.connect(db)
    stored = [orjson.dumps(m.message.params) for m in iter_messages(conn, 1)]
    assert set(stored) == sent, "nothing lost"
    if window == WINDOW:
        assert len(stored) == len(set(stored)), "nothing doubled"
    chunked = conn.execute("SELECT count(*), count(DISTINCT batch_id || ':' || batch_index) FROM messages").fetchone()
    assert chunked == (len(stored), len(stored))
    conn.close()


def test_a_large_import_does_not_push_live_messages_out_of_the_rebuilt_window(tmp_path) -> None:
    db = tmp_path / "big-import.sqlite"
    rec = Recorder(db, window=100)
    rec.start_session()
    write(rec, batch(0))  # 50 live messages
    rec.start_session()  # their chunks are written now, so the import's come after them in the file
    rec.import_session("import", [[{"ident": f"imp{i}", "timestamp": 1_600_000_000 + i} for i in range(500)]],
                       b"file-1")
    rec.close()
    again = Recorder(db, window=100)  # rebuilt from the file: the import must not count towards the 100
    again.start_session()
    result = write(again, batch(0)[10:] + batch(1)[:1])  # a re-cut retry of the live batch
    assert (result.duplicates, result.new) == (40, 1)
    again.close()


def test_a_recovery_during_an_import_does_not_double_its_points(tmp_path) -> None:
    db = tmp_path / "import-recover.sqlite"
    rec = Recorder(db)
    rec.start_session()

    def batches():
        yield [{"ident": "imp", "timestamp": 1_600_000_000 + i} for i in range(40)]
        rec._executor.submit(rec._recover).result()  # what reopening the file after a fault runs
        yield [{"ident": "imp", "timestamp": 1_600_000_100 + i} for i in range(20)]

    session, new = rec.import_session("import", batches(), b"file-2")
    rec.close()
    conn = sqlite3.connect(db)
    rows = [row for (packed,) in conn.execute("SELECT rows FROM tracks WHERE session_id = ?", (session,))
            for row in orjson.loads(packed)]
    conn.close()
    assert new == 60 and len(rows) == 60

