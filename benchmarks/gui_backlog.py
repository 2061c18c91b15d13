"""The desktop window absorbing a backlog: 200,000 messages for 1,000 devices, delivered by a
separate process as fast as the listener acknowledges.

Prints the time until every message is shown (table, log, map call sent) and messages/s; how
fast `GET /status` answered meanwhile, polled every 20 ms by another process (black-box: what a
user's monitoring sees); and, in-process, the lateness of a 10 ms timer on the loop and the GUI
thread's CPU time between two of its ticks (the size of each block of work). Baseline in the same
run: a headless `trackmon record` fed the same batches by the same feeder, with the same poller.
`--profile` adds the functions the window's process spent its time in while absorbing.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_backlog.py [--messages 200000] [--profile]
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import psutil  # noqa: E402

from benchmarks.gui_everyday import cpu_seconds  # noqa: E402
from benchmarks.loopback import free_port, start_recorder, stop_process  # noqa: E402
from benchmarks.status_poller import (  # noqa: E402
    finish_poller,
    percentiles,
    start_poller,
    stop_poller,
    summary,
)
from benchmarks.window_harness import open_window  # noqa: E402

FEEDER = str(ROOT / "benchmarks" / "feeder.py")
TOKEN = "bench-token"


def feeder_command(url: str, args: argparse.Namespace) -> list[str]:
    return [sys.executable, FEEDER, url, str(args.messages), str(args.devices), str(args.batch), TOKEN]


def status_url(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/status"


def measure_headless(args: argparse.Namespace) -> dict:
    """msg/s and `/status` latency of headless `trackmon record` under the same feed."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        recorder = start_recorder(port, Path(tmp) / "h.sqlite", TOKEN)
        try:
            feeder = subprocess.Popen(feeder_command(f"http://127.0.0.1:{port}/", args), stdout=subprocess.PIPE,
                                      text=True)
            assert feeder.stdout is not None and feeder.stdout.readline().strip() == "ready"
            poller = start_poller(f"http://127.0.0.1:{port}/status", 0, args.poll_every)
            out, _ = feeder.communicate(timeout=600)
            stop_poller(poller)
            return {"seconds": float(out.split()[-1]), "status": finish_poller(poller)}
        finally:
            stop_process(recorder, 20)


def measure_gui(args: argparse.Namespace, workdir: Path) -> dict:
    bench = open_window(workdir / "gui.sqlite", TOKEN)
    from PySide6.QtCore import QTimer

    loop, window = bench.loop, bench.window
    result: dict = {}
    me = psutil.Process()

    async def scenario() -> None:
        await window.start()
        while not window.map.is_ready:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # the page settles before anything is measured
        lateness: list[float] = []
        busy: list[float] = []  # GUI-thread CPU ms between two ticks: the loop's blocks of work
        period = 0.010
        last = [time.perf_counter(), time.thread_time()]

        def beat() -> None:
            now, cpu = time.perf_counter(), time.thread_time()
            lateness.append(max(0.0, now - last[0] - period) * 1000)
            busy.append((cpu - last[1]) * 1000)
            last[0], last[1] = now, cpu

        url = window.urls()[0]
        timer = QTimer(interval=int(period * 1000), timeout=beat)
        feeder = await asyncio.create_subprocess_exec(*feeder_command(url, args), stdout=asyncio.subprocess.PIPE)
        assert feeder.stdout is not None and (await feeder.stdout.readline()).strip() == b"ready"
        poller = start_poller(status_url(url), 0, args.poll_every)
        profiler = cProfile.Profile() if args.profile else None
        started = time.perf_counter()
        cpu_started = cpu_seconds(me)
        machine_started = psutil.cpu_times()
        last[0], last[1] = started, time.thread_time()
        timer.start()
        if profiler:
            profiler.enable()
        fleet = window.fleet
        while not (fleet.total >= args.messages and window.log_model.rowCount() > 0
                   and window.device_model.rowCount() == args.devices and not fleet._changed
                   and window.live_feed.caught_up()):
            await asyncio.sleep(0.005)
        absorbed = time.perf_counter() - started
        if profiler:
            profiler.disable()
        cpu_ended = cpu_seconds(me)
        machine = psutil.cpu_times()
        spent = {name: getattr(machine, name) - getattr(machine_started, name) for name in ("idle", "steal")}
        result["machine_idle"] = spent["idle"] / absorbed
        result["machine_steal"] = spent["steal"] / absorbed
        result["cpu"] = (cpu_ended[0] - cpu_started[0]) / absorbed
        result["cpu_webengine"] = (cpu_ended[1] - cpu_started[1]) / absorbed
        result["cpu_fold"] = (cpu_ended[2] - cpu_started[2]) / absorbed
        result["cpu_chunks"] = (cpu_ended[3] - cpu_started[3]) / absorbed
        timer.stop()
        stop_poller(poller)
        result["status"] = await loop.run_in_executor(None, finish_poller, poller)
        done = (await feeder.stdout.readline()).decode().split()
        await feeder.wait()
        await window.shutdown()
        result.update(seconds=absorbed, feeder_seconds=float(done[1]), lateness=lateness, busy=busy)
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(args.profile_sort).print_stats(args.profile_lines)
            result["profile"] = out.getvalue()

    with loop:
        loop.run_until_complete(scenario())
    bench.collector.stop()
    result["gc"] = bench.collector.stats
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--poll-every", type=float, default=0.02, help="seconds between two GET /status")
    parser.add_argument("--no-baseline", action="store_true", help="skip the headless run (profiling)")
    parser.add_argument("--profile", action="store_true", help="cProfile the window's process while it absorbs")
    parser.add_argument("--profile-deriver", metavar="STATS",
                        help="cProfile the live fold's process into STATS and print it")
    parser.add_argument("--profile-lines", type=int, default=30)
    parser.add_argument("--profile-sort", default="tottime", choices=["tottime", "cumulative"])
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {args.messages:,} "
          f"messages, {args.devices} devices, {args.batch}/batch; /status polled every "
          f"{args.poll_every * 1000:g} ms; load average before: {os.getloadavg()[0]:.1f}", flush=True)
    headless = None if args.no_baseline else measure_headless(args)
    if args.profile_deriver:  # the window's fold child inherits it and profiles (not the headless run's)
        os.environ["TRACKMON_PROFILE_DERIVER"] = str(Path(args.profile_deriver).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        gui = measure_gui(args, Path(tmp))
    if args.profile_deriver:
        del os.environ["TRACKMON_PROFILE_DERIVER"]
        pstats.Stats(args.profile_deriver).sort_stats(args.profile_sort).print_stats(args.profile_lines)
    rate = args.messages / gui["seconds"]
    print(f"GUI absorbed everything in {gui['seconds']:.2f} s: {rate:,.0f} msg/s "
          f"(feeder saw its last 200 after {gui['feeder_seconds']:.2f} s); window process CPU "
          f"{gui['cpu'] * 100:.0f} % of a core, its QtWebEngine processes {gui['cpu_webengine'] * 100:.0f} %; "
          f"the machine's cores idle {gui['machine_idle'] * 100:.0f} %, stolen {gui['machine_steal'] * 100:.0f} % "
          f"(of one core)")
    # CPU time per message varies far less than messages/s on a shared machine: what to compare
    # when a change moves work (the GUI thread is what the GIL-bound window waits for).
    per_message = 1e6 * gui["seconds"] / args.messages
    print(f"CPU per message: window process {gui['cpu'] * per_message:.1f} µs (GUI thread "
          f"{sum(gui['busy']) * 1000 / args.messages:.1f} µs), "
          f"QtWebEngine {gui['cpu_webengine'] * per_message:.1f} µs, the live fold's process "
          f"{gui['cpu_fold'] * per_message:.1f} µs ({gui['cpu_fold'] * 100:.0f} % of a core), the chunks' process "
          f"(in the background) {gui['cpu_chunks'] * per_message:.1f} µs ({gui['cpu_chunks'] * 100:.0f} %)")
    status = gui["status"]
    base = headless["status"] if headless else {"latencies": [], "failures": []}
    if headless:
        print(f"headless record, same feed: {args.messages / headless['seconds']:,.0f} msg/s; GUI/headless ratio "
              f"{headless['seconds'] / gui['seconds']:.2f}")
    print(f"GET /status from another process, window:   {summary(status['latencies'])}, "
          f"{len(status['failures'])} failures")
    if headless:
        print(f"GET /status from another process, headless: {summary(base['latencies'])}, "
              f"{len(base['failures'])} failures")
    window_p, base_p = percentiles(status["latencies"]), percentiles(base["latencies"])
    if window_p and base_p:
        print(f"  /status p99 window / headless: {window_p['p99'] / base_p['p99']:.1f}x")
    late = percentiles(gui["lateness"])
    print(f"event-loop stall (10 ms timer lateness, {len(gui['lateness'])} beats): p50 {late['p50']:.1f} ms, "
          f"p99 {late['p99']:.1f} ms, max {late['max']:.1f} ms")
    blocks = percentiles(gui["busy"])
    print(f"GUI-thread CPU between 10 ms ticks (blocks of work): p50 {blocks['p50']:.1f} ms, "
          f"p99 {blocks['p99']:.1f} ms, max {blocks['max']:.1f} ms")
    gc_stats = gui["gc"]
    print(f"garbage collection on the GUI thread: passes {gc_stats.passes}, worst ms "
          f"{[round(ms, 1) for ms in gc_stats.worst_ms]}, total {gc_stats.total_ms:.0f} ms")
    if "profile" in gui:
        print(gui["profile"])


if __name__ == "__main__":
    main()
