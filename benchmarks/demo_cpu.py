"""What the window's demo feed costs: CPU of the window process (and QtWebEngine's helper
processes) while *Start demo feed* runs at its 12 msg/s, after a warm-up.

Prints % of one core for the Python process and for QtWebEngine's processes, over a measured
interval, and with ``--profile`` the functions where the GUI thread spends its time (cProfile).
The baseline in the same run is the idle window (listener up, no data) over the same interval.

    DISPLAY=:95 .venv/bin/python benchmarks/demo_cpu.py [--seconds 30] [--profile]
    (or QT_QPA_PLATFORM=offscreen; a real X server renders the map as users see it)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.ui.launch import prepare_webengine  # noqa: E402

prepare_webengine()

import psutil  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.ui.event_loop import WindowEventLoop  # noqa: E402
from app.ui.gc_guard import GuiGarbageCollector  # noqa: E402
from app.ui.main_window import MainWindow  # noqa: E402
from app.ui.rendering import choose_rendering  # noqa: E402
from app.ui.settings import AppSettings  # noqa: E402
from app.ui.tile_scheme import register_scheme  # noqa: E402


def cpu_seconds() -> tuple[float, float]:
    """(this process, its child processes: QtWebEngine) CPU seconds so far."""
    me = psutil.Process()
    own = sum(me.cpu_times()[:2])
    children = 0.0
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            children += sum(child.cpu_times()[:2])
    return own, children


def thread_seconds() -> dict[str, float]:
    """CPU seconds per thread name of this process (Linux /proc): where the time goes
    (the GUI thread, QtWebEngine's in-process GPU/compositor threads, llvmpipe, the writer)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = name.rstrip("0123456789:") or name
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


async def measure(seconds: float) -> tuple[float, float, dict[str, float]]:
    own0, kids0 = cpu_seconds()
    threads0 = thread_seconds() if sys.platform == "linux" else {}
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    own1, kids1 = cpu_seconds()
    elapsed = time.monotonic() - t0
    threads1 = thread_seconds() if sys.platform == "linux" else {}
    per_thread = {name: 100 * (t - threads0.get(name, 0.0)) / elapsed for name, t in threads1.items()}
    return 100 * (own1 - own0) / elapsed, 100 * (kids1 - kids0) / elapsed, per_thread


async def scenario(window: MainWindow, seconds: float, warmup: float, profile: bool) -> None:
    await window.start()
    while not window.map.is_ready:
        await asyncio.sleep(0.05)
    await asyncio.sleep(3)
    idle = await measure(seconds)
    if os.environ.get("FRAME_MS"):
        window.frame_timer.setInterval(int(os.environ["FRAME_MS"]))
    window.toggle_demo()
    await asyncio.sleep(warmup)  # the demo's 10-minute backfill arrives first
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    demo = await measure(seconds)
    if profiler:
        profiler.disable()
    total = window.live_fleet.total
    await window.stop_demo()
    print(f"window: {window.size().width()}x{window.size().height()}, platform {QApplication.platformName()}, "
          f"{len(window.live_fleet.devices)} devices, {total:,} messages")
    print(f"idle window (baseline): python {idle[0]:5.1f} %  qtwebengine {idle[1]:5.1f} %  of one core")
    print(f"demo feed 12 msg/s:     python {demo[0]:5.1f} %  qtwebengine {demo[1]:5.1f} %  of one core")
    busiest = sorted(demo[2].items(), key=lambda item: -item[1])[:8]
    print("  by thread: " + ", ".join(f"{name} {share:.1f} %" for name, share in busiest if share >= 0.5))
    if profiler:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
        stats.print_stats(25)
        print(out.getvalue())
    await window.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--as-before", action="store_true", help="skip ui/rendering (how the window drew before)")
    args = parser.parse_args()
    register_scheme()
    app = QApplication(sys.argv[:1])
    if not args.as_before:
        print(choose_rendering())
    loop = WindowEventLoop(app)
    asyncio.set_event_loop(loop)
    collector = GuiGarbageCollector(app)
    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(AppSettings(port=0, token="bench-token", tile_url=""), Path(tmp) / "demo.sqlite")
        window.resize(1440, 900)
        window.show()
        with loop:
            loop.run_until_complete(scenario(window, args.seconds, args.warmup, args.profile))
    collector.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
