"""The listener over real loopback HTTP: what is accepted, refused, recorded and answered."""

from __future__ import annotations

import gzip
import sqlite3
import zlib
from pathlib import Path

import orjson

from app.core import normalize as n
from app.server.auth import HeaderAuth
from app.server.listener import ListenerConfig
from app.store.queries import iter_messages, list_rejects, list_sessions, raw_message
from tests.conftest import http, running_listener

TOKEN = "s3cret-token-value"
GOOD = {"ident": "352625333222111", "timestamp": 1650636570.4, "position.latitude": 49.07,
        "position.longitude": 28.63}


def messages_in(db: Path) -> list:
    conn = sqlite3.connect(db)
    try:
        session = max(s.id for s in list_sessions(conn))
        return list(iter_messages(conn, session))
    finally:
        conn.close()


def rejects_in(db: Path) -> list[dict]:
    conn = sqlite3.connect(db)
    try:
        return list_rejects(conn)
    finally:
        conn.close()


def test_batch_is_committed_before_the_200_and_readable_back(served) -> None:
    batch = [dict(GOOD, timestamp=1650636570.0 + i) for i in range(50)]
    reply = served.post(batch)
    assert reply.status == 200 and reply.body["accepted"] == 50 and not reply.body["duplicate"]
    # A separate connection sees the data as soon as the reply arrived: it was committed.
    stored = messages_in(served.db)
    assert [s.message.ts for s in stored] == [m["timestamp"] for m in batch]
    assert stored[0].message.ident == "352625333222111"
    assert raw_message(sqlite3.connect(served.db), stored[3].batch_id, 3) == batch[3]


def test_single_object_and_object_wrapped_array_are_accepted(db_path) -> None:
    with running_listener(db_path, ListenerConfig(messages_path="data.items")) as served:
        assert served.post({"data": {"items": [GOOD, GOOD | {"ident": "2"}]}}).body["accepted"] == 2
        assert served.post({"data": {"items": GOOD}}).body["accepted"] == 1
        missing = served.post({"data": {}})
        assert missing.status == 422 and "data.items" in missing.body["detail"]
    with running_listener(db_path) as served:
        assert served.post(GOOD | {"ident": "single"}).body["accepted"] == 1
    assert [s.message.ident for s in messages_in(db_path)] == ["single"]


def test_gzip_and_deflate_bodies_are_decoded(served) -> None:
    body = orjson.dumps([GOOD, GOOD | {"ident": "b"}])
    assert served.post(None, raw=gzip.compress(body), headers={"Content-Encoding": "gzip"}).body["accepted"] == 2
    other = orjson.dumps([GOOD | {"ident": "c"}, GOOD | {"ident": "d"}])  # new messages, not a re-send
    deflated = served.post(None, raw=zlib.compress(other + b" "), headers={"Content-Encoding": "deflate"})
    assert deflated.status == 200 and deflated.body["accepted"] == 2
    assert len(messages_in(served.db)) == 4


def test_resent_batch_is_recorded_once_and_counted_as_a_retry(served) -> None:
    batch = [GOOD | {"timestamp": 1650636570.0 + i} for i in range(10)]
    first = served.post(batch)
    again = served.post(batch)
    assert again.status == 200 and again.body["duplicate"] and again.body["batch"] == first.body["batch"]
    assert len(messages_in(served.db)) == 10
    [session] = list_sessions(sqlite3.connect(served.db))
    assert session.retries == 1 and session.messages == 10
    status = http("GET", served.url.rstrip("/") + "/status")
    assert status.body["retries"] == 1 and status.body["messages"] == 10


def test_messages_without_ident_or_with_bad_fields_are_stored_flagged_not_dropped(served) -> None:
    batch = [GOOD, {"timestamp": 5, "position.latitude": 1, "position.longitude": 1},
             GOOD | {"position.latitude": "north"}, 17, GOOD | {"position.valid": False}]
    reply = served.post(batch)
    assert reply.status == 200 and reply.body["accepted"] == 5 and reply.body["flagged"] == 4
    flags = [s.message.flags for s in messages_in(served.db)]
    assert flags[0] == 0
    assert flags[1] & n.NO_IDENT and flags[2] & n.BAD_VALUE
    assert flags[3] & n.NOT_OBJECT and flags[4] & n.POSITION_INVALID


def test_wrong_or_missing_token_is_401_without_echoing_the_secret(db_path) -> None:
    config = ListenerConfig(auth=HeaderAuth.bearer(TOKEN))
    with running_listener(db_path, config) as served:
        missing = served.post([GOOD])
        wrong = served.post([GOOD], headers={"Authorization": "Bearer nope"})
        right = served.post([GOOD], headers={"Authorization": f"Bearer {TOKEN}"})
    assert missing.status == 401 and "Authorization: Bearer <token>" in missing.body["detail"]
    assert wrong.status == 401 and "does not match" in wrong.body["detail"]
    assert TOKEN not in orjson.dumps([missing.body, wrong.body]).decode()
    assert right.status == 200
    rejects = rejects_in(db_path)
    assert [r["status"] for r in rejects] == [401, 401]
    assert rejects[1]["headers"]["Authorization"].startswith("<redacted")
    assert "nope" not in orjson.dumps(rejects[1]["headers"]).decode()
    assert len(messages_in(db_path)) == 1


def test_invalid_json_is_400_and_the_raw_body_is_kept(served) -> None:
    reply = served.post(None, raw=b'[{"ident": "a",')
    assert reply.status == 400 and reply.body["error"] == "invalid_json"
    [reject] = rejects_in(served.db)
    assert reject["status"] == 400 and reject["body"] == b'[{"ident": "a",'
    assert "invalid JSON" in reject["reason"]
    assert served.post(None, raw=b"").body["detail"] == "empty body"


def test_json_that_is_not_an_array_or_object_is_422(served) -> None:
    for body in (b"42", b'"text"', b"null", b"true"):
        reply = served.post(None, raw=body)
        assert reply.status == 422, body
    assert [r["status"] for r in rejects_in(served.db)] == [422] * 4


def test_too_large_bodies_are_413_whether_declared_streamed_or_compressed(db_path) -> None:
    config = ListenerConfig(max_body=10_000)
    big = orjson.dumps([GOOD] * 200)
    assert len(big) > 10_000
    with running_listener(db_path, config) as served:
        declared = served.post(None, raw=big)
        bomb = served.post(None, raw=gzip.compress(b"[" + b" " * 50_000 + b"]"),
                           headers={"Content-Encoding": "gzip"})
        fine = served.post([GOOD] * 5)
    assert declared.status == 413 and "10000" in declared.body["detail"]
    assert bomb.status == 413 and "decompression" in bomb.body["detail"]
    assert len(gzip.compress(b"[" + b" " * 50_000 + b"]")) < 10_000
    assert fine.status == 200
    rejects = rejects_in(db_path)
    assert [r["status"] for r in rejects] == [413, 413]
    assert rejects[0]["body_bytes"] == len(big) and 0 < len(rejects[0]["body"]) <= len(big)


def test_wrong_content_type_or_encoding_is_415(served) -> None:
    form = served.post(None, raw=b"a=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    brotli = served.post(None, raw=b"xx", headers={"Content-Encoding": "br"})
    assert form.status == 415 and "application/json" in form.body["detail"]
    assert brotli.status == 415 and "br" in brotli.body["detail"]
    ok = served.post(None, raw=orjson.dumps([GOOD]), headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok.status == 200


def test_post_to_the_wrong_path_is_404_and_kept_so_the_user_can_see_it(db_path) -> None:
    with running_listener(db_path, ListenerConfig(path="/flespi")) as served:
        wrong = served.post([GOOD], path="/other")
        right = served.post([GOOD])
    # The answer does not tell a stranger where the stream path is; the local reject row does.
    assert wrong.status == 404 and "/flespi" not in orjson.dumps(wrong.body).decode()
    assert right.status == 200
    [reject] = rejects_in(db_path)
    assert reject["path"] == "/other" and "/flespi" in reject["reason"]


def test_rejects_never_lose_what_was_already_accepted(served) -> None:
    assert served.post([GOOD]).status == 200
    for raw in (b"{", b"7", b""):
        served.post(None, raw=raw)
    assert served.post([GOOD | {"ident": "z"}]).status == 200
    assert [s.message.ident for s in messages_in(served.db)] == ["352625333222111", "z"]


def test_status_endpoint_reports_live_totals(served) -> None:
    served.post([GOOD, GOOD | {"ident": "q"}])
    served.post(None, raw=b"oops")
    status = http("GET", served.url.rstrip("/") + "/status")
    assert status.status == 200
    body = status.body
    assert body["batches"] == 1 and body["messages"] == 2 and body["rejects"] == 1
    assert body["last_batch_at"] is not None and body["uptime_s"] >= 0
    assert http("PUT", served.url, b"x").status == 405
    assert http("GET", served.url.rstrip("/") + "/nothing").status == 404


def test_request_events_describe_every_post(served) -> None:
    events = []
    served.listener.on_request(events.append)
    served.post([GOOD])
    served.post(None, raw=b"{")
    assert [(e.status, e.count) for e in events] == [(200, 1), (400, 0)]
    assert events[1].reason.startswith("invalid JSON") and events[1].reject_id is not None


def test_broken_gzip_is_400_and_kept(served) -> None:
    reply = served.post(None, raw=gzip.compress(orjson.dumps([GOOD]))[:-12], headers={"Content-Encoding": "gzip"})
    assert reply.status == 400 and "truncated" in reply.body["detail"]
    garbage = served.post(None, raw=b"not gzip at all", headers={"Content-Encoding": "gzip"})
    assert garbage.status == 400 and "cannot decode" in garbage.body["detail"]
    assert [r["status"] for r in rejects_in(served.db)] == [400, 400]
