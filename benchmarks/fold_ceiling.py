"""The ceiling of "fold in a second process": CPU per message of everything the window derives
from a committed batch, stage by stage, in one process on one core.

Issue 13's window bar (≥ 50,000 msg/s on a 2-core machine) needs the window's process to stop
working per message. The only shape that does that moves the fold — parse, normalize, fleet state,
health checks — into a child that reads the committed batches (as the deriver of `trackmon
record` already does for track chunks) and sends the window compact per-device frames. That
child then does all the per-message Python work on one core, so its CPU per message bounds the
window's rate whatever else is made faster. This measures that bound on the feeder's batches
(the ones `gui_backlog.py` posts), each stage over all batches:

    decompress (the stored zstd body) → parse (orjson) → normalize → track rows → fleet state +
    health checks (`core/fleet.Fleet.apply`, as the window folds)

Baseline in the same run: the plain read alone (decompressing the stored bodies). The inputs are
frozen out of the cyclic collector's reach (a child would hold one batch at a time, not all of
them). CPU time of this process, so other load on the machine moves the figures little.

    .venv/bin/python benchmarks/fold_ceiling.py [--messages 200000] [--devices 1000]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from app.core.fleet import Fleet  # noqa: E402
from app.core.health import HealthMonitor  # noqa: E402
from app.core.normalize import normalize_batch  # noqa: E402
from app.store.codec import compress_body, decompress_body  # noqa: E402
from app.store.track_rows import merge_rows, track_rows  # noqa: E402
from benchmarks.feeder import make_batches  # noqa: E402


def cpu_us_per_message(work: Callable[[], object], messages: int, repeat: int) -> float:
    """The least CPU time per message over ``repeat`` runs of ``work`` (the least disturbed)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best * 1e6 / messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bodies = make_batches(args.messages, args.devices, args.batch)
    stored = [compress_body(body) for body in bodies]
    received_at = time.time()
    n = len(bodies) * args.batch
    normalized = [normalize_batch(orjson.loads(body), received_at, body) for body in bodies]
    gc.collect()
    gc.freeze()  # the inputs: a child holds one batch at a time

    def read() -> None:
        for body in stored:
            decompress_body(body)

    def parse() -> None:
        for body in stored:
            orjson.loads(decompress_body(body))

    def normalize() -> None:
        for body in stored:
            raw = decompress_body(body)
            normalize_batch(orjson.loads(raw), received_at, raw)

    def rows() -> None:
        groups: dict = {}
        for batch_id, messages in enumerate(normalized):
            merge_rows(groups, track_rows(batch_id, messages))

    def health() -> None:
        monitor = HealthMonitor()
        for messages in normalized:
            monitor.add_batch(messages, received_at, messages)

    def fleet() -> None:
        live = Fleet()
        for batch_id, messages in enumerate(normalized):
            live.apply(messages, received_at, batch_id)
            if batch_id % 10 == 9:
                live.take_changes()  # ~10 frames/s at the rates in question

    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {n:,} messages, "
          f"{args.devices} devices, {args.batch}/batch; best of {args.repeat}, CPU µs per message")
    baseline = cpu_us_per_message(read, n, args.repeat)
    parsed = cpu_us_per_message(parse, n, args.repeat)
    normal = cpu_us_per_message(normalize, n, args.repeat)
    stages = {
        "decompress (baseline: the plain read)": baseline,
        "parse (orjson)": parsed - baseline,
        "normalize": normal - parsed,
        "track rows": cpu_us_per_message(rows, n, args.repeat),
        "health checks alone": cpu_us_per_message(health, n, args.repeat),
        "fleet state + health checks (Fleet.apply)": cpu_us_per_message(fleet, n, args.repeat),
    }
    for name, us in stages.items():
        print(f"  {name:45s} {us:6.2f} µs")
    del stages["health checks alone"]  # inside Fleet.apply
    total = sum(stages.values())
    print(f"one process doing all of it: {total:.2f} µs per message = {1e6 / total:,.0f} msg/s on a whole core; "
          f"{total / baseline:.0f}x the plain read ({1e6 / baseline:,.0f} msg/s)")
    print(f"  at 50,000 msg/s that process needs {total * 0.05:.2f} of a core")


if __name__ == "__main__":
    main()
