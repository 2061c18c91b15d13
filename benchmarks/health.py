"""Health checks over 1,000,000 messages: messages/s of the incremental checks.

Messages are generated and normalized first (not timed). Baseline in the same run: a loop that
only reads each message's ident and timestamp, the floor for any per-message Python work.

    .venv/bin/python benchmarks/health.py [--messages 1000000] [--devices 100]
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
    fleet = FleetSimulator(args.devices, seed=5, start=time.time() - args.messages * 5.0 / args.devices,
                           interval=5.0, bad_fix_rate=0.02)
    messages = [normalize(raw, raw["timestamp"] + 1.0) for raw in fleet.next_messages(args.messages)]
    started = time.perf_counter()
    touched = sum(1 for m in messages if m.ident and m.ts)
    floor = time.perf_counter() - started
    monitor = HealthMonitor()
    started = time.perf_counter()
    for m in messages:
        monitor.add(m, m.ts + 1.0, m)
    elapsed = time.perf_counter() - started
    findings = sum(sum(d.counts().values()) for d in monitor.devices.values())
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{len(messages):,} messages, {args.devices} devices")
    print(f"health checks: {len(messages) / elapsed:,.0f} msg/s ({elapsed / len(messages) * 1e6:.2f} µs/message), "
          f"{findings:,} findings")
    print(f"baseline (read ident and time): {touched / floor:,.0f} msg/s; health / baseline {floor / elapsed:.3f}")


if __name__ == "__main__":
    main()
