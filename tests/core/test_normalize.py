"""The normalizer against real flespi shapes, edge cases and arbitrary JSON."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core import normalize as n
from app.core.normalize import Message, flag_names, flatten, normalize, normalize_batch
from app.core.simfleet import nest

DATA = Path(__file__).resolve().parents[1] / "data"
NOW = 1_700_000_000.0


def test_kb_seed_message_values_match_the_article() -> None:
    # tests/data/flespi_kb_example.json is the example batch of flespi's HTTP stream article
    # (shared/seeds/flespi-http-stream-kb.txt), without the article's "..." placeholders.
    [m] = normalize_batch(orjson.loads((DATA / "flespi_kb_example.json").read_bytes()), NOW)
    assert m.ident == "352625333222111"
    assert m.ts == pytest.approx(1650636570.426424)
    assert m.server_ts == pytest.approx(1650636570.426424)
    assert (m.lat, m.lon, m.alt, m.satellites, m.hdop) == (49.069782, 28.632826, 273.61, 18.0, 0.7)
    assert m.flags == 0 and m.has_fix
    assert m.params["engine.ignition.status"] is True
    assert m.params["channel.id"] == 1111


def test_setup_guide_nested_mapping_flattens_to_flespi_keys() -> None:
    [m] = normalize_batch(orjson.loads((DATA / "setup_guide_nested.json").read_bytes()), NOW)
    assert m.lat == 49.069782 and m.lon == 28.632826 and m.speed == 42.5
    assert m.params["battery.level"] == 87
    assert m.params["engine.ignition.status"] is True
    assert m.params["device.name"] == "Truck 7"
    assert m.params["external.powersource.voltage"] == 13.7  # flat key inside a nested message
    assert "position" not in m.params


def test_flat_nested_and_mixed_forms_normalize_identically() -> None:
    flat = {"ident": "1", "timestamp": 10.5, "position.latitude": 1.5, "position.longitude": 2.5,
            "engine.ignition.status": False, "ain#3": 0, "custom.mode": "eco", "can.fuel": None}
    nested = {"ident": "1", "timestamp": 10.5, "position": {"latitude": 1.5, "longitude": 2.5},
              "engine": {"ignition": {"status": False}}, "ain#3": 0, "custom": {"mode": "eco"},
              "can": {"fuel": None}}
    mixed = {"ident": "1", "timestamp": 10.5, "position": {"latitude": 1.5}, "position.longitude": 2.5,
             "engine.ignition": {"status": False}, "ain#3": 0, "custom.mode": "eco", "can.fuel": None}
    results = [normalize(m, NOW) for m in (flat, nested, mixed)]
    assert results[0].params == results[1].params == results[2].params
    assert results[0] == results[1] == results[2]


def test_batch_flat_hint_gives_the_same_result_as_scanning() -> None:
    raws = [{"ident": "a", "s": "{not nested}", "position": {"latitude": 1, "longitude": 2}},
            {"ident": "b", "timestamp": 5}]
    body = orjson.dumps(raws)
    assert normalize_batch(raws, NOW, body) == normalize_batch(raws, NOW)
    assert normalize_batch(raws, NOW, body)[0].lat == 1.0


def test_unknown_parameters_index_suffixes_and_types_are_kept_verbatim() -> None:
    raw = {"ident": "x", "ain#1": 3.3, "custom.str": "OPEN", "alarm": None, "list": [1, {"a": 2}],
           "empty": {}, "ble.beacons": [{"id": "aa"}]}
    m = normalize(raw, NOW)
    assert m.params["ain#1"] == 3.3 and m.params["custom.str"] == "OPEN"
    assert m.params["alarm"] is None and m.params["list"] == [1, {"a": 2}]
    assert m.params["empty"] == {} and m.params["ble.beacons"] == [{"id": "aa"}]


@pytest.mark.parametrize(("value", "expected"), [
    ("352625333222111", "352625333222111"), (352625333222111, "352625333222111"),
    (12.0, "12"), ("", None), (None, None), (True, None), (1.5, None), ({"a": 1}, None),
])
def test_ident_accepts_strings_and_numbers_only(value: object, expected: str | None) -> None:
    m = normalize({"ident": value, "timestamp": 1.0}, NOW)
    if expected is None:
        assert m.ident == "" and m.flags & n.NO_IDENT
    else:
        assert m.ident == expected and not m.flags & n.NO_IDENT


def test_missing_ident_is_flagged_not_dropped() -> None:
    m = normalize({"timestamp": 1.0, "position.latitude": 1, "position.longitude": 1}, NOW)
    assert m.flags & n.NO_IDENT and m.ident == "" and m.has_fix


@pytest.mark.parametrize(("value", "expected"), [
    (1650636570.426424, 1650636570.426424),
    (1650636570, 1650636570.0),
    ("1650636570.5", 1650636570.5),
    ("2022-04-22T14:09:30Z", 1650636570.0),
    ("2022-04-22T14:09:30.250+00:00", 1650636570.25),
    ("2022-04-22T17:09:30+03:00", 1650636570.0),
    ("2022-04-22T14:09:30", 1650636570.0),  # naive ISO is read as UTC
])
def test_timestamps_in_seconds_or_iso8601(value: object, expected: float) -> None:
    m = normalize({"ident": "a", "timestamp": value, "server.timestamp": value}, NOW)
    assert m.ts == pytest.approx(expected) and m.server_ts == pytest.approx(expected)
    assert type(m.ts) is float  # whole seconds too: time arithmetic and the stored rows expect a float
    assert not m.flags & (n.NO_TIMESTAMP | n.BAD_TIMESTAMP)


def test_missing_timestamp_uses_receive_time_and_is_flagged() -> None:
    m = normalize({"ident": "a"}, NOW)
    assert m.ts == NOW and m.flags & n.NO_TIMESTAMP and m.server_ts is None


@pytest.mark.parametrize("value", ["yesterday", -5, 1e15, 100_000_000_000, float("nan"), True, [1]])
def test_unusable_timestamp_uses_receive_time_and_is_flagged(value: object) -> None:
    m = normalize({"ident": "a", "timestamp": value}, NOW)
    assert m.ts == NOW and m.flags & n.BAD_TIMESTAMP


@pytest.mark.parametrize(("lat", "lon", "flag"), [
    (0, 0, n.POSITION_ZERO), (0.0, 0.0, n.POSITION_ZERO), (91, 10, n.POSITION_RANGE),
    (10, -180.5, n.POSITION_RANGE), (None, 10, n.NO_POSITION), ("abc", 10, n.BAD_VALUE),
    (float("nan"), 10, n.BAD_VALUE), ("inf", 1, n.BAD_VALUE), (True, 1, n.BAD_VALUE),
])
def test_unusable_positions_are_flagged_and_never_a_fix(lat: object, lon: object, flag: int) -> None:
    m = normalize({"ident": "a", "timestamp": 1, "position.latitude": lat, "position.longitude": lon}, NOW)
    assert m.flags & flag
    assert not m.has_fix


def test_device_reported_invalid_position_is_not_a_fix() -> None:
    m = normalize({"ident": "a", "position.latitude": 5, "position.longitude": 5, "position.valid": False}, NOW)
    assert m.flags & n.POSITION_INVALID and m.valid is False and not m.has_fix
    ok = normalize({"ident": "a", "position.latitude": 5, "position.longitude": 5, "position.valid": 1}, NOW)
    assert ok.valid is True and ok.has_fix


def test_numeric_strings_are_read_and_out_of_range_values_flagged() -> None:
    m = normalize({"ident": "a", "position.latitude": "49.5", "position.longitude": "28.1",
                   "position.speed": -3, "position.direction": 400, "position.satellites": "12"}, NOW)
    assert (m.lat, m.lon, m.satellites) == (49.5, 28.1, 12.0)
    assert m.flags & n.VALUE_RANGE and m.has_fix  # a bad speed does not make the position wrong


def test_non_object_element_is_kept_and_flagged() -> None:
    m = normalize(42, NOW)
    assert m.flags & n.NOT_OBJECT and m.params == {"": 42} and not m.has_fix
    assert "not_an_object" in flag_names(m.flags)


def test_flatten_returns_flat_input_without_copying() -> None:
    flat = {"a.b": 1}
    assert flatten(flat) is flat


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=True),
                      st.text(max_size=12))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=20)
keys = st.sampled_from(["ident", "timestamp", "server.timestamp", "position.latitude",
                        "position.longitude", "position.speed", "position.valid", "position.hdop"])
message_like = st.dictionaries(st.one_of(keys, st.text(max_size=10)), json_value, max_size=10)


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_value, message_like))
def test_normalize_never_raises_and_always_yields_usable_types(raw: object) -> None:
    m = normalize(raw, NOW)
    assert isinstance(m, Message)
    assert isinstance(m.ident, str) and isinstance(m.flags, int)
    assert isinstance(m.ts, float) and math.isfinite(m.ts)
    for value in (m.lat, m.lon, m.alt, m.speed, m.direction, m.satellites, m.hdop):
        assert value is None or (isinstance(value, float) and math.isfinite(value))
    if m.has_fix:
        assert -90 <= m.lat <= 90 and -180 <= m.lon <= 180 and (m.lat, m.lon) != (0, 0)
    # Whatever came in can be stored: the parameters survive a JSON round trip.
    orjson.dumps(m.params, option=orjson.OPT_NON_STR_KEYS)


flat_key = st.from_regex(r"[a-z]{1,5}(\.[a-z]{1,5}){0,3}(#[0-9])?", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(flat_key, json_leaf, max_size=12))
def test_nested_rendering_of_a_flat_message_normalizes_the_same(flat: dict) -> None:
    # Only prefix-free key sets can be nested losslessly (like real flespi parameters).
    names = sorted(flat)
    if any(b.startswith(a + ".") for a in names for b in names):
        return
    assert normalize(nest(flat, keep_flat=()), NOW) == normalize(flat, NOW)


fix_key = st.sampled_from(["ident", "timestamp", "server.timestamp", "position.latitude", "position.longitude",
                           "position.altitude", "position.speed", "position.direction", "position.satellites",
                           "position.hdop", "position.valid"])
# What the fields hold in real batches, and every kind of value normalize has to read the long way
# (no '{' in strings: a batch holding one is not proven flat, and is read one by one anyway).
braceless = st.characters(blacklist_characters="{", blacklist_categories=("Cs",))  # orjson refuses lone surrogates
fix_value = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-200, 200), st.floats(0, 2e9),
    st.sampled_from([0, 0.0, -0.0, 1, "", "7", "1.5", "x", "2023-11-14T22:13:20Z"]),
    st.text(braceless, max_size=6))
# Mostly with an ident a batch can be read with, so that its other fields are read column-wise too.
flat_message = st.tuples(st.one_of(st.text(braceless, min_size=1, max_size=4), fix_value),
                         st.dictionaries(fix_key, fix_value, max_size=11)).map(lambda t: {"ident": t[0], **t[1]})
usual_message = st.fixed_dictionaries({
    "ident": st.text(braceless, min_size=1, max_size=4),
    "timestamp": st.one_of(st.integers(0, 2**31), st.floats(0, 2e9)),
    "position.latitude": st.floats(-91, 91), "position.longitude": st.floats(-181, 181),
    "position.satellites": st.integers(0, 30)}, optional={"server.timestamp": st.floats(0, 2e9),
                                                          "position.speed": st.floats(-1, 3000),
                                                          "position.valid": st.booleans(), "custom": fix_value})


def plain_batch(size: int) -> list[dict]:
    """A batch of flespi messages whose every field is read the short way."""
    return [{"ident": f"d{i}", "timestamp": NOW - 60 + i, "server.timestamp": NOW - 59.5 + i,
             "position.latitude": 50.0 + i / 1000, "position.longitude": 0.0 if i == 3 else 14.0,
             "position.altitude": 200, "position.speed": 12.5, "position.direction": 90.0,
             "position.satellites": 9, "position.hdop": 0.9, "position.valid": True} for i in range(size)]


def assert_read_as_alone(raws: list[dict]) -> None:
    """``raws`` as a batch normalize exactly as each does alone: the same values of the same types
    (a float is not an int, True is not 1), and the message's parameters the very object received."""
    body = orjson.dumps(raws)  # the batch as received
    columns: list[bool] = []  # whether it was read column-wise (else this test proves nothing)

    def watch(frame, event, arg) -> None:
        if event == "call" and frame.f_code is n._normalize_columns.__code__:
            columns.append(True)

    sys.setprofile(watch)
    try:
        got = normalize_batch(raws, NOW, body)
    finally:
        sys.setprofile(None)
    assert columns
    assert len(got) == len(raws)
    for message, raw in zip(got, raws, strict=True):
        alone = normalize(raw, NOW)
        assert message == alone, raw
        for name in ("ident", "ts", "server_ts", "lat", "lon", "alt", "speed", "direction", "satellites", "hdop",
                     "valid", "flags"):
            assert type(getattr(message, name)) is type(getattr(alone, name)), (name, raw)
        assert message.params is raw


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(usual_message, flat_message), min_size=1, max_size=60), st.randoms(use_true_random=False))
def test_a_large_flat_batch_normalizes_as_its_messages_do_one_by_one(generated: list[dict], random) -> None:
    # A flespi batch is read field by field over all its messages; whatever each holds, every
    # message must come out exactly as normalizing it alone gives it.
    raws = plain_batch(n.COLUMNS_FROM) + generated
    random.shuffle(raws)
    assert_read_as_alone(raws)


@pytest.mark.parametrize(("key", "value"), [
    ("position.latitude", math.nan), ("position.longitude", math.inf), ("position.hdop", -math.inf),
    ("position.satellites", "7"), ("position.speed", True), ("timestamp", "2023-11-14T22:13:20Z"),
    ("timestamp", 1e12), ("timestamp", math.nan), ("server.timestamp", -5), ("server.timestamp", "1700000000"),
    ("position.valid", 1), ("position.valid", "yes"), ("ident", 12345), ("ident", ""), ("position.altitude", None),
    ("position.latitude", 0.0), ("position.direction", 361),
    # every limit, on it and just past it
    *[(key, value) for key, low, high in (
        ("position.latitude", -90.0, 90.0), ("position.longitude", -180.0, 180.0),
        ("position.altitude", -12_000.0, 100_000.0), ("position.speed", 0.0, 2_000.0),
        ("position.direction", 0.0, 360.0), ("position.satellites", 0.0, 255.0), ("position.hdop", 0.0, 1_000.0),
        ("timestamp", 0.0, n.MAX_TS), ("server.timestamp", 0.0, n.MAX_TS))
      for value in (low, high, math.nextafter(low, -math.inf), math.nextafter(high, math.inf), int(low), int(high))],
    ("server.timestamp", 1_700_000_000), ("position.latitude", 50), ("position.longitude", -7)])
def test_one_odd_field_in_a_large_batch_is_read_as_alone(key: str, value: object) -> None:
    raws = plain_batch(n.COLUMNS_FROM)
    raws[7][key] = value
    assert_read_as_alone(raws)


@pytest.mark.parametrize("value", [math.nan, math.inf, "12"])
def test_an_odd_value_beside_absent_ones_is_read_as_alone(value: object) -> None:
    raws = plain_batch(n.COLUMNS_FROM)
    del raws[5]["position.hdop"], raws[6]["position.latitude"]  # absent: None in the column
    raws[7]["position.hdop"] = raws[8]["position.latitude"] = value
    assert_read_as_alone(raws)
