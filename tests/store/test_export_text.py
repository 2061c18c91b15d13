"""Column-at-a-time spelling of exported values gives exactly what the value-at-a-time functions
give (the exporters use the columns; the single-value functions are the specification)."""

from __future__ import annotations

import random
import struct

import orjson
import pytest

from app.store.export_text import (
    integer_column,
    iso_time_column,
    plain,
    plain_column,
    rounded,
    rounded_column,
)
from app.store.exporters import iso_time
from app.store.message_names import batch_names, message_name

RNG = random.Random(11)
DOUBLES = ([RNG.uniform(-180, 180) for _ in range(20_000)] + [round(RNG.uniform(-90, 90), 6) for _ in range(20_000)]
           + [RNG.uniform(0, 1e-3) for _ in range(5_000)]
           + [struct.unpack("d", struct.pack("Q", RNG.getrandbits(64)))[0] for _ in range(20_000)]
           + [0.0, -0.0, 1e-5, 1e-7, 5e-324, 1e15, 1e16, 1.5e300, 123456789012345678.0, 180.0, 3.6, 36.0])
FINITE = [v for v in DOUBLES if v - v == 0.0]


def test_plain_column_spells_every_double_as_plain_does() -> None:
    values = [*FINITE, None, 7, 0]
    assert plain_column(values) == ["" if v is None else plain(v) if isinstance(v, float) else str(v) for v in values]
    assert all("e" not in cell for cell in plain_column(FINITE))
    assert plain_column([1.5, None], "<a>", "</a>") == ["<a>1.5</a>", ""]


@pytest.mark.parametrize(("digits", "scale", "modulo"), [(3, 3.6, None), (2, 1.0, 360.0)])
def test_rounded_column_rounds_as_rounded_does(digits, scale, modulo) -> None:
    values = [v for v in FINITE if abs(v) < 1e9] + [None]

    def one(v):
        if v is None:
            return ""
        v = v / scale if scale != 1.0 else v
        return rounded(v % modulo if modulo else v, digits)

    assert rounded_column(values, digits, scale, modulo) == [one(v) for v in values]


def test_derived_values_carry_no_float_noise() -> None:
    assert rounded_column([50.0, 0.1 + 0.2, 3.6, 0.0], 3, 3.6) == ["13.889", "0.083", "1", "0"]


def test_integer_and_time_columns() -> None:
    assert integer_column([8, 9.0, None]) == ["8", "9", ""]
    assert integer_column([8, 9.0], "<sat>", "</sat>") == ["<sat>8</sat>", "<sat>9</sat>"]
    times = [RNG.uniform(0, 4e9) for _ in range(20_000)] + [1.7e9 + 0.9996, 1.7e9 + 0.0005, 1.7e9 + 0.0015, 0.0]
    assert iso_time_column(times) == [iso_time(t) for t in times]
    whole = [float(int(t)) for t in times]
    assert iso_time_column(whole) == [iso_time(t) for t in whole]


BODIES = [
    [{"device.name": "a"}, {"x": 1}, {"device.name": "b", "other": "device.name"}],
    [{"device": {"name": "nested"}}, {"device.name": "brace { inside"}],
    [{"device.name": 5}, {"device.name": None}, {"device.name": True}],
    [{"device.name": 'quote " and é'}, {"device.name": "back\\slash"}],
    [1, {"device.name": "after a number"}, [], "text"],
    [{}, {}],
    [{"device.name": ""}, {"device.name": "x", "ident": "123456789012345"}],
]


@pytest.mark.parametrize("messages", BODIES)
def test_batch_names_read_from_bytes_agree_with_parsing(messages) -> None:
    body = orjson.dumps(messages)
    assert batch_names(body, len(messages)) == [message_name(m) for m in messages]


def test_batch_names_with_spaces_and_a_repeated_key() -> None:
    body = b'[{"device.name" : "first", "device.name":"second"}, {"a": 1, "device.name": "c"}, {"device.name":"d"}]'
    assert batch_names(body, 3) == ["second", "c", "d"]
