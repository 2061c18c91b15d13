"""The desktop window absorbing a backlog: 200,000 messages for 1,000 devices, delivered by a
separate process as fast as the listener acknowledges.

Prints the time until every message is shown (table, log, map call sent), messages/s, and the
event-loop stall p50/p99/max, measured as the lateness of a 10 ms timer. Baseline in the same
run: a headless `trackmon record` fed the same batches by the same feeder.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_backlog.py [--messages 200000]
"""

from __future__ import annotations

import argparse
import asyncio
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

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.ui.event_loop import WindowEventLoop  # noqa: E402
from app.ui.gc_guard import GuiGarbageCollector  # noqa: E402
from app.ui.main_window import MainWindow  # noqa: E402
from app.ui.settings import AppSettings  # noqa: E402
from app.ui.tile_scheme import register_scheme  # noqa: E402
from benchmarks.loopback import free_port, start_recorder, stop_process  # noqa: E402

FEEDER = str(ROOT / "benchmarks" / "feeder.py")
TOKEN = "bench-token"


async def start_feeder(url: str, messages: int, devices: int, batch: int) -> asyncio.subprocess.Process:
    feeder = await asyncio.create_subprocess_exec(sys.executable, FEEDER, url, str(messages), str(devices),
                                                  str(batch), TOKEN, stdout=asyncio.subprocess.PIPE)
    assert (await feeder.stdout.readline()).strip() == b"ready"
    return feeder


async def measure_gui(window: MainWindow, messages: int, devices: int, batch: int) -> dict:
    await window.start()
    while not window.map.is_ready:
        await asyncio.sleep(0.05)
    lateness: list[float] = []
    period = 0.010
    last = [time.perf_counter()]

    def beat() -> None:
        now = time.perf_counter()
        lateness.append(max(0.0, now - last[0] - period) * 1000)
        last[0] = now

    timer = QTimer(interval=int(period * 1000), timeout=beat)
    feeder = await start_feeder(window.urls()[0], messages, devices, batch)
    started = time.perf_counter()
    last[0] = started
    timer.start()
    while not (window.fleet.total >= messages and window.log_model.rowCount() > 0
               and window.device_model.rowCount() == devices and not window.fleet.take_changes.__self__._changed):
        await asyncio.sleep(0.005)
    absorbed = time.perf_counter() - started
    timer.stop()
    done = (await feeder.stdout.readline()).decode().split()
    await feeder.wait()
    await window.shutdown()
    return {"seconds": absorbed, "feeder_seconds": float(done[1]), "lateness": lateness}


def measure_headless(messages: int, devices: int, batch: int) -> float:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        recorder = start_recorder(port, Path(tmp) / "h.sqlite", TOKEN)
        try:
            feeder = subprocess.run([sys.executable, FEEDER, f"http://127.0.0.1:{port}/", str(messages),
                                     str(devices), str(batch), TOKEN], capture_output=True, text=True, check=True)
            return float(feeder.stdout.split()[-1])
        finally:
            stop_process(recorder, 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    register_scheme()
    app = QApplication(sys.argv[:1])
    loop = WindowEventLoop(app)
    asyncio.set_event_loop(loop)
    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(AppSettings(port=0, token=TOKEN, tile_url=""), Path(tmp) / "gui.sqlite")
        window.resize(1440, 900)
        window.show()
        collector = GuiGarbageCollector(app)  # as `trackmon` does
        with loop:
            gui = loop.run_until_complete(measure_gui(window, args.messages, args.devices, args.batch))
    collector.stop()
    headless = measure_headless(args.messages, args.devices, args.batch)
    stalls = gui["lateness"]
    q = statistics.quantiles(stalls, n=100)
    rate = args.messages / gui["seconds"]
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {args.messages:,} "
          f"messages, {args.devices} devices, {args.batch}/batch")
    print(f"GUI absorbed everything in {gui['seconds']:.2f} s: {rate:,.0f} msg/s "
          f"(feeder saw its last 200 after {gui['feeder_seconds']:.2f} s)")
    print(f"event-loop stall (10 ms timer lateness, {len(stalls)} beats): p50 {q[49]:.1f} ms, "
          f"p99 {q[98]:.1f} ms, max {max(stalls):.1f} ms")
    gc_stats = collector.stats
    print(f"garbage collection on the GUI thread: passes {gc_stats.passes}, worst ms "
          f"{[round(ms, 1) for ms in gc_stats.worst_ms]}, total {gc_stats.total_ms:.0f} ms")
    print(f"headless record, same feed: {args.messages / headless:,.0f} msg/s; GUI/headless ratio "
          f"{headless / gui['seconds']:.2f}")


if __name__ == "__main__":
    main()
