"""Each health check with sequences that must, and must not, trigger it."""

from __future__ import annotations

import pytest

from app.core.health import CHECKS, ERROR, WARN, HealthMonitor, HealthThresholds
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


# -- what is warned about: persistent or material problems only ------------------------------------

def test_occasional_fix_problems_are_counted_but_not_warned_about() -> None:
    raws = track(200)
    for i in range(0, 200, 25):
        raws[i]["position.satellites"] = 3  # one weak fix in 25
    for i in range(7, 200, 40):
        raws[i]["position.valid"] = False  # one invalid fix in 40
    device = feed(raws)
    assert device.counts()["few_satellites"] == 8 and device.counts()["invalid_fix"] == 5
    assert device.warnings() == {} and device.worst() == (0, "")
    assert device.report()["worst"] == "ok"


def test_a_persistent_fix_problem_becomes_a_warning_after_the_set_time_and_clears() -> None:
    th = HealthThresholds()  # 25 % of the last 20 messages, for 60 s
    raws = track(100)
    for raw in raws[40:70]:
        raw["position.valid"] = False  # the antenna is unplugged for five minutes
    monitor = HealthMonitor(th)
    seen = []
    for i, raw in enumerate(raws):
        raw = {"ident": "d", **raw}
        monitor.add(normalize(raw, raw["timestamp"] + 1), raw["timestamp"] + 1, ref=i)
        seen.append(monitor.devices["d"].warning("invalid_fix"))
    # 5 bad messages of 20 reach the share at message 44; 60 s later (message 50) it is a warning.
    assert seen[49] == 0 and seen[50] == WARN
    assert seen[69] == WARN
    assert seen[99] == 0  # good fixes again: the share fell, the warning went away


def test_events_warn_when_repeated_within_the_window() -> None:
    raws = track(200)
    raws[20]["timestamp"] = raws[19]["timestamp"]  # one duplicate timestamp: noted, no warning
    device = feed(raws)
    assert device.counts()["duplicate_time"] == 1 and device.warnings() == {}
    raws[21]["timestamp"] = raws[20]["timestamp"]  # twice within ten minutes: a warning
    assert feed(raws[:60]).warnings() == {"duplicate_time": WARN}
    assert feed(raws).warnings() == {}  # and nothing of it is left 30 minutes later


def test_warnings_are_ranked_by_severity() -> None:
    raws = track(60)
    raws[30]["position.latitude"] += 0.5  # a jump there and back: an error
    raws[40]["timestamp"] = raws[39]["timestamp"]
    raws[41]["timestamp"] = raws[40]["timestamp"]
    device = feed(raws)
    assert list(device.warnings().items()) == [("jump", ERROR), ("duplicate_time", WARN)]
    assert device.worst() == (ERROR, "jump")


def test_thresholds_are_readable_and_can_be_changed_on_a_running_monitor() -> None:
    th = HealthThresholds(min_satellites=6, bad_share=0.1, window_messages=30, persist_s=120, events=3,
                          events_window_s=900)
    text = " ".join(th.describe())
    for part in ("fewer than 6 satellites", "10%", "last 30 messages", "120 s", "3 times", "15 minutes"):
        assert part in text
    raws = track(100)
    for i in range(0, 100, 8):
        raws[i]["position.satellites"] = 5  # one in eight below 6 (but not below the default 4)
    monitor = HealthMonitor()
    for i, raw in enumerate(raws[:50]):
        monitor.add(normalize({"ident": "d", **raw}, raw["timestamp"]), raw["timestamp"], ref=i)
    assert monitor.devices["d"].warnings() == {}
    monitor.set_thresholds(th)  # stricter: from now on, 6 satellites and a 10 % share count
    for i, raw in enumerate(raws[50:], 50):
        monitor.add(normalize({"ident": "d", **raw}, raw["timestamp"]), raw["timestamp"], ref=i)
    device = monitor.devices["d"]
    assert device.thresholds is th and device.warnings() == {"few_satellites": WARN}


def test_the_demo_fleet_is_mostly_healthy_and_its_broken_trackers_stand_out() -> None:
    from app.core.simfleet import FleetSimulator

    fleet = FleetSimulator(24, seed=42, start=T0, interval=2.0, bad_fix_rate=0.01)  # the demo: 24 at 12 msg/s
    monitor = HealthMonitor()
    for m in fleet.next_messages(24 * 450):  # fifteen minutes
        monitor.add(normalize(m, m["timestamp"] + 1), m["timestamp"] + 1)
    faults = {v.ident: v.fault for v in fleet.vehicles}
    worst = {ident: device.worst() for ident, device in monitor.devices.items()}
    flagged = {ident for ident, (severity, _) in worst.items() if severity}
    assert flagged == {ident for ident, fault in faults.items() if fault}
    by_fault = {faults[ident]: check for ident, (_, check) in worst.items() if faults[ident]}
    assert by_fault == {"no_fix": "invalid_fix", "jumps": "jump", "silent": "gap"}
    noisy = sum(1 for ident, device in monitor.devices.items() if not faults[ident] and device.counts())
    assert noisy >= 10  # the healthy ones do have the odd bad fix: counted, not warned about
