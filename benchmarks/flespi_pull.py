"""History pull speed: one device's stored messages pulled from the flespi stand-in
(tests/flespi_standin.py, a real aiohttp app on loopback) into a fresh recording, page by page.

Baseline in the same run: the same pages handed straight to the recorder (no HTTP, no paging,
no JSON decoding of answers) — what recording them costs anyway. The ratio is what the REST
round trips, the time paging and the boundary check add.

    .venv/bin/python benchmarks/flespi_pull.py [--messages 200000] [--page 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.server.flespi_api import FlespiClient  # noqa: E402
from app.server.flespi_pull import Device, pull  # noqa: E402
from app.store.recorder import Recorder  # noqa: E402
from tests.flespi_standin import TOKEN, running_standin  # noqa: E402

T0 = 1_700_000_000.0


def messages(count: int) -> list[dict]:
    return [{"ident": "3520001", "timestamp": T0 + i, "server.timestamp": T0 + i + 0.4,
             "position.latitude": 50.45 + (i % 1000) / 1e5, "position.longitude": 30.52 + (i % 777) / 1e5,
             "position.speed": i % 90, "position.satellites": 9, "battery.voltage": 4.1, "seq": i}
            for i in range(count)]


async def baseline(db: Path, stored: list[dict], page: int) -> float:
    recorder = Recorder(db)
    try:
        async def pages():
            for start in range(0, len(stored), page):
                yield [dict(m) for m in stored[start:start + page]]

        started = time.perf_counter()
        tally = await recorder.record_pulled("baseline", pages())
        assert tally.new == len(stored)
        return time.perf_counter() - started
    finally:
        recorder.close()


async def through_rest(db: Path, api: str, count: int, page: int, live: bool) -> float:
    recorder = Recorder(db)
    if live:
        recorder.start_session()
    try:
        async with FlespiClient(TOKEN, api, timeout=120) as client:
            started = time.perf_counter()
            summary = await pull(client, recorder, [Device(11, "van", "3520001")], T0, T0 + count,
                                 session_name=None if live else "pulled", page=page)
            elapsed = time.perf_counter() - started
        assert summary.new == count, summary.text()
        return elapsed
    finally:
        recorder.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--page", type=int, default=1000)
    args = parser.parse_args()
    stored = messages(args.messages)
    print(f"{platform.machine()} {platform.processor() or ''} Python {platform.python_version()}; "
          f"{args.messages:,} messages, pages of {args.page:,}")
    with tempfile.TemporaryDirectory() as tmp, running_standin() as standin:
        standin.state.add_device(11, "van", "3520001")
        standin.call(standin.state.store, 11, stored)
        base = asyncio.run(baseline(Path(tmp) / "base.sqlite", stored, args.page))
        new = asyncio.run(through_rest(Path(tmp) / "new.sqlite", standin.url, args.messages, args.page, False))
        live = asyncio.run(through_rest(Path(tmp) / "live.sqlite", standin.url, args.messages, args.page, True))
    rate = args.messages
    print(f"{'recorder only (baseline)':32} {rate / base:>10,.0f} msg/s  1.00")
    print(f"{'pull into a new session':32} {rate / new:>10,.0f} msg/s  {base / new:.2f}")
    print(f"{'pull into the live session':32} {rate / live:>10,.0f} msg/s  {base / live:.2f}")


if __name__ == "__main__":
    main()
