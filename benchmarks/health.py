"""Health checks over 1,000,000 messages: messages/s of the incremental checks.

Messages are generated and normalized first (not timed), then checked in 1,000-message batches
as the window and `trackmon check` feed them (`HealthMonitor.add_batch`), and again one message
at a time (`add`), each into a fresh monitor, with the pre-generated input frozen out of the
cyclic collector's reach (`trackmon check` streams it from the file instead of holding it). Baseline
in the same run: a loop that only reads each message's ident and timestamp, the floor for any
per-message Python work.

    .venv/bin/python benchmarks/health.py [--messages 1000000] [--devices 100]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.health import HealthMonitor  # noqa: E402
from app.core.normalize import normalize  # noqa: E402
from app.core.simfleet import FleetSimulator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1_000)
    args = parser.parse_args()
    fleet = FleetSimulator(args.devices, seed=5, start=time.time() - args.messages * 5.0 / args.devices,
                           interval=5.0, bad_fix_rate=0.02)
    messages = [normalize(raw, raw["timestamp"] + 1.0) for raw in fleet.next_messages(args.messages)]
    started = time.perf_counter()
    touched = sum(1 for m in messages if m.ident and m.ts)
    floor = time.perf_counter() - started
    batches = [messages[i:i + args.batch] for i in range(0, len(messages), args.batch)]
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{len(messages):,} messages, {args.devices} devices, {args.batch:,}-message batches")
    print(f"baseline (read ident and time): {touched / floor:,.0f} msg/s")
    for name in ("batches", "one by one"):
        monitor = HealthMonitor()
        # The input is held in memory only to time the checks alone (`trackmon check` streams it
        # from the file): the collector walking a million waiting messages is not their cost.
        gc.collect()
        gc.freeze()
        started = time.perf_counter()
        if name == "batches":
            for batch in batches:
                monitor.add_batch(batch, batch[-1].ts + 1.0, batch)
        else:
            for batch in batches:
                received_at = batch[-1].ts + 1.0
                for m in batch:
                    monitor.add(m, received_at, m)
        elapsed = time.perf_counter() - started
        findings = sum(sum(d.counts().values()) for d in monitor.devices.values())
        print(f"health checks, {name}: {len(messages) / elapsed:,.0f} msg/s "
              f"({elapsed / len(messages) * 1e6:.2f} µs/message), {findings:,} findings; "
              f"/ baseline {floor / elapsed:.3f}")


if __name__ == "__main__":
    main()
