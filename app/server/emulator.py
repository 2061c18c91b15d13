"""`trackmon simulate`: a simulated fleet delivered like a flespi HTTP stream.

What the messages carry (and which of it flespi documents) is in `core/simfleet`; how batches are
cut and re-sent (and which of it is assumed) is in `server/stream_client`. Here: pacing, and a
queue the sender cuts batches from, so a retry after a failure is re-cut as flespi's would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.core.simfleet import FleetSimulator, nest
from app.server.stream_client import SendStats, StreamSender


@dataclass(slots=True)
class EmulatorOptions:
    """What to simulate and how to send it; mirrors the `simulate` command's flags."""

    devices: int = 10
    batch: int = 100  # like the stream's limit_messages
    rate: float = 0.0  # messages per second over the fleet; 0 = as fast as acknowledged
    count: int | None = None
    duration: float | None = None
    nested: bool = False
    seed: int = 1
    interval: float = 5.0  # seconds between one device's messages when rate is 0
    start: float | None = None  # first device timestamp; default: now (or earlier, see below)
    bad_fix_rate: float = 0.01
    backfill: float = 0.0  # with a rate: first send this many seconds of history, then go on live
    headers: dict[str, str] = field(default_factory=dict)
    buffered_rate: float = 0.0  # chance per message that a vehicle loses coverage and uploads late
    recut: bool = True  # a retry after a failure is cut anew from the queue (not byte-identical)


def build_simulator(options: EmulatorOptions, now: float) -> FleetSimulator:
    """The fleet for ``options``; in max-rate mode with a count, history ends about ``now``."""
    if options.rate > 0:
        interval = options.devices / options.rate
        start = options.start if options.start is not None else now - options.backfill
    else:
        interval = options.interval
        span = (options.count or 0) * interval / options.devices
        start = options.start if options.start is not None else now - span
    return FleetSimulator(options.devices, seed=options.seed, start=start, interval=interval,
                          bad_fix_rate=options.bad_fix_rate, buffered_rate=options.buffered_rate)


def encode_batch(messages: list[dict], nested: bool) -> bytes:
    """The request body flespi would send for these messages."""
    return orjson.dumps([nest(m) for m in messages] if nested else messages)


async def run_emulator(sender: StreamSender, options: EmulatorOptions,
                       stop: asyncio.Event | None = None) -> SendStats:
    """Send until the count or duration is reached, or ``stop`` is set; returns the totals."""
    began = time.time()
    fleet = build_simulator(options, began)
    deadline = None if options.duration is None else time.monotonic() + options.duration
    t0 = time.monotonic() - (options.backfill if options.rate > 0 else 0.0)  # backfill is due at once
    queue: deque[dict[str, Any]] = deque()  # produced, not yet acknowledged (flespi's stream queue)
    recut = random.Random(options.seed) if options.recut else None

    def due() -> int:
        """Messages that may join the queue now (by the rate, the count, the batch size)."""
        if options.rate > 0:
            wanted = int((time.monotonic() - t0) * options.rate) + 1 - fleet.produced
        else:
            wanted = options.batch - len(queue)
        if options.count is not None:
            wanted = min(wanted, options.count - fleet.produced)
        return max(0, wanted)

    def top_up() -> None:  # what the stream queued while a failed batch waited
        queue.extend(fleet.next_messages(due()))

    def encode(batch: list[dict[str, Any]]) -> bytes:
        return encode_batch(batch, options.nested)

    while True:
        if stop is not None and stop.is_set():
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        if not queue:
            remaining = None if options.count is None else options.count - fleet.produced
            if remaining is not None and remaining <= 0:
                break
            size = min(options.batch, due()) if options.rate > 0 else options.batch
            if remaining is not None:
                size = min(size, remaining)
            if size <= 0:
                wait = (fleet.produced / options.rate) - (time.monotonic() - t0)
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - time.monotonic()))
                await _sleep_or_stop(max(wait, 0.001), stop)
                continue
            queue.extend(fleet.next_messages(size))
        await sender.send_from(queue, options.batch, encode, recut=recut, top_up=top_up)
    return sender.stats


async def _sleep_or_stop(seconds: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
