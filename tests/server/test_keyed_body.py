"""The acknowledgement's fast path accepts only what the full path accepts, and keys each message
exactly as normalizing it would: anything else would store a body the readers cannot read, or
let a re-sent message through twice."""

from __future__ import annotations

import random

import orjson

from app.core.message_key import time_keys
from app.core.normalize import normalize_batch
from app.core.simfleet import FleetSimulator, nest
from app.server.keyed_body import read_keyed


def agrees_with_the_full_path(body: bytes) -> bool:
    """True when the fast path took the body (and was right to); False when it sent it the full
    way. Fails the test when it took a body orjson refuses or keyed it differently."""
    keyed = read_keyed(body, 100_000)
    if keyed is None:
        return False
    parsed = orjson.loads(body)  # raises (failing the test) if the fast path took what orjson refuses
    assert type(parsed) is list and parsed and all(type(m) is dict for m in parsed)
    assert keyed.keys == time_keys(normalize_batch(parsed, 0.0, body))
    return True


def test_a_flespi_batch_takes_the_fast_path_with_the_normalizers_keys() -> None:
    fleet = FleetSimulator(20, seed=3, start=1_700_000_000)
    body = orjson.dumps(fleet.next_messages(500))
    assert agrees_with_the_full_path(body)
    assert read_keyed(body, 100_000).count == 500
    assert read_keyed(body, 499) is None  # over the limit: the full path words the 413


def test_what_the_fast_path_cannot_prove_goes_the_full_way() -> None:
    fleet = FleetSimulator(3, seed=4, start=1_700_000_000)
    flat = fleet.next_messages(3)
    cases = [
        orjson.dumps([nest(m) for m in flat]),  # nested objects
        orjson.dumps([*flat, {"ident": "x", "list": [1, 2]}]),  # an array inside
        orjson.dumps([*flat, 7]),  # a stray non-object
        orjson.dumps({"messages": flat}),  # wrapped
        b"[]", b"", b"   ", b"null", b'"text"',
        orjson.dumps([{"ident": "a", "note": "{brace}"}]),  # a brace in a string: not proven flat
    ]
    for body in cases:
        assert read_keyed(body, 100_000) is None, body[:60]


def test_numbers_orjson_refuses_are_never_taken() -> None:
    for number in (b"1e400", b"-1E+400", b"1e0400", b"9.9e308", b"1" + b"0" * 250, b"-" + b"9" * 320):
        body = b'[{"ident": "a", "timestamp": 5.0, "v": ' + number + b"}]"
        assert read_keyed(body, 10) is None, number
    for number in (b"1e308", b"1e-400", b"1" + b"0" * 150, b"123456789012345678901234567890", b"-0.0"):
        body = b'[{"ident": "a", "timestamp": 5.0, "v": ' + number + b"}]"
        agrees_with_the_full_path(body)  # taken or not, never wrongly
    big = b'[{"ident": 123456789012345678901234567890, "timestamp": 5.0}]'
    assert agrees_with_the_full_path(big)  # keyed as orjson reads the ident: a float


def test_malformed_bodies_never_take_the_fast_path() -> None:
    base = b'[{"ident": "a", "timestamp": 5.0, "s": "x"}]'
    cases = [
        base[:-1], base + b",", base + b"[]", b"\xef\xbb\xbf" + base, base.replace(b'"x"', b"'x'"),
        base.replace(b"5.0", b"NaN"), base.replace(b"5.0", b"Infinity"), base.replace(b'"x"', b'"\\ud800"'),
        base.replace(b'"x"', b'"\xff"'), base.replace(b'"x"', b'"a\x01b"'), base.replace(b"}", b",}"),
        base.replace(b"5.0", b"05"), base.replace(b"5.0", b"5."), base.replace(b"5.0", b".5"),
        base.replace(b"5.0", b"+5"), b"/*c*/" + base, base.replace(b'"s"', b"s"),
    ]
    for body in cases:
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            assert read_keyed(body, 10) is None, body
        else:
            agrees_with_the_full_path(body)


def test_thousands_of_mangled_batches_never_disagree_with_the_full_path() -> None:
    fleet = FleetSimulator(4, seed=5, start=1_700_000_000)
    odd = {"ident": 352625, "timestamp": "2026-01-02T03:04:05Z", "server.timestamp": "1.5e9", "t": "\\u00e9\\n"}
    body = orjson.dumps([*fleet.next_messages(6), odd])
    rng = random.Random(11)
    alphabet = b'{}[]",:0123456789eE+-.tfnul \\\xff\x00aZ'
    taken = 0
    for _ in range(3000):
        mangled = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(mangled))
            choice = rng.random()
            if choice < 0.4:
                mangled[at] = rng.choice(alphabet)
            elif choice < 0.7:
                del mangled[at]
            else:
                mangled[at:at] = bytes([rng.choice(alphabet)])
        taken += agrees_with_the_full_path(bytes(mangled))
    assert taken > 100  # many harmless changes (a digit in a value) keep the fast path
