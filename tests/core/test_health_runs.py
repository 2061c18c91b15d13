"""Checking a batch device by device, or a column at a time over many devices, gives exactly the
findings of checking it one message at a time: the run-wise path keeps a device's state in locals
and proves the common case cheaply, the column-wise path does each check over every device at
once, and any slip in either would show as a missed, doubled or misplaced finding."""

from __future__ import annotations

import math
import random

import pytest

from app.core.health import HealthMonitor, HealthThresholds
from app.core.normalize import Message, normalize

T0 = 1_767_225_600.0


def troubled_stream(seed: int, n: int = 6_000, devices: int = 7) -> list[Message]:
    """Messages from a few devices that do everything a tracker can do wrong, often enough that
    every check fires many times: reordered and repeated times, silences, late delivery, lost
    fixes, jumps, poor satellites and HDOP, parameters that come and go or never change, a NaN
    reading, missing server times. (Clocks ahead and far behind come from `receive_time`.)"""
    rng = random.Random(seed)
    clock = {f"d{i}": T0 + i for i in range(devices)}
    place = {f"d{i}": (50.0 + i, 10.0) for i in range(devices)}
    out: list[Message] = []
    for _ in range(n):
        ident = rng.choice(list(clock))
        step = rng.choice([5.0] * 20 + [0.0, -30.0, 400.0, 5_000.0, 0.5])
        clock[ident] += step
        ts = clock[ident]
        lat, lon = place[ident]
        lat += rng.gauss(0, 1e-4) if rng.random() > 0.01 else rng.choice([1.0, -2.0])  # now and then a jump
        place[ident] = (lat, lon)
        raw: dict = {"ident": ident, "timestamp": ts, "position.latitude": lat, "position.longitude": lon,
                     "position.satellites": rng.choice([12] * 15 + [2]),
                     "position.hdop": rng.choice([0.9] * 15 + [9.0]),
                     "position.valid": rng.random() > 0.03, "steady": 7, "counter": len(out) // 50}
        if rng.random() > 0.02:
            raw["server.timestamp"] = ts + rng.choice([0.5] * 30 + [120.0, -3.0])
        if rng.random() < 0.05:
            raw["extra.param"] = rng.random()
        if rng.random() < 0.01:
            raw["sometimes.nan"] = math.nan
        if rng.random() < 0.01:
            del raw["position.latitude"]  # no fix at all
        out.append(normalize(raw, ts + 1.0))
    return out


def receive_time(batch: list[Message], rng: random.Random) -> float:
    """When a batch arrived: usually just after its newest message; now and then the device's clock
    is ahead (its messages are in the future) or the batch was held back for weeks."""
    return batch[-1].ts + rng.choice([1.0] * 6 + [-120.0, 40 * 86400.0])


def findings(monitor: HealthMonitor) -> dict:
    """Everything a user sees of every device, with the references behind each finding."""
    return {ident: (device.report(), [(check, list(f.latest)) for check, f in device.findings.items()],
                    device.warnings(), device.histogram[:], device.stuck())
            for ident, device in monitor.devices.items()}


@pytest.mark.parametrize(("seed", "devices"), [(1, 7), (2, 7), (3, 7), (4, 90), (5, 90), (6, 300)])
def test_batches_of_any_size_find_exactly_what_one_by_one_finds(seed: int, devices: int) -> None:
    # 7 devices: every batch device by device; 90 and 300: large batches column-wise over their
    # devices, small ones (and the tail of a device's long run) device by device, one state.
    stream = troubled_stream(seed, n=6_000 if devices < 100 else 12_000, devices=devices)
    thresholds = HealthThresholds(stuck_messages=20, stuck_seconds=60.0)
    batched, one_by_one = HealthMonitor(thresholds), HealthMonitor(thresholds)
    rng = random.Random(seed)
    start = 0
    while start < len(stream):
        batch = stream[start:start + rng.choice([1, 2, 3, 7, 40, 300, 1_000, devices // 2, devices, devices])]
        received_at = receive_time(batch, rng)
        refs = list(range(start, start + len(batch)))
        batched.add_batch(batch, received_at, refs)
        for m, ref in zip(batch, refs, strict=True):
            one_by_one.add(m, received_at, ref)
        start += len(batch)
    assert findings(batched) == findings(one_by_one)
    fired = {check for device in batched.devices.values() for check in device.counts()}
    assert fired == {"out_of_order", "duplicate_time", "gap", "future_time", "past_time", "latency", "invalid_fix",
                     "jump", "few_satellites", "high_hdop", "params_changed", "stuck"}


def test_retuned_thresholds_apply_alike_to_batches() -> None:
    stream = troubled_stream(9, n=3_000)
    strict = HealthThresholds(jump_kmh=50.0, latency_s=10.0, window_messages=5, max_hdop=2.0)
    monitors = [HealthMonitor(), HealthMonitor()]
    rng = random.Random(9)
    for part, (start, end) in enumerate([(0, 1_500), (1_500, 3_000)]):
        if part:
            for monitor in monitors:
                monitor.set_thresholds(strict)
        for k in range(start, end, 100):
            batch = stream[k:k + 100]
            received_at = receive_time(batch, rng)
            monitors[0].add_batch(batch, received_at, list(range(k, k + len(batch))))
            for j, m in enumerate(batch):
                monitors[1].add(m, received_at, k + j)
    assert findings(monitors[0]) == findings(monitors[1])


def test_an_empty_batch_changes_nothing() -> None:
    monitor = HealthMonitor()
    monitor.add_batch([], T0, [])
    assert monitor.devices == {}
