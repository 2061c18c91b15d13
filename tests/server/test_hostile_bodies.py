"""Bodies built to hurt, over real loopback HTTP: every one gets a bounded, specific 4xx with a
JSON body and a reject row; large valid batches go through the sliced path intact.

The sliced path normally starts at 1 MiB; these tests lower `Limits.inline_bytes` and
`slice_bytes` so small bodies take it, and the limits so attacks stay small.
"""

from __future__ import annotations

import gzip
import socket
import sqlite3
import zlib
from collections import Counter
from pathlib import Path

import orjson
import pytest

from app.server.auth import HeaderAuth
from app.server.limits import Limits
from app.server.listener import ListenerConfig
from app.store.queries import iter_messages, list_rejects, list_sessions
from tests.conftest import RunningListener, running_listener

SLICED = Limits(inline_bytes=2048, slice_bytes=512, max_depth=8, max_messages=500)


def msg(i: int, ident: str = "dev") -> dict:
    return {"ident": f"{ident}{i % 7}", "timestamp": 1_700_000_000.0 + i, "position.latitude": 50 + i * 1e-4,
            "position.longitude": 10.0, "note": f"text with , and ] and \" and \\ #{i}"}


def stored_messages(db: Path) -> list:
    conn = sqlite3.connect(db)
    try:
        session = max(s.id for s in list_sessions(conn))
        return [s.message for s in iter_messages(conn, session)]
    finally:
        conn.close()


def rejects(db: Path) -> list[dict]:
    conn = sqlite3.connect(db)
    try:
        return list_rejects(conn)
    finally:
        conn.close()


def refused(db: Path) -> Counter:
    """How many refusals of each status the recording kept (a burst is one row with a count)."""
    return Counter({status: sum(r["count"] for r in rejects(db) if r["status"] == status)
                    for status in {r["status"] for r in rejects(db)}})


@pytest.fixture
def sliced(db_path) -> RunningListener:
    with running_listener(db_path, ListenerConfig(limits=SLICED)) as running:
        yield running


def test_a_large_batch_is_parsed_in_slices_and_recorded_whole(db_path, tmp_path) -> None:
    batch = [msg(i) for i in range(300)] + [{"ident": "nested", "timestamp": 1_700_000_500.0,
                                              "position": {"latitude": 1.5, "longitude": 2.5}}]
    body = orjson.dumps(batch)
    assert len(body) > 20 * SLICED.inline_bytes
    with running_listener(db_path, ListenerConfig(limits=SLICED)) as served:
        seen = []
        served.listener.on_batch(lambda event, messages: seen.append(len(messages)))
        reply = served.post(None, raw=body)
        more = [msg(i) for i in range(1000, 1250)]  # new messages (re-sent ones are recorded once)
        gzipped = served.post(None, raw=gzip.compress(orjson.dumps(more)),
                              headers={"Content-Encoding": "gzip"})
    assert reply.status == 200 and reply.body["accepted"] == 301
    assert gzipped.status == 200 and gzipped.body["accepted"] == 250
    assert seen == [301, 250]  # callbacks get every message of each batch
    # The same batch through the one-call path gives the same messages.
    with running_listener(tmp_path / "inline.sqlite") as inline:
        assert inline.post(None, raw=body).status == 200
    sliced_messages = stored_messages(db_path)[:301]
    assert sliced_messages == stored_messages(tmp_path / "inline.sqlite")
    assert sliced_messages[-1].lat == 1.5 and sliced_messages[5].params["note"] == batch[5]["note"]


def test_a_large_batch_wrapped_in_an_object_is_accepted(db_path) -> None:
    config = ListenerConfig(messages_path="data.items", limits=SLICED)
    with running_listener(db_path, config) as served:
        reply = served.post({"data": {"items": [msg(i) for i in range(200)]}})
    assert reply.status == 200 and reply.body["accepted"] == 200


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "sliced"])
def test_deep_nesting_is_refused_before_anything_breaks(db_path, inline: bool) -> None:
    limits = Limits(max_depth=8) if inline else SLICED
    padding = [msg(i) for i in range(0 if inline else 60)]  # big enough for the sliced path
    with running_listener(db_path, ListenerConfig(limits=limits)) as served:
        replies = [
            served.post(None, raw=_deep_json(padding, 1_000)),  # was a RecursionError (500) in flattening
            served.post(None, raw=_deep_object(300)),  # passed orjson.loads, failed orjson.dumps (500)
            served.post(None, raw=b"[" * 100_000 + b"]" * 100_000),
            served.post([*padding, {"ident": "ok", "a": [[[[[[[[1]]]]]]]]}]),
        ]
    assert [r.status for r in replies] == [422] * 4
    assert {r.body["error"] for r in replies} == {"too_deep"}
    assert refused(db_path) == {422: 4}


def _deep_json(prefix: list, levels: int) -> bytes:
    head = orjson.dumps(prefix)[:-1] + (b"," if prefix else b"")
    return head + b'{"x":' * levels + b'{"ident":"deep"}' + b"}" * levels + b"]"


def _deep_object(levels: int) -> bytes:
    return b'{"ident":"d","x":' + b'{"x":' * levels + b"1" + b"}" * levels + b"}"


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "sliced"])
def test_too_many_messages_and_arrays_of_non_objects_are_refused(db_path, inline: bool) -> None:
    limits = Limits(max_messages=500) if inline else SLICED
    with running_listener(db_path, ListenerConfig(limits=limits)) as served:
        too_many = served.post(None, raw=b"[" + b",".join([b"{}"] * 501) + b"]")
        scalars = served.post(None, raw=b"[" + b",".join([b"0"] * 400) + b"]")
        huge_scalar_array = served.post(None, raw=b"[" + b"0," * 200_000 + b"0]")
        mostly_scalars = served.post(None, raw=orjson.dumps([msg(1), 1, 2, "x", [3], None]))
        one_stray = served.post(None, raw=orjson.dumps([msg(i) for i in range(40)] + [17]))
    assert (too_many.status, too_many.body["error"]) == (413, "too_many_messages")
    assert "500" in too_many.body["detail"]
    assert (scalars.status, scalars.body["error"]) == (422, "not_messages")
    assert huge_scalar_array.status == 413
    assert (mostly_scalars.status, mostly_scalars.body["error"]) == (422, "not_messages")
    assert one_stray.status == 200 and one_stray.body["flagged"] >= 1  # a stray value is kept, flagged
    assert refused(db_path) == {413: 2, 422: 2}


def test_malformed_arrays_are_refused_by_the_sliced_path(sliced) -> None:
    good = orjson.dumps([msg(i) for i in range(100)])
    cases = {
        "empty element": good[:-1] + b",,{}]",
        "trailing comma": good[:-1] + b",]",
        "data after the array": good + b" [1]",
        "unterminated string": good[:-1] + b',"abc',
        "unbalanced": good[:-1] + b",{]",
        "bad token": good[:-1] + b",{\"a\":tru}]",
        "not utf-8": good[:-1] + b',{"a":"\xff"}]',
    }
    replies = {name: sliced.post(None, raw=body) for name, body in cases.items()}
    assert {name: r.status for name, r in replies.items()} == dict.fromkeys(cases, 400)
    assert {r.body["error"] for r in replies.values()} == {"invalid_json"}
    assert sliced.post(None, raw=good).status == 200


def test_gzip_with_several_members_is_accepted_but_not_trailing_garbage(served) -> None:
    first, second = orjson.dumps([msg(1)])[:-1], b"," + orjson.dumps([msg(2)])[1:]
    members = gzip.compress(first) + gzip.compress(second)
    assert served.post(None, raw=members, headers={"Content-Encoding": "gzip"}).body["accepted"] == 2
    garbage = served.post(None, raw=gzip.compress(orjson.dumps([msg(3)])) + b"junk",
                          headers={"Content-Encoding": "gzip"})
    assert garbage.status == 400 and "after the end" in garbage.body["detail"]
    after_deflate = served.post(None, raw=zlib.compress(orjson.dumps([msg(4)])) + b"x",
                                headers={"Content-Encoding": "deflate"})
    assert after_deflate.status == 400
    assert refused(served.db) == {400: 2}


def test_gzip_members_are_bounded(db_path) -> None:
    bomb = gzip.compress(b" ") * 50 + gzip.compress(b"[]")
    with running_listener(db_path, ListenerConfig(limits=Limits(max_gzip_members=20))) as served:
        reply = served.post(None, raw=bomb, headers={"Content-Encoding": "gzip"})
    assert reply.status == 400 and "gzip members" in reply.body["detail"]


def raw_exchange(served: RunningListener, request: bytes) -> bytes:
    """Send bytes no HTTP library would, and read one response (head and body)."""
    with socket.create_connection(served.address, timeout=20) as sock:
        sock.sendall(request)
        return read_response(sock)


def read_response(sock: socket.socket) -> bytes:
    answer = b""
    while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lengths = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    length = int(lengths[0])
    while len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    return head + b"\r\n\r\n" + body


def test_absurd_content_length_is_413_and_kept(served) -> None:
    answer = raw_exchange(served, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                  b"Content-Length: 9223372036854775808\r\n\r\n[]")
    assert answer.startswith(b"HTTP/1.1 413") and b'"too_large"' in answer
    [reject] = rejects(served.db)
    assert reject["status"] == 413 and reject["body_bytes"] == 2**63 - 1


def test_non_utf8_authorization_is_401_and_kept(db_path) -> None:
    with running_listener(db_path, ListenerConfig(auth=HeaderAuth.bearer("tok"))) as served:
        answer = raw_exchange(served, b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
                                      b"Content-Length: 2\r\n\r\n[]")
    assert answer.startswith(b"HTTP/1.1 401") and b'"unauthorized"' in answer
    [reject] = rejects(db_path)
    assert reject["status"] == 401 and reject["headers"]["Authorization"].startswith("<redacted")
