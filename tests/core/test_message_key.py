"""The identity of a message: a cheap time key that copies share, a content key that decides;
notation aside; none without a time."""

from __future__ import annotations

import json

import orjson

from app.core.message_key import content_key, raw_time_key, row_time_key, time_key, time_keys
from app.core.normalize import normalize, normalize_batch

BASE = {"ident": "a", "timestamp": 100.0, "server.timestamp": 100.5, "position.latitude": 1.0, "x": [1, 2]}
NESTED = {"ident": "a", "timestamp": 100.0, "server": {"timestamp": 100.5}, "position": {"latitude": 1.0},
          "x": [1, 2]}


def keys(raw, received_at: float = 999.0):
    m = normalize(raw, received_at)
    return time_key(m), content_key(m)


def test_copies_share_both_keys_whatever_the_notation_or_arrival() -> None:
    assert keys(BASE) == keys(dict(BASE), 5.0) == keys(NESTED)
    assert len(keys(BASE)[1]) == 16


def test_any_difference_in_content_is_another_content_key() -> None:
    for change in ({"ident": "b"}, {"timestamp": 101.0}, {"server.timestamp": 100.6}, {"x": [2, 1]},
                   {"extra": None}, {"position.latitude": 1}):
        assert keys(BASE | change)[1] != keys(BASE)[1], change
    assert keys(BASE | {"x": [3]})[0] == keys(BASE)[0]  # same device and instant: time key shared


def test_messages_without_a_time_of_their_own_have_no_time_key() -> None:
    assert keys({"ident": "a", "v": 1})[0] is None
    assert keys({"ident": "a", "timestamp": "not a time"})[0] is None
    bad_time = {"ident": "a", "timestamp": "not a time", "server.timestamp": 5.0}
    assert keys(bad_time, 1.0)[0] == keys(bad_time, 2.0)[0] is not None  # flespi's time is enough
    assert keys(17)[0] is None


def test_content_orjson_cannot_write_has_no_content_key_instead_of_an_error() -> None:
    deep: list = []
    for _ in range(300):
        deep = [deep]
    assert keys(BASE | {"deep": deep})[1] is None


def test_batch_form_and_stored_rows_give_the_same_time_keys() -> None:
    raws = [BASE, {"ident": "a"}, BASE | {"timestamp": "x"}, 3, NESTED]
    messages = normalize_batch(raws, 1.0)
    assert time_keys(messages) == [time_key(m) for m in messages]
    assert [row_time_key(m.ident, m.ts, m.server_ts, m.flags) for m in messages] == time_keys(messages)


def test_a_message_keyed_from_its_raw_fields_has_the_key_normalizing_it_gives() -> None:
    """The acknowledgement's fast path keys messages it has not normalized: any other answer
    would let a re-sent message through twice, or drop a new one. Values as JSON carries them."""
    idents = ["a", "", "352625", 352625, 352625.0, 3.5, -(2**63) - 1, 2**64, 10**30, True, None, [1], {}]
    times = [100.0, 100, "100.5", "2026-01-02T03:04:05Z", "2026-01-02T03:04:05", "bad", -1.0, 1e12, 2**70,
             False, None, 0.0, [], {"a": 1}]
    checked = 0
    for ident in idents:
        for ts in times:
            for server_ts in (None, 100.25, "100.25", "junk", 5e11, 7):
                fields = {"ident": ident, "timestamp": ts, "server.timestamp": server_ts}
                raw = orjson.loads(json.dumps({k: v for k, v in fields.items() if v is not None}))
                expected = time_key(normalize(raw, 555.0))
                got = raw_time_key(raw.get("ident"), raw.get("timestamp"), raw.get("server.timestamp"))
                assert got == expected, raw
                checked += 1
    assert checked == len(idents) * len(times) * 6


def test_an_integer_orjson_would_read_as_a_float_keys_as_that_float() -> None:
    """msgspec keeps a 30-digit integer exact where orjson (which the normalizer reads) makes it a
    float; the key follows orjson's reading."""
    text = b'{"ident": 123456789012345678901234567890, "timestamp": 5.0}'
    assert raw_time_key(123456789012345678901234567890, 5.0, None) == time_key(normalize(orjson.loads(text), 1.0))
    assert raw_time_key(2**64 - 1, 5.0, None) == time_key(normalize({"ident": 2**64 - 1, "timestamp": 5.0}, 1.0))
