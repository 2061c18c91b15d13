"""What the simulated fleet's messages carry as flespi delivers them: both kinds of timestamps,
``device.id``, ``channel.id``, ``peer``, ``#N`` parameters, and buffered history uploaded late."""

from __future__ import annotations

from collections import Counter

from app.core.normalize import normalize
from app.core.simfleet import FleetSimulator


def test_messages_carry_flespis_fields_and_both_kinds_of_timestamp() -> None:
    messages = FleetSimulator(6, seed=2, start=1_700_000_000.25, interval=5.0).next_messages(600)
    whole = {m["ident"] for m in messages if type(m["timestamp"]) is int}
    fractional = {m["ident"] for m in messages if type(m["timestamp"]) is float and m["timestamp"] % 1}
    assert whole and fractional and not whole & fractional  # each tracker keeps its own clock
    assert all(type(m["server.timestamp"]) is float and m["server.timestamp"] > m["timestamp"] for m in messages)
    by_device = {m["ident"]: m["device.id"] for m in messages}
    assert len(set(by_device.values())) == 6 and all(type(v) is int for v in by_device.values())
    assert {m["channel.id"] for m in messages} == {1111}
    host, port = messages[0]["peer"].rsplit(":", 1)
    assert host.count(".") == 3 and 20000 <= int(port) <= 60000
    assert all("temperature#1" in m and "temperature#2" in m and "ain#1" in m for m in messages)
    assert normalize(messages[0], 0).params["temperature#2"] == messages[0]["temperature#2"]


def test_sub_second_reporting_keeps_fractional_timestamps() -> None:
    messages = FleetSimulator(3, seed=2, start=1_700_000_000.0, interval=0.3).next_messages(300)
    assert all(type(m["timestamp"]) is float for m in messages)
    assert len({(m["ident"], m["timestamp"]) for m in messages}) == 300


def test_buffered_history_arrives_late_once_each_on_a_new_connection() -> None:
    fleet = FleetSimulator(8, seed=9, start=1_700_000_000.0, interval=10.0, buffered_rate=0.01)
    messages = fleet.next_messages(5000)
    assert len(messages) == 5000 and fleet.produced == 5000
    keys = Counter((m["ident"], m["timestamp"]) for m in messages)
    assert max(keys.values()) == 1  # nothing twice
    late = [m for m in messages if m["server.timestamp"] - m["timestamp"] > 30]
    assert len(late) > 20
    newest = 0.0
    out_of_order = 0
    for m in messages:  # older device times arriving after newer ones of other trackers
        out_of_order += m["timestamp"] < newest - 30
        newest = max(newest, m["timestamp"])
    assert out_of_order > 20
    per_device: dict[str, list[dict]] = {}
    for m in messages:
        per_device.setdefault(m["ident"], []).append(m)
    for track in per_device.values():  # a tracker's own messages keep their order
        assert [m["timestamp"] for m in track] == sorted(m["timestamp"] for m in track)
    assert any(len({m["peer"] for m in track}) > 1 for track in per_device.values())  # reconnected after a gap


def test_without_buffering_the_feed_is_in_time_order_as_before() -> None:
    messages = FleetSimulator(5, seed=3, start=1_700_000_000.0, interval=5.0).next_messages(500)
    assert [m["timestamp"] for m in messages] == sorted(m["timestamp"] for m in messages)
