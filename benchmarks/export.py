"""Export speed and memory: a generated 1,000,000-message session written to each format.

Each export runs in its own process so its peak RSS (VmHWM) is its own. Baseline in the same
run: reading the same points without writing anything. Every file is written as the CLI writes
it (`export_file`: a partial file renamed when complete). Besides wall-clock rates the CPU time of
the exporting process is printed: on a shared machine it moves less than the wall clock.

    .venv/bin/python benchmarks/export.py [--messages 1000000] [--devices 100]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from app.core.normalize import normalize_batch  # noqa: E402
from app.core.simfleet import FleetSimulator  # noqa: E402
from app.store.recorder import Recorder  # noqa: E402

CHILD = """
import io, os, sqlite3, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from app.store.export_file import export_file
from app.store.points import PointFilter, iter_points
db, fmt, out, valid = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
conn = sqlite3.connect(db)
f = PointFilter(1, valid_only=valid)
started, cpu = time.perf_counter(), time.process_time()
if fmt == "read":
    n = sum(1 for _ in iter_points(conn, f))
else:
    n = export_file(conn, fmt, f, Path(out)).written
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1]
print(n, elapsed, int(hwm) / 1024, cpu)
"""


def build(db: Path, messages: int, devices: int) -> float:
    fleet = FleetSimulator(devices, seed=3, start=time.time() - messages * 5.0 / devices, interval=5.0)
    rec = Recorder(db)
    rec.start_session("export benchmark")
    started = time.perf_counter()
    for _ in range(messages // 1000):
        batch = fleet.next_messages(1000)
        body = orjson.dumps(batch)
        now = time.time()
        rec.write_batch(now, "bench", len(body), body, normalize_batch(batch, now, body), 0.0)
    rec.close()
    return time.perf_counter() - started


def replay_figures(db: Path) -> None:
    """Opening the session for replay (first frame) and seeking, as the window does them."""
    import random
    import sqlite3
    import statistics

    from app.store.replay import ReplaySource
    conn = sqlite3.connect(db)
    started = time.perf_counter()
    source = ReplaySource(conn, 1)
    source.density(200)
    source.snapshot(source.start, 200)
    first_frame = (time.perf_counter() - started) * 1000
    from app.store.replay import seek_trail
    budget = seek_trail(200, len(source.idents))
    for trail in sorted({200, budget}):
        rng = random.Random(1)
        seeks = []
        for _ in range(30):
            t = rng.uniform(source.start, source.end)
            started = time.perf_counter()
            source.snapshot(t, trail)
            seeks.append((time.perf_counter() - started) * 1000)
        note = " (what the window restores for this fleet)" if trail == budget else ""
        print(f"replay seek, {trail}-point trails{note}: p50 {statistics.median(seeks):.0f} ms, "
              f"max {max(seeks):.0f} ms over 30 random instants")
    conn.close()
    print(f"replay: open + density + first frame {first_frame:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--geo", nargs="*", default=["gpkg", "geoparquet"], choices=("gpkg", "geoparquet"),
                        help="GeoPackage/GeoParquet too (needs the [geo] extra)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "big.sqlite"
        built = build(db, args.messages, args.devices)
        size = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
        print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"{args.messages:,} messages, {args.devices} devices; built in {built:.1f} s, file {size:.0f} MB")
        replay_figures(db)
        child = CHILD.format(root=str(ROOT))
        results = {}
        formats = [("read", False), ("csv", False), ("gpx", True), ("kml", True), ("geojson", True)]
        formats += [(fmt, True) for fmt in args.geo]
        for fmt, valid in formats:
            out = Path(tmp) / f"out.{fmt}"
            done = subprocess.run([sys.executable, "-c", child, str(db), fmt, str(out), "1" if valid else "0"],
                                  capture_output=True, text=True, check=True)
            n, seconds, rss, cpu = done.stdout.split()
            rate, cpu_rate = int(n) / float(seconds), int(n) / float(cpu)
            results[fmt] = (rate, cpu_rate)
            written = f"{out.stat().st_size / 1e6:6.0f} MB" if out.exists() else "       -"
            ratio = f"{rate / results['read'][0]:.2f} (cpu {cpu_rate / results['read'][1]:.2f})"
            print(f"{fmt:10} {int(n):>9,} points  {float(seconds):6.2f} s  {rate:>9,.0f} msg/s  "
                  f"(cpu {cpu_rate:>9,.0f}/s)  peak RSS {float(rss):5.0f} MB  output {written}  vs read {ratio}")
            out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
