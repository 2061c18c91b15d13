"""Each health check with sequences that must, and must not, trigger it."""

from __future__ import annotations

import pytest

from app.core.health import CHECKS, ERROR, HealthMonitor, HealthThresholds
from app.core.normalize import normalize

T0 = 1_767_225_600.0


def feed(raws: list[dict], *, lag: float = 1.0, thresholds: HealthThresholds | None = None):
    """Normalize and check ``raws`` as if each arrived ``lag`` s after its device time."""
    monitor = HealthMonitor(thresholds)
    for i, raw in enumerate(raws):
        raw = {"ident": "d", **raw}
        ts = raw.get("timestamp", T0)
        monitor.add(normalize(raw, ts + lag), ts + lag, ref=i)
    return monitor.devices["d"]


def track(n: int = 50, step: float = 10.0, **extra) -> list[dict]:
    """A clean track: regular messages, slow steady movement, good fixes."""
    return [{"timestamp": T0 + i * step, "position.latitude": 50 + i * 1e-4, "position.longitude": 10.0,
             "position.satellites": 12, "position.hdop": 0.8, "position.valid": True,
             "server.timestamp": T0 + i * step + 0.5,
             "sensor": i, **extra} for i in range(n)]


def test_a_clean_track_triggers_nothing() -> None:
    device = feed(track())
    assert device.counts() == {} and device.worst() == (0, "")
    report = device.report()
    assert report["interval"]["median_s"] == 10.0 and report["rate_per_min"] == pytest.approx(6.0, rel=0.03)
    assert report["latency"]["device_to_server_mean_s"] == pytest.approx(0.5)


def refs(device, check: str) -> list[int]:
    return [ref for _, ref, _ in device.findings[check].latest]


def test_out_of_order_and_duplicate_timestamps() -> None:
    raws = track(10)
    raws[5]["timestamp"] = raws[3]["timestamp"] - 1  # earlier than its predecessor
    raws[8]["timestamp"] = raws[7]["timestamp"]  # the same as its predecessor
    device = feed(raws)
    assert refs(device, "out_of_order") == [5] and refs(device, "duplicate_time") == [8]


def test_timestamps_in_the_future_or_far_past() -> None:
    assert "future_time" in feed(track(5), lag=-120).counts()  # device clock 2 minutes ahead
    assert "future_time" not in feed(track(5), lag=-30).counts()  # within tolerance
    old = feed(track(5), lag=40 * 86400)
    assert "past_time" in old.counts() and old.worst()[0] == 2


@pytest.mark.parametrize(("change", "check"), [
    ({"position.latitude": 0, "position.longitude": 0}, "invalid_fix"),
    ({"position.valid": False}, "invalid_fix"),
    ({"position.satellites": 3}, "few_satellites"),
    ({"position.hdop": 9.5}, "high_hdop"),
])
def test_bad_fixes(change, check) -> None:
    raws = track(10)
    raws[4].update(change)
    device = feed(raws)
    assert refs(device, check) == [4]
    assert set(device.counts()) == {check}  # the bad fix is not also a "jump"


def test_position_jumps_by_implied_speed() -> None:
    raws = track(10)
    raws[6]["position.latitude"] += 0.5  # ~55 km in 10 s, then back
    device = feed(raws)
    assert refs(device, "jump") == [6, 7] and device.worst() == (ERROR, "jump")
    slow = track(10)
    slow[6]["position.latitude"] += 0.0025  # ~280 m in 10 s ≈ 100 km/h: a car, not a jump
    assert "jump" not in feed(slow).counts()


def test_gaps_relative_to_the_usual_interval() -> None:
    raws = track(40)
    for raw in raws[30:]:
        raw["timestamp"] += 600  # ten minutes of silence before message 30
        raw["server.timestamp"] += 600
    device = feed(raws)
    assert refs(device, "gap") == [30] and "610 s" in device.findings["gap"].latest[0][2]
    assert "gap" not in feed(track(40, step=120)).counts()  # slow but regular is not a gap


def test_late_delivery() -> None:
    raws = track(5)
    raws[2]["server.timestamp"] = raws[2]["timestamp"] + 3600
    device = feed(raws)
    assert refs(device, "latency") == [2]
    assert device.report()["latency"]["device_to_server_max_s"] == 3600


def test_parameters_appearing_and_disappearing() -> None:
    raws = track(6)
    raws[2]["alarm"] = True
    del raws[4]["position.hdop"]
    device = feed(raws)
    assert refs(device, "params_changed") == [2, 3, 4, 5]
    assert "+alarm" in device.findings["params_changed"].latest[0][2]
    assert device.report()["changing_parameters"]["alarm"] == 2


def test_stuck_values_need_enough_messages_and_time() -> None:
    quick = HealthThresholds(stuck_messages=20, stuck_seconds=100)
    device = feed(track(30, fuel=42.0, **{"channel.id": 7}), thresholds=quick)
    assert "fuel" in device.stuck()
    assert "sensor" not in device.stuck() and "channel.id" not in device.stuck()  # changes / not a sensor
    assert feed(track(10, fuel=42.0), thresholds=quick).stuck() == []  # too few messages yet


def test_every_check_has_a_label_and_severity() -> None:
    for label, severity in CHECKS.values():
        assert label and severity in (1, 2, 3)
