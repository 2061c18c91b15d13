"""Trip figures from crafted tracks."""

from __future__ import annotations

import pytest

from app.core.trips import TripStats, haversine_m


def test_haversine_known_distance() -> None:
    assert haversine_m(0, 0, 0, 1) == pytest.approx(111_195, rel=1e-3)
    assert haversine_m(49.0, 28.0, 49.0, 28.0) == 0


def test_driving_then_parking_then_driving() -> None:
    trip = TripStats(min_stop=120)
    lat = 49.0
    t = 0.0
    for _ in range(10):  # 10 × 10 s at ~36 km/h (100 m per step)
        trip.add(t, lat, 28.0, 36.0, True)
        t += 10
        lat += 100 / 111_195
    for _ in range(30):  # 300 s parked, engine off
        trip.add(t, lat, 28.0, 0.0, False)
        t += 10
    for _ in range(5):
        trip.add(t, lat, 28.0, 50.0, True)
        t += 10
        lat += 140 / 111_195
    # 9 driving steps of 100 m (the first fix has none before it); the step into the engine-off
    # period is not driving; then 4 steps of 140 m.
    assert trip.distance_m == pytest.approx(100 * 9 + 140 * 4, rel=0.001)
    assert trip.moving_s == pytest.approx(140) and trip.stopped_s == pytest.approx(300)
    assert trip.max_speed_kmh == 50.0
    assert trip.average_speed_kmh == pytest.approx(trip.distance_m / 140 * 3.6)
    [stop] = trip.stops
    assert (stop.start, stop.end) == (90.0, 390.0) and stop.lat == pytest.approx(49.0 + 900 / 111_195)


def test_short_halts_are_not_stops_and_open_stops_are_reported() -> None:
    trip = TripStats(min_stop=120)
    for i in range(4):
        trip.add(i * 10.0, 49.0, 28.0 + i * 0.001, 30.0, True)
    for i in range(4, 8):  # 40 s at the lights: too short
        trip.add(i * 10.0, 49.0, 28.003, 0.0, True)
    trip.add(80.0, 49.0, 28.004, 30.0, True)
    assert trip.stops == []
    for i in range(9, 30):
        trip.add(i * 10.0, 49.0, 28.004, 0.0, True)
    assert trip.stops == [] and trip.open_stop() is not None and trip.open_stop().duration >= 120


def test_speed_from_positions_when_the_device_sends_none_and_old_fixes_are_ignored() -> None:
    trip = TripStats()
    trip.add(0, 49.0, 28.0, None, None)
    trip.add(10, 49.001, 28.0, None, None)  # ~111 m in 10 s ≈ 40 km/h: moving
    trip.add(5, 0.0, 0.0, None, None)  # older than the last fix: ignored
    assert trip.moving_s == 10 and trip.distance_m == pytest.approx(111.2, rel=0.01)
