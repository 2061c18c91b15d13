"""Benchmark helper: pre-encode simulated batches, then post them like a flespi stream.

    python benchmarks/feeder.py URL MESSAGES DEVICES BATCH [TOKEN]

Prints "ready" once the batches are encoded and "done SECONDS" after the last 200, so the
process doing the measuring can tell generation time from delivery time.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from app.core.simfleet import FleetSimulator  # noqa: E402
from app.server.stream_client import StreamSender  # noqa: E402


def make_batches(messages: int, devices: int, batch: int) -> list[bytes]:
    """Simulated history ending now, encoded as flat flespi JSON batches."""
    fleet = FleetSimulator(devices, seed=7, start=time.time() - messages * 5.0 / devices, interval=5.0)
    return [orjson.dumps(fleet.next_messages(batch)) for _ in range(messages // batch)]


async def deliver(url: str, batches: list[bytes], batch: int, token: str | None) -> float:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with StreamSender(url, headers) as sender:
        started = time.perf_counter()
        for body in batches:
            await sender.send(body, batch)
        return time.perf_counter() - started


def main() -> None:
    url, messages, devices, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    token = sys.argv[5] if len(sys.argv) > 5 else None
    batches = make_batches(messages, devices, batch)
    print("ready", flush=True)
    print(f"done {asyncio.run(deliver(url, batches, batch, token)):.3f}", flush=True)


if __name__ == "__main__":
    main()
