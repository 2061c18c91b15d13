"""Ingest throughput: a headless `trackmon record` process fed like a flespi stream.

Posts ≥200,000 messages (1,000 per batch, 100 devices) over loopback, one request in flight per
stream, and prints messages/s and acknowledgement latency; then does the same against a bare
aiohttp receiver (read body, answer 200) in the same run and prints the ratio. Also printed: when
the recorder had stopped with every message derived into track chunks (its deriver process
finished; checked in the file), and the CPU each process spent per batch while being fed.

    .venv/bin/python benchmarks/ingest.py [--messages 200000] [--streams 1] [--sync normal|full]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.simfleet import FleetSimulator  # noqa: E402
from benchmarks.loopback import free_port, stop_process, wait_until_up  # noqa: E402


def make_batches(messages: int, batch: int, devices: int) -> list[bytes]:
    fleet = FleetSimulator(devices, seed=7, start=time.time() - messages * 5 / devices)
    return [orjson.dumps(fleet.next_messages(batch)) for _ in range(messages // batch)]


async def feed(url: str, batches: list[bytes], streams: int) -> tuple[float, list[float]]:
    """Send every batch, ``streams`` senders each with one request in flight; (seconds, ack ms)."""
    latencies: list[float] = []
    queue = list(reversed(batches))

    async def stream(session: aiohttp.ClientSession) -> None:
        while queue:
            body = queue.pop()
            started = time.perf_counter()
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as reply:
                await reply.read()
                if reply.status != 200:
                    raise RuntimeError(f"HTTP {reply.status}")
            latencies.append((time.perf_counter() - started) * 1000)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=streams)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(stream(session) for _ in range(streams)))
        return time.perf_counter() - started, latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Child processes of every thread of ``pid`` (the recorder's deriver)."""
    return [int(child) for task in os.listdir(f"/proc/{pid}/task")
            for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]


@dataclass
class Run:
    seconds: float  # first request to last acknowledgement
    latencies: list[float]
    settled: float  # first request until the process has stopped (the deriver finished)
    cpu: dict[str, float]  # CPU seconds while the batches were fed, per process


def run_against(command: list[str], url: str, batches: list[bytes], streams: int) -> Run:
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_up(url)
        time.sleep(0.5)  # the deriver process starts with the recorder
        pids = {"listener": process.pid} | {f"deriver {i + 1}": pid for i, pid in enumerate(children(process.pid))}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.perf_counter()
        seconds, latencies = asyncio.run(feed(url, batches, streams))
        cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    finally:
        stop_process(process, 60)
    return Run(seconds, latencies, time.perf_counter() - started, cpu)


def describe(name: str, run: Run, messages: int) -> float:
    rate = messages / run.seconds
    q = statistics.quantiles(run.latencies, n=100, method="inclusive")
    batches = len(run.latencies)
    cpu = ", ".join(f"{who} {seconds / batches * 1000:.2f}" for who, seconds in run.cpu.items())
    print(f"{name:<22} {rate:>10,.0f} msg/s   ack p50 {q[49]:6.2f} ms   p99 {q[98]:6.2f} ms   "
          f"({messages:,} messages in {run.seconds:.2f} s)\n{'':<22} stopped, everything derived, after "
          f"{run.settled:.2f} s ({messages / run.settled:,.0f} msg/s); CPU ms per batch: {cpu}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--sync", choices=("normal", "full"), default="normal")
    args = parser.parse_args()

    batches = make_batches(args.messages, args.batch, args.devices)
    total = len(batches) * args.batch
    size = sum(map(len, batches)) / total
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{total:,} messages, {args.batch}/batch, {args.devices} devices, {size:.0f} B/message, "
          f"{args.streams} stream(s), sync={args.sync}")

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        recorder = [sys.executable, "-m", "app", "record", "--port", str(port), "--db",
                    str(Path(tmp) / "bench.sqlite"), "--sync", args.sync]
        rec_rate = describe("trackmon record", run_against(recorder, url, batches, args.streams), total)
        conn = sqlite3.connect(Path(tmp) / "bench.sqlite")
        chunked = conn.execute("SELECT coalesce(sum(n), 0) FROM tracks").fetchone()[0]
        conn.close()
        assert chunked == total, f"{chunked} of {total} messages in track chunks"
        db_mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        bare = [sys.executable, str(ROOT / "benchmarks" / "bare_receiver.py"), str(port)]
        bare_rate = describe("bare aiohttp receiver", run_against(bare, url, batches, args.streams), total)
    print(f"recorded/bare ratio: {rec_rate / bare_rate:.2f}   recording file: {db_mb:.0f} MB")


if __name__ == "__main__":
    main()
