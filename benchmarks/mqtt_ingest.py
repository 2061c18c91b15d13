"""MQTT source throughput: how fast a backlog queued at the broker is recorded.

N messages are published (QoS 1) to mosquitto while the subscriber's persistent session is
offline, so the broker holds them; then the subscriber connects and drains them. Timed: connect
to last message handled. Baseline in the same run: a bare aiomqtt subscriber that acknowledges on
receipt and records nothing. trackmon's source batches, commits each batch to SQLite and only
then acknowledges, so the broker's in-flight window (mosquitto's ``max_inflight_messages``; what
flespi allows is not documented) bounds how many messages one batch can hold: measured at several.

    .venv/bin/python benchmarks/mqtt_ingest.py [--messages 20000] [--inflight 20,100,1000]
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

import aiomqtt  # noqa: E402
import orjson  # noqa: E402

from app.core.simfleet import FleetSimulator  # noqa: E402
from app.server.mqtt_config import MqttConfig, parse_broker_url  # noqa: E402
from app.server.mqtt_source import MqttSource  # noqa: E402
from app.store.recorder import Recorder  # noqa: E402
from tests.mqtt_broker import running_mosquitto  # noqa: E402

TOPIC = "flespi/message/gw/devices/{}"


async def subscribe_once(port: int, client_id: str) -> None:
    """Create the persistent session (subscription kept while offline)."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=client_id, clean_session=False) as client:
        await client.subscribe("flespi/message/gw/devices/+", qos=1)


async def publish(port: int, payloads: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-publisher", max_inflight_messages=1000) as client:
        client.pending_calls_threshold = 1000  # 500 publishes at a time are meant
        for start in range(0, len(payloads), 500):
            chunk = payloads[start:start + 500]
            await asyncio.gather(*(client.publish(topic, payload, qos=1) for topic, payload in chunk))


async def drain_bare(port: int, client_id: str, count: int) -> float:
    started = time.perf_counter()
    async with aiomqtt.Client("127.0.0.1", port, identifier=client_id, clean_session=False) as client:
        await client.subscribe("flespi/message/gw/devices/+", qos=1)
        seen = 0
        async for _message in client.messages:
            seen += 1
            if seen == count:
                break
    return time.perf_counter() - started


async def drain_source(port: int, client_id: str, count: int, db: Path) -> tuple[float, int]:
    recorder = Recorder(db)
    recorder.start_session()
    config = MqttConfig(parse_broker_url(f"mqtt://127.0.0.1:{port}"), ("flespi/message/gw/devices/+",),
                        client_id=client_id)
    source = MqttSource(recorder, config)
    started = time.perf_counter()
    task = asyncio.create_task(source.run())
    while source.stats.messages < count:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    batches = source.stats.batches
    source.stop()
    await task
    recorder.close()
    return elapsed, batches


async def run_one(inflight: int, payloads: list[tuple[str, bytes]], tmp: Path) -> None:
    count = len(payloads)
    with running_mosquitto(tmp, max_inflight=inflight) as broker:
        await subscribe_once(broker.port, "bare")
        await subscribe_once(broker.port, "source")
        await publish(broker.port, payloads)
        bare = await drain_bare(broker.port, "bare", count)
        recorded, batches = await drain_source(broker.port, "source", count, tmp / f"mqtt-{inflight}.sqlite")
    print(f"in-flight window {inflight:>5}: trackmon {count / recorded:>8,.0f} msg/s ({batches} batches, "
          f"{count / batches:,.0f} per batch) · bare subscriber {count / bare:>8,.0f} msg/s · "
          f"ratio {bare / recorded:.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--inflight", default="20,100,1000")
    args = parser.parse_args()
    fleet = FleetSimulator(100, seed=1, start=1_700_000_000.0)
    payloads = [(TOPIC.format(m["device.id"]), orjson.dumps(m)) for m in fleet.next_messages(args.messages)]
    print(f"{platform.machine()} {platform.python_version()}, {args.messages:,} messages of "
          f"~{sum(len(p) for _t, p in payloads) // len(payloads)} bytes, mosquitto on loopback", flush=True)
    for inflight in (int(n) for n in args.inflight.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(run_one(inflight, payloads, Path(tmp)))


if __name__ == "__main__":
    main()
