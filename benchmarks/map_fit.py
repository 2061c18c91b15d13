"""How long *Fit all* takes to reach the map while 1,000 devices stream in at 2,000 msg/s.

A `trackmon simulate` process (real HTTP, its own process) feeds the window's listener; every two
seconds *Fit all* is triggered and the time until the page has run it is measured (a script sent
right after it answers once the page got that far: the page runs scripts in order). Two windows
in the same run: the map feed as shipped (at most one update call outstanding in the page) and,
as the baseline, unpaced (every frame's slices sent at once, as before issue 12).

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/map_fit.py [--rate 2000] [--seconds 40]
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.ui.launch import prepare_webengine  # noqa: E402

prepare_webengine()

from PySide6.QtWidgets import QApplication  # noqa: E402

from app.ui.event_loop import WindowEventLoop  # noqa: E402
from app.ui.gc_guard import GuiGarbageCollector  # noqa: E402
from app.ui.main_window import MainWindow  # noqa: E402
from app.ui.settings import AppSettings  # noqa: E402
from app.ui.tile_scheme import register_scheme  # noqa: E402

TOKEN = "bench-token"


async def fit_latency(window: MainWindow) -> float:
    """Seconds from triggering Fit all until the page has run it."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future = loop.create_future()
    started = time.perf_counter()
    window.fit_action.trigger()
    window.map.page().runJavaScript("1", 0, lambda _: done.done() or done.set_result(time.perf_counter()))
    return await asyncio.wait_for(done, 300) - started


async def measure(window: MainWindow, rate: float, devices: int, seconds: float) -> dict:
    await window.start()
    while not window.map.is_ready:
        await asyncio.sleep(0.05)
    sender = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "simulate", "--to", window.urls()[0], "--token", TOKEN, "--devices",
        str(devices), "--rate", str(rate), "--batch", "500", "--duration", str(seconds), cwd=str(ROOT),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await asyncio.sleep(8)  # every device known, the stream at full rate
    latencies, queued = [], []
    deadline = time.monotonic() + seconds - 10
    while time.monotonic() < deadline:
        queued.append(window.map_feed.in_flight)
        latencies.append(await fit_latency(window))
        await asyncio.sleep(2)
    await sender.wait()
    shown = window.live_fleet.total
    calls = window.map_feed.sent_calls
    await window.shutdown()
    return {"latencies": latencies, "queued": queued, "messages": shown, "calls": calls}


def run_one(limit: int | None, args: argparse.Namespace) -> dict:
    """One window, one mode (a process of its own: QtWebEngine does not like a second window
    being built after the first was torn down in the same process)."""
    register_scheme()
    app = QApplication(sys.argv[:1])
    loop = WindowEventLoop(app)
    asyncio.set_event_loop(loop)
    collector = GuiGarbageCollector(app)
    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(AppSettings(port=0, token=TOKEN, tile_url=""), Path(tmp) / "fit.sqlite")
        window.map_feed.limit = limit
        window.resize(1440, 900)
        window.show()
        result = loop.run_until_complete(measure(window, args.rate, args.devices, args.seconds))
    collector.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--mode", choices=("paced", "unpaced"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode is not None:
        result = run_one(1 if args.mode == "paced" else None, args)
        print("RESULT " + json.dumps(result), flush=True)
        os._exit(0)  # skip QtWebEngine's teardown at exit
    results = {}
    for name, mode in (("paced (shipped)", "paced"), ("unpaced (baseline)", "unpaced")):
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--rate", str(args.rate), "--devices",
                              str(args.devices), "--seconds", str(args.seconds)], capture_output=True, text=True,
                             check=False).stdout
        line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{name}: no result")
        results[name] = json.loads(line[len("RESULT "):])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"QT_QPA_PLATFORM={os.environ.get('QT_QPA_PLATFORM')}")
    print(f"{args.devices} devices at {args.rate:.0f} msg/s for {args.seconds:.0f} s; Fit all every 2 s")
    medians = {}
    for name, r in results.items():
        lat = sorted(r["latencies"])
        medians[name] = statistics.median(lat)
        print(f"{name:>20}: Fit all reached the page after median {medians[name] * 1000:,.0f} ms, "
              f"max {lat[-1] * 1000:,.0f} ms ({len(lat)} tries); update calls outstanding when asked: "
              f"max {max(r['queued'])}; {r['messages']:,} messages taken, {r['calls']:,} update calls")
    base, shipped = medians["unpaced (baseline)"], medians["paced (shipped)"]
    print(f"ratio baseline/shipped (median): {base / shipped:,.1f}x")


if __name__ == "__main__":
    main()
