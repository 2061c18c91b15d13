"""Replay playback in the real window: how late the GUI thread's 10 ms timer runs while a
500-device session plays, and how fast the replay clock moves.

A recording of 200,000 messages from 500 devices (1,000 per batch, one every 5 s per device) is
written first (not timed). The window (offscreen, offline map) opens it, replays session 1 from
its start and plays for ``--seconds`` at each speed; meanwhile a 10 ms `QTimer` on the window's
loop records its lateness (what a user feels as a stutter). Baseline in the same run: the same
window, in replay, paused, for the same time.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/replay_play.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import orjson  # noqa: E402

from app.core.normalize import normalize_batch  # noqa: E402
from app.core.simfleet import FleetSimulator  # noqa: E402
from app.store.recorder import Recorder  # noqa: E402
from benchmarks.status_poller import percentiles  # noqa: E402
from benchmarks.window_harness import open_window  # noqa: E402

SPEEDS = (("paused (baseline)", 0.0), ("60×", 60.0), ("600×", 600.0), ("as fast as possible", None))


def beat(lateness: list[float], last: list[float]) -> None:
    """One tick of the 10 ms timer: how late it came."""
    now = time.perf_counter()
    lateness.append(max(0.0, now - last[0] - 0.010) * 1000)
    last[0] = now


def write_recording(db: Path, messages: int, devices: int) -> None:
    recorder = Recorder(db)
    recorder.start_session()
    fleet = FleetSimulator(devices, seed=3, start=time.time() - messages * 5.0 / devices, interval=5.0)
    for _ in range(messages // 1000):
        body = orjson.dumps(fleet.next_messages(1000))
        now = time.time()
        recorder.write_batch(now, "bench", len(body), body, normalize_batch(orjson.loads(body), now, body), 1.0)
    recorder.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; a session of "
          f"{args.messages:,} messages from {args.devices} devices; {args.seconds:g} s per speed", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "replay.sqlite"
        write_recording(db, args.messages, args.devices)
        bench = open_window(db, "bench-token")
        from PySide6.QtCore import QTimer

        loop, window = bench.loop, bench.window
        results: list[tuple[str, dict, float]] = []

        async def scenario() -> None:
            await window.start()
            window.enter_replay(1)
            while window.replay_opening or window.replay is None:
                await asyncio.sleep(0.05)
            replay = window.replay
            span = replay.source.end - replay.source.start
            for label, speed in SPEEDS:
                replay.seek(replay.source.start)
                while replay.seeking:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1.0)
                lateness: list[float] = []
                last = [time.perf_counter()]
                timer = QTimer(interval=10, timeout=partial(beat, lateness, last))
                started_at = replay.t
                if speed != 0.0:
                    replay.set_speed(speed)
                    replay.play()
                last[0] = time.perf_counter()
                timer.start()
                await asyncio.sleep(args.seconds)
                timer.stop()
                replay.pause()
                results.append((label, percentiles(lateness), (replay.t - started_at) / args.seconds))
            print(f"session span {span / 60:.0f} min of recording", flush=True)
            await window.shutdown()

        with loop:
            loop.run_until_complete(scenario())
        bench.collector.stop()
    base = results[0][1]
    for label, late, rate in results:
        print(f"{label:22s} 10 ms timer late: p50 {late['p50']:5.1f}  p99 {late['p99']:6.1f}  "
              f"max {late['max']:6.1f} ms "
              f"(p99 {late['p99'] / max(base['p99'], 0.1):4.1f}x paused); replay clock {rate:7.1f} s of recording/s")


if __name__ == "__main__":
    main()
