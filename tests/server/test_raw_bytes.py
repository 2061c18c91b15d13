"""What the inspector calls "exactly what the device sent" is the bytes as received: numbers
(49.10), key order, spacing and escapes survive every path a body takes into the file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from app.server.limits import Limits
from app.server.listener import ListenerConfig
from app.store.queries import iter_messages, list_sessions, raw_message_bytes
from tests.conftest import running_listener

SLICED = Limits(inline_bytes=2048, slice_bytes=512)


def sent(i: int) -> bytes:
    """One message as a tracker gateway might spell it: trailing zeros, an exponent, an escape,
    keys out of order and spaces that a re-serialiser would drop."""
    return (b'{ "timestamp": 1700000%03d.50, "ident":"dev-%d", "position.latitude": 49.10,'
            b' "position.longitude":28.630, "temp": 2.5E1, "note": "a\\u00e9\\"b" }' % (i, i % 3))


def stored_bytes(db: Path) -> list[bytes]:
    conn = sqlite3.connect(db)
    try:
        session = max(s.id for s in list_sessions(conn))
        return [raw_message_bytes(conn, m.batch_id, m.index) for m in iter_messages(conn, session)]
    finally:
        conn.close()


@pytest.mark.parametrize("limits", [Limits(), SLICED], ids=["inline", "sliced"])
def test_an_array_body_is_kept_byte_for_byte(db_path, limits) -> None:
    messages = [sent(i) for i in range(40)]
    body = b"[\n  " + b" ,\n  ".join(messages) + b"\n]"
    assert SLICED.inline_bytes < len(body) < Limits().inline_bytes  # so each limit takes its own path
    with running_listener(db_path, ListenerConfig(limits=limits)) as served:
        assert served.post(None, raw=body).status == 200
    assert stored_bytes(db_path) == messages


@pytest.mark.parametrize("limits", [Limits(), SLICED], ids=["inline", "sliced"])
def test_wrapped_and_single_object_bodies_are_kept_byte_for_byte(db_path, tmp_path, limits) -> None:
    messages = [sent(i) for i in range(40)]
    # The path's keys also appear as string values and in a decoy object before the real one.
    wrapped = (b'{"meta": {"items": "data.items", "n": 1.0}, "data" : {"count": 40, "items": [ '
               + b", ".join(messages) + b' ] }, "tail": [1, 2.0]}')
    with running_listener(db_path, ListenerConfig(messages_path="data.items", limits=limits)) as served:
        assert served.post(None, raw=wrapped).status == 200
    assert stored_bytes(db_path) == messages
    single = tmp_path / "single.sqlite"
    with running_listener(single, ListenerConfig(limits=limits)) as served:
        assert served.post(None, raw=b"  " + messages[0] + b"\n").status == 200
    assert stored_bytes(single) == [messages[0]]


def test_a_duplicate_key_on_the_path_falls_back_to_what_the_parser_read(db_path) -> None:
    """JSON parsers keep the last of two equal keys; the bytes kept must be those messages."""
    body = b'{"data": {"items": [' + sent(1) + b']}, "data": {"items": [' + sent(2) + b", " + sent(3) + b"]}}"
    with running_listener(db_path, ListenerConfig(messages_path="data.items")) as served:
        assert served.post(None, raw=body).body["accepted"] == 2
    assert [orjson.loads(b) for b in stored_bytes(db_path)] == [orjson.loads(sent(2)), orjson.loads(sent(3))]


def test_a_recut_retry_keeps_the_new_messages_byte_for_byte(db_path) -> None:
    """A retry cut differently is stored without its re-sent messages; the rest stay exact."""
    messages = [sent(i) for i in range(30)]
    with running_listener(db_path) as served:
        assert served.post(None, raw=b"[" + b",".join(messages[:20]) + b"]").status == 200
        retry = served.post(None, raw=b"[" + b" , ".join(messages[10:]) + b"]")
        assert retry.status == 200 and retry.body["duplicates"] == 10
    assert stored_bytes(db_path) == messages
