"""The simulated fleet behaves like vehicles on roads and reports like flespi devices."""

from __future__ import annotations

import itertools
import math

from app.core.normalize import normalize
from app.core.simfleet import FleetSimulator, nest


def distance_m(a: dict, b: dict) -> float:
    lat = math.radians((a["position.latitude"] + b["position.latitude"]) / 2)
    dy = (a["position.latitude"] - b["position.latitude"]) * 111_320
    dx = (a["position.longitude"] - b["position.longitude"]) * 111_320 * math.cos(lat)
    return math.hypot(dx, dy)


def test_same_seed_same_fleet() -> None:
    one = FleetSimulator(5, seed=3, start=1e9).next_messages(300)
    two = FleetSimulator(5, seed=3, start=1e9).next_messages(300)
    assert one == two
    assert one != FleetSimulator(5, seed=4, start=1e9).next_messages(300)


def test_vehicles_move_at_the_speeds_they_report_and_along_streets() -> None:
    fleet = FleetSimulator(1, seed=11, start=1e9, interval=5.0, bad_fix_rate=0)
    track = fleet.next_messages(2000)
    moving = stopped = 0
    for before, after in itertools.pairwise(track):
        assert after["timestamp"] - before["timestamp"] == 5.0
        if after["position.speed"] == 0:
            stopped += 1
            assert distance_m(before, after) < 2.0  # GPS noise only
        else:
            moving += 1
            assert distance_m(before, after) <= 130 / 3.6 * 5 + 2
        assert after["position.direction"] in (0.0, 90.0, 180.0, 270.0)
    assert moving > 500 and stopped > 50
    assert {m["engine.ignition.status"] for m in track} == {True, False}  # it parks sometimes


def test_bad_fixes_appear_at_the_configured_rate_and_are_flagged() -> None:
    messages = FleetSimulator(20, seed=5, start=1e9, bad_fix_rate=0.05, faulty=False).next_messages(4000)
    unusable = sum(not normalize(m, 0).has_fix for m in messages)
    assert 80 < unusable < 200  # three of the four kinds make the fix unusable: ~3.75 %


def test_nested_rendering_keeps_the_mixed_key_like_the_setup_guide() -> None:
    flat = FleetSimulator(1, seed=1, start=1e9).next_messages(1)[0]
    nested = nest(flat)
    assert nested["position"]["latitude"] == flat["position.latitude"]
    assert nested["engine"]["ignition"]["status"] == flat["engine.ignition.status"]
    assert nested["external.powersource.voltage"] == flat["external.powersource.voltage"]
    assert normalize(nested, 0) == normalize(flat, 0)



def test_a_fleet_of_nine_or_more_has_three_clearly_broken_trackers() -> None:
    fleet = FleetSimulator(24, seed=5, start=1e9, interval=2.0, bad_fix_rate=0.01)
    messages = fleet.next_messages(24 * 300)  # ten minutes
    by_ident: dict[str, list[dict]] = {}
    for m in messages:
        by_ident.setdefault(m["ident"], []).append(m)
    faulty = {v.ident: v.fault for v in fleet.vehicles if v.fault}
    assert sorted(faulty.values()) == ["jumps", "no_fix", "silent"]
    for ident, fault in faulty.items():
        track = by_ident[ident]
        if fault == "no_fix":
            assert not any(normalize(m, 0).has_fix for m in track)
        elif fault == "jumps":
            far = [b for a, b in itertools.pairwise(track) if distance_m(a, b) > 2_500]
            assert len(far) >= 2 * (len(track) // 12) - 2
        else:
            gaps = [b["timestamp"] - a["timestamp"] for a, b in itertools.pairwise(track)]
            assert max(gaps) >= 150 and len(track) < len(by_ident[next(iter(by_ident))]) / 2
    healthy = [track for ident, track in by_ident.items() if ident not in faulty]
    assert len(healthy) == 21 and all(len(track) > 250 for track in healthy)
    span = messages[-1]["timestamp"] - messages[0]["timestamp"]
    # The pace is kept, one message per slot (within a second: some trackers report whole seconds).
    assert abs(span - (24 * 300 - 1) * 2.0 / 24) < 1.0
    assert not any(v.fault for v in FleetSimulator(8, seed=5, start=1e9).vehicles)  # a small fleet is all healthy
    assert sum(bool(v.fault) for v in FleetSimulator(9, seed=5, start=1e9).vehicles) == 3
