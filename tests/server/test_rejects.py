"""What refused requests leave in the recording: bounded, redacted, bursts collapsed, budgeted."""

from __future__ import annotations

import sqlite3
import urllib.error
import urllib.request

import orjson

from app.server.auth import HeaderAuth
from app.server.listener import ListenerConfig
from app.store import recorder as recorder_module
from app.store import schema
from app.store.queries import list_rejects, list_sessions
from tests.conftest import running_listener

TOKEN = "reject-test-token"
GOOD = {"ident": "r1", "timestamp": 1_700_000_000.0}


def rejects(db) -> list[dict]:
    conn = sqlite3.connect(db)
    try:
        return list_rejects(conn)
    finally:
        conn.close()


def post_raw(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code


def test_an_unauthenticated_request_keeps_a_few_clipped_headers_and_no_body(db_path) -> None:
    fat = {f"X-Fat-{i:03}": "v" * 8000 for i in range(100)}
    headers = {"Content-Type": "application/json", "Cookie": "session=abc123", **fat}
    body = orjson.dumps([GOOD] * 200)
    with running_listener(db_path, ListenerConfig(auth=HeaderAuth.bearer(TOKEN))) as served:
        url = served.url + "?api_key=k3y-value&page=2&access_token=t0k"
        assert post_raw(url, body, headers) == 401
    [reject] = rejects(db_path)
    kept = reject["headers"]
    assert len(kept) <= 25 and "more headers" in kept["…"]
    assert all(len(value) <= 256 for value in kept.values())
    assert kept["Cookie"].startswith("<redacted") and "abc123" not in repr(reject)
    assert reject["path"] == "/?api_key=<redacted>&page=2&access_token=<redacted>"
    assert reject["body"] == b"" and reject["body_bytes"] == len(body)
    stored = len(orjson.dumps(kept)) + len(reject["path"]) + len(reject["reason"])
    assert stored < 8_000  # was ~820 KB of headers for this one request


def test_an_authenticated_refusal_keeps_a_preview_of_the_body(db_path) -> None:
    with running_listener(db_path, ListenerConfig(auth=HeaderAuth.bearer(TOKEN))) as served:
        reply = served.post(None, raw=b"[" + b'{"ident": "x"},' * 2_000, headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status == 400
    [reject] = rejects(db_path)
    assert 0 < len(reject["body"]) <= 4096 and reject["body_bytes"] > 4096
    assert reject["headers"]["Authorization"].startswith("<redacted")


def test_a_burst_of_identical_refusals_is_one_row_with_a_count(db_path) -> None:
    with running_listener(db_path, ListenerConfig(auth=HeaderAuth.bearer(TOKEN))) as served:
        events = []
        served.listener.on_request(events.append)
        for _ in range(50):
            assert served.post([GOOD]).status == 401
        assert served.post([GOOD], headers={"Authorization": "Bearer wrong"}).status == 401
        assert served.post([GOOD], path="/elsewhere").status == 404
    rows = rejects(db_path)
    assert [(r["status"], r["count"]) for r in rows] == [(401, 50), (401, 1), (404, 1)]
    assert rows[0]["last_at"] >= rows[0]["received_at"]
    assert [e.repeats for e in events][:3] == [1, 2, 3] and events[49].repeats == 50
    assert {e.reject_id for e in events[:50]} == {rows[0]["id"]}
    conn = sqlite3.connect(db_path)
    assert list_sessions(conn)[0].rejects == 52  # every refusal still counts
    conn.close()


def test_the_rejects_table_stays_within_its_budget(db_path, monkeypatch) -> None:
    monkeypatch.setattr(recorder_module, "REJECT_MAX_ROWS", 20)
    with running_listener(db_path) as served:
        for i in range(60):  # distinct paths: distinct refusals, no burst to fold them into
            assert served.post([GOOD], path=f"/wrong-{i}").status == 404
        assert served.post([GOOD]).status == 200
    rows = rejects(db_path)
    assert len(rows) <= 20
    assert rows[-1]["path"] == "/wrong-59"  # the oldest went first


def test_rejects_of_an_older_file_are_migrated_as_single_refusals(tmp_path) -> None:
    path = tmp_path / "old.sqlite"
    before = schema.MIGRATIONS.index(schema.REJECT_BURSTS)  # the file as it was before this migration
    raw = sqlite3.connect(path)
    for script in schema.MIGRATIONS[:before]:
        raw.executescript(script)
    raw.execute(f"PRAGMA user_version = {before}")
    raw.execute("INSERT INTO rejects (received_at, peer, method, path, status, reason, headers, body, body_bytes)"
                " VALUES (5.0, 'p', 'POST', '/', 400, 'bad', '{}', x'', 0)")
    raw.commit()
    raw.close()
    schema.connect(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    [reject] = list_rejects(conn)
    conn.close()
    assert (reject["count"], reject["last_at"]) == (1, 5.0)


def test_a_burst_varying_only_its_query_string_is_still_one_row(db_path) -> None:
    with running_listener(db_path, ListenerConfig(auth=HeaderAuth.bearer(TOKEN))) as served:
        for page in range(30):
            assert post_raw(f"{served.url}?page={page}&key=k{page}", b"[]", {"Content-Type": "application/json"}) == 401
    [reject] = rejects(db_path)
    assert reject["count"] == 30 and reject["path"] == "/?page=0&key=<redacted>"
