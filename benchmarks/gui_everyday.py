"""The window at everyday rates: how fast `GET /status` answers while a small fleet streams in.

A user leaves the window open all day at tens to thousands of messages per second; the listener
shares its event loop with the table, map, log and health views, so every millisecond a frame
holds the loop is a millisecond a stream's request waits. For each rate (default 50 and 2,000
msg/s from 20 devices) this runs `trackmon simulate` against the real window's listener while a
second process polls `GET /status` every 20 ms, and prints the latency percentiles, the window's
CPU (its own process and QtWebEngine's renderer, which draws the map in software here), the
lateness of a 10 ms timer on the loop, and the GUI thread's CPU time between two ticks of that
timer (the size of each block of work, which other processes on the machine do not inflate).
Baseline in the same run: the same feed and poller against a headless `trackmon record`.
`--profile` adds the functions the window's loop spent its time in.

    .venv/bin/python benchmarks/gui_everyday.py [--rates 50,2000] [--seconds 60] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import platform
import pstats
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
from benchmarks.status_poller import finish_poller, percentiles, start_poller, summary  # noqa: E402
from benchmarks.window_harness import open_window  # noqa: E402

TOKEN = "everyday-token"


def simulate(url: str, rate: float, args: argparse.Namespace) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app", "simulate", "--to", url, "--token", TOKEN, "--devices",
                             str(args.devices), "--rate", str(rate), "--duration", str(args.seconds),
                             "--seed", "7"], cwd=ROOT, stdout=subprocess.DEVNULL)


def headless(rate: float, args: argparse.Namespace) -> dict:
    """`/status` latency of headless `trackmon record` under the same feed."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        record = start_recorder(port, Path(tmp) / "baseline.sqlite", TOKEN)
        try:
            feed = simulate(f"http://127.0.0.1:{port}/", rate, args)
            result = finish_poller(start_poller(f"http://127.0.0.1:{port}/status", args.seconds, args.poll_every))
            feed.wait(60)
            return result
        finally:
            stop_process(record)


def cpu_seconds(process: psutil.Process) -> tuple[float, float, float, float]:
    """CPU seconds used so far by ``process``, by its QtWebEngine processes, by the recorder's
    deriver process that folds the window's live fleet and by the one that writes the track chunks.
    Only those: the benchmark's feeder and poller are children too, and one that exits during the
    measurement took its CPU time out of a plain sum of children (a negative figure for QtWebEngine)."""
    own = process.cpu_times()
    webengine = fold = chunks = 0.0
    for child in process.children(recursive=True):
        try:
            if child.name().startswith("QtWebEngine"):
                times = child.cpu_times()
                webengine += times.user + times.system
            elif "app.store.deriver" in (command := child.cmdline()):
                times = child.cpu_times()
                if "--fold" in command:
                    fold += times.user + times.system
                else:
                    chunks += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return own.user + own.system, webengine, fold, chunks


def run_window(args: argparse.Namespace, rates: list[float], workdir: Path) -> list[dict]:
    bench = open_window(workdir / "everyday.sqlite", TOKEN)
    from PySide6.QtCore import QTimer

    loop, window, collector = bench.loop, bench.window, bench.collector
    me = psutil.Process()
    results: list[dict] = []

    async def phase(rate: float) -> dict:
        url = window.urls()[0]
        lateness: list[float] = []
        busy: list[float] = []  # GUI-thread CPU ms between two timer ticks: the loop's blocks
        last = [time.perf_counter(), time.thread_time()]

        def tick() -> None:
            now, cpu = time.perf_counter(), time.thread_time()
            lateness.append(max(0.0, (now - last[0] - 0.010) * 1000.0))
            busy.append((cpu - last[1]) * 1000.0)
            last[0], last[1] = now, cpu

        timer = QTimer(interval=10, timeout=tick)
        stalls: Counter[str] = Counter()
        watching = threading.Event()
        gui_thread = threading.get_ident()

        def watchdog() -> None:
            """While the loop has not ticked for 20 ms, sample where the GUI thread is (Python frames;
            a block in Qt's C++ shows as the Python call that entered it, or the event loop itself)."""
            while not watching.wait(0.004):
                if time.perf_counter() - last[0] > 0.020:
                    frame = sys._current_frames().get(gui_thread)
                    if frame is not None:
                        here = [f"{Path(f.filename).name}:{f.name}" for f in traceback.extract_stack(frame)
                                if "/app/" in f.filename or "site-packages" not in f.filename][-4:]
                        stalls[" < ".join(reversed(here))] += 1

        if args.stalls:
            threading.Thread(target=watchdog, daemon=True).start()
        profiler = cProfile.Profile() if args.profile else None
        before = cpu_seconds(me)
        started = time.monotonic()
        feed = simulate(url, rate, args)
        poller = start_poller(url.rsplit("/", 1)[0] + "/status", args.seconds, args.poll_every)
        timer.start()
        if profiler:
            profiler.enable()
        status = await asyncio.get_running_loop().run_in_executor(None, finish_poller, poller)
        if profiler:
            profiler.disable()
        timer.stop()
        watching.set()
        elapsed = time.monotonic() - started
        after = cpu_seconds(me)
        await asyncio.get_running_loop().run_in_executor(None, feed.wait, 60)
        result = {"rate": rate, "status": status, "lateness": lateness, "busy": busy,
                  "cpu_window": (after[0] - before[0]) / elapsed, "cpu_webengine": (after[1] - before[1]) / elapsed,
                  "cpu_fold": (after[2] - before[2]) / elapsed, "cpu_chunks": (after[3] - before[3]) / elapsed}
        if args.stalls:
            total = sum(stalls.values()) or 1
            result["stalls"] = "\n".join(f"  {n * 4:6d} ms  {n / total:4.0%}  {where}"
                                         for where, n in stalls.most_common(args.profile_lines))
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(args.profile_sort).print_stats(args.profile_lines)
            result["profile"] = out.getvalue()
        return result

    async def scenario() -> None:
        await window.start()
        while not window.map.is_ready:
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)  # the page settles before anything is measured
        for rate in rates:
            results.append(await phase(rate))
            await asyncio.sleep(2.0)
        await window.shutdown()

    with loop:
        loop.run_until_complete(scenario())
    collector.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="50,2000", help="messages/s over the fleet, comma-separated")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0, help="per rate")
    parser.add_argument("--poll-every", type=float, default=0.02)
    parser.add_argument("--profile", action="store_true", help="profile the window's process during each rate")
    parser.add_argument("--stalls", action="store_true", help="sample where the loop is while it is blocked")
    parser.add_argument("--profile-lines", type=int, default=25)
    parser.add_argument("--profile-sort", default="tottime", choices=["tottime", "cumulative"])
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {args.devices} devices,"
          f" {args.seconds:g} s per rate, /status polled every {args.poll_every * 1000:g} ms", flush=True)
    baselines = {rate: headless(rate, args) for rate in rates}
    with tempfile.TemporaryDirectory() as tmp:
        results = run_window(args, rates, Path(tmp))
    for result in results:
        rate = result["rate"]
        base, status = baselines[rate], result["status"]
        print(f"\n{rate:,.0f} msg/s")
        print(f"  headless record /status: {summary(base['latencies'])}, {len(base['failures'])} failures")
        print(f"  window /status:          {summary(status['latencies'])}, {len(status['failures'])} failures")
        window_p, base_p = percentiles(status["latencies"]), percentiles(base["latencies"])
        if window_p and base_p:
            print(f"  p99 window / headless: {window_p['p99'] / base_p['p99']:.1f}x")
        late = percentiles(result["lateness"])
        if late:
            print(f"  10 ms timer lateness: p50 {late['p50']:.1f} ms, p99 {late['p99']:.1f} ms, "
                  f"max {late['max']:.1f} ms")
        blocks = percentiles(result["busy"])
        if blocks:
            print(f"  GUI-thread CPU between 10 ms ticks (blocks, robust to a shared machine): "
                  f"p50 {blocks['p50']:.1f} ms, p99 {blocks['p99']:.1f} ms, max {blocks['max']:.1f} ms")
        print(f"  CPU: window process {result['cpu_window'] * 100:.0f} % of a core, QtWebEngine processes "
              f"{result['cpu_webengine'] * 100:.0f} %, the live fold's process {result['cpu_fold'] * 100:.0f} %, "
              f"the chunks' process {result['cpu_chunks'] * 100:.0f} %")
        if "stalls" in result:
            print("  where the GUI thread was while the loop was blocked over 20 ms (sampled every 4 ms):")
            print(result["stalls"])
        if "profile" in result:
            print(result["profile"])


if __name__ == "__main__":
    main()
