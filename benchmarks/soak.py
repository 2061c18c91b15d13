"""Soak: the real window for a long time under live load while everything else cycles.

The window (offscreen unless DISPLAY is set) listens as `trackmon` does; `trackmon simulate` posts
5,000 msg/s from 500 devices; every round imports a file, exports the live session, replays a
session and switches to a new session (tests/ui/churn.py). A second process polls `GET /status`
throughout (black-box latency, as a user's tool would see it). Every 10 s it samples the
window's RSS. At the end it prints: messages recorded, rounds, RSS after warm-up vs. at the end,
`/status` latency percentiles and failures, the worst event-loop stall and garbage-collection
cost; the baseline for `/status` is the same poller against the headless `trackmon record`
measured at the start of the run.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--rate 5000] [--devices 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import psutil  # noqa: E402

from benchmarks.loopback import free_port, start_recorder, stop_process  # noqa: E402
from benchmarks.status_poller import finish_poller, start_poller, summary  # noqa: E402
from benchmarks.window_harness import open_window  # noqa: E402

TOKEN = "soak-token"


def simulate(url: str, args: argparse.Namespace, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app", "simulate", "--to", url, "--token", TOKEN, "--devices",
                             str(args.devices), "--rate", str(args.rate), "--batch", str(args.batch), "--duration",
                             str(seconds), "--seed", "11"], cwd=ROOT, stdout=subprocess.DEVNULL)


def headless_baseline(args: argparse.Namespace, seconds: float) -> dict:
    """`/status` latency of headless `trackmon record` under the same feed."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        record = start_recorder(port, Path(tmp) / "baseline.sqlite", TOKEN)
        try:
            feed = simulate(f"http://127.0.0.1:{port}/", args, seconds)
            poller = start_poller(f"http://127.0.0.1:{port}/status", seconds, args.poll_every)
            result = finish_poller(poller)
            feed.wait(60)
            return result
        finally:
            stop_process(record)


def stall_place(stack: traceback.StackSummary) -> str:
    """The innermost frame of trackmon's own code in a stack (what to look at), with the frame
    it was in when that is a library's."""
    ours = [f for f in stack if f.filename.startswith((str(ROOT / "app"), str(ROOT / "tests")))]
    inner = stack[-1]
    if not ours:
        return f"{Path(inner.filename).name}:{inner.name} (no trackmon frame)"
    frame = ours[-1]
    place = f"{Path(frame.filename).name}:{frame.name}"
    return place if frame is inner else f"{place} → {Path(inner.filename).name}:{inner.name}"


def run_window(args: argparse.Namespace, seconds: float, workdir: Path) -> dict:
    bench = open_window(workdir / "soak.sqlite", TOKEN)
    from PySide6.QtCore import QTimer

    from tests.ui.churn import churn_cycle

    loop, window, collector = bench.loop, bench.window, bench.collector
    me = psutil.Process()
    result: dict = {"rss": [], "rounds": 0, "stall_ms": 0.0, "errors": [], "stalls": [], "gaps": [],
                    "where": []}
    last = [time.perf_counter()]
    gui_thread = threading.get_ident()
    watching = threading.Event()
    where_at: dict[float, str] = {}  # the heartbeat a stall followed → where the watchdog saw the GUI thread

    def watchdog() -> None:
        """Where the GUI thread is when it has not beaten for ``--stack-after`` seconds: one stack per stall."""
        reported = None
        while not watching.wait(0.05):
            beat_at = last[0]
            if time.perf_counter() - beat_at > args.stack_after and reported != beat_at:
                reported = beat_at
                frame = sys._current_frames().get(gui_thread)
                if frame is not None:
                    stack = traceback.extract_stack(frame)
                    result["stalls"].append("".join(traceback.format_list(stack[-12:])))
                    result["where"].append(stall_place(stack))
                    where_at[beat_at] = result["where"][-1]

    threading.Thread(target=watchdog, name="soak-watchdog", daemon=True).start()

    stall_log = open(args.stall_log, "w", encoding="utf-8") if args.stall_log else None  # noqa: SIM115

    def note(record: dict) -> None:
        if stall_log is not None:
            stall_log.write(json.dumps(record) + "\n")
            stall_log.flush()

    def beat() -> None:
        now = time.perf_counter()
        gap_ms = (now - last[0]) * 1000.0
        result["stall_ms"] = max(result["stall_ms"], gap_ms)
        if gap_ms > 250:
            result["gaps"].append(gap_ms)
            # perf_counter is CLOCK_MONOTONIC on Linux: `perf record -k CLOCK_MONOTONIC` samples line up.
            note({"stall_from": last[0], "stall_to": now, "ms": round(gap_ms, 1),
                  "where": where_at.get(last[0]),
                  "threads": {t.native_id: t.name for t in threading.enumerate()}})
        last[0] = now

    async def scenario() -> None:
        await window.start()
        url = window.urls()[0]
        feed = simulate(url, args, seconds)
        poller = start_poller(url.rsplit("/", 1)[0] + "/status", seconds, args.poll_every)
        heartbeat = QTimer(interval=50, timeout=beat)
        heartbeat.start()
        started = time.monotonic()

        async def sample() -> None:
            while True:
                result["rss"].append((round(time.monotonic() - started), me.memory_info().rss))
                await asyncio.sleep(10)

        sampler = asyncio.ensure_future(sample())
        browser = window.open_sessions()
        try:
            while time.monotonic() - started < seconds:
                try:
                    await churn_cycle(window, browser, workdir, result["rounds"] + 1, import_rows=20_000,
                                      replay_s=2.0, timeout=300)
                    result["rounds"] += 1
                except AssertionError as exc:
                    result["errors"].append(str(exc))
                await asyncio.sleep(args.pause)
        finally:
            heartbeat.stop()
            sampler.cancel()
            result["rss"].append((round(time.monotonic() - started), me.memory_info().rss))
            result["status"] = await asyncio.get_running_loop().run_in_executor(None, finish_poller, poller)
            feed.wait(60)
            result["messages"] = window.listener.stats.messages if window.listener else 0
            result["listener"] = window.listener.stats.as_json() if window.listener else {}
            browser.close()
            await window.shutdown()

    with loop:
        loop.run_until_complete(scenario())
    watching.set()
    if stall_log is not None:
        stall_log.close()
    collector.stop()
    result["gc"] = {"passes": collector.stats.passes, "worst_ms": collector.stats.worst_ms,
                    "total_ms": collector.stats.total_ms}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=5000.0, help="messages/s over the fleet")
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--pause", type=float, default=10.0, help="seconds between rounds")
    parser.add_argument("--poll-every", type=float, default=0.2)
    parser.add_argument("--baseline-seconds", type=float, default=60.0)
    parser.add_argument("--warmup-minutes", type=float, default=5.0)
    parser.add_argument("--stack-after", type=float, default=1.0,
                        help="seconds the GUI thread may not beat before the watchdog keeps its stack")
    parser.add_argument("--stall-log", help="write every stall over 250 ms (monotonic start and end, where, the "
                        "process's threads by native id) to this file as JSON lines, to line up with a profiler")
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.rate:,.0f} msg/s from {args.devices} devices, {args.minutes:g} min", flush=True)
    baseline = headless_baseline(args, args.baseline_seconds)
    print(f"baseline: headless record, /status {summary(baseline['latencies'])}, "
          f"{len(baseline['failures'])} failures", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = run_window(args, args.minutes * 60.0, Path(tmp))
    rss = result["rss"]
    warm = [mb for t, mb in rss if t >= args.warmup_minutes * 60] or [rss[-1][1]]
    status = result["status"]
    print(f"window: {result['messages']:,} messages recorded ({result['messages'] / (args.minutes * 60):,.0f} msg/s),"
          f" {result['rounds']} rounds of import/export/replay/new session, {len(result['errors'])} failed rounds")
    for error in result["errors"][:5]:
        print(f"  failed round: {error}")
    print(f"RSS: {rss[0][1] / 2**20:.0f} MB at start, {warm[0] / 2**20:.0f} MB after warm-up "
          f"({args.warmup_minutes:g} min), max {max(mb for _, mb in rss) / 2**20:.0f} MB, "
          f"{rss[-1][1] / 2**20:.0f} MB at the end")
    print("RSS timeline (min: MB): " + ", ".join(f"{t / 60:.0f}: {mb / 2**20:.0f}" for t, mb in rss[::6]))
    print(f"/status from another process: {summary(status['latencies'])}, {len(status['failures'])} failures")
    for failure in status["failures"][:5]:
        print(f"  {failure}")
    if status["latencies"] and baseline["latencies"]:
        ratio = statistics.quantiles(status["latencies"], n=100)[98] / statistics.quantiles(
            baseline["latencies"], n=100)[98]
        print(f"/status p99 window / headless: {ratio:.1f}x")
    print(f"worst event-loop stall (50 ms heartbeat): {result['stall_ms']:.0f} ms; stalls over 250 / 500 / 1,000 ms: "
          + " / ".join(str(sum(1 for gap in result["gaps"] if gap > bound)) for bound in (250, 500, 1000)))
    if result["where"]:
        print(f"where the GUI thread was in the {len(result['where'])} stalls over {args.stack_after:g} s "
              "(innermost trackmon frame):")
        for place, count in Counter(result["where"]).most_common(15):
            print(f"  {count:4d}  {place}")
    for stack in result["stalls"][:12]:
        print(f"GUI thread during a stall over {args.stack_after:g} s:\n" + stack)
    gc_stats = result["gc"]
    print(f"GUI-thread garbage collection: passes {gc_stats['passes']}, worst "
          f"{[round(ms, 1) for ms in gc_stats['worst_ms']]} ms, total {gc_stats['total_ms'] / 1000:.1f} s")


if __name__ == "__main__":
    main()
