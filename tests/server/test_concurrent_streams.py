"""Several streams posting to one listener at once: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import sqlite3

import aiohttp
import orjson
import pytest

from app.server.limits import Limits
from app.server.listener import ListenerConfig
from app.store.queries import list_sessions
from tests.conftest import running_listener

STREAMS = 4
BATCHES = 25
PER_BATCH = 40


def stream_batches(stream: int) -> list[bytes]:
    """One stream's batches: its own two devices, increasing timestamps."""
    return [orjson.dumps([{"ident": f"s{stream}-d{i % 2}", "timestamp": 1_700_000_000.0 + b * PER_BATCH + i,
                           "position.latitude": 50.0, "position.longitude": 10.0 + stream}
                          for i in range(PER_BATCH)]) for b in range(BATCHES)]


async def run_stream(url: str, batches: list[bytes]) -> list[int]:
    """Like a flespi stream: one request in flight, each batch once more (a lost reply re-sent)."""
    statuses = []
    async with aiohttp.ClientSession() as session:
        for body in batches:
            for _ in range(2):
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as reply:
                    await reply.read()
                    statuses.append(reply.status)
    return statuses


@pytest.mark.parametrize("limits", [Limits(), Limits(inline_bytes=1024, slice_bytes=700, large_bodies=2)],
                         ids=["inline", "sliced, two large-body slots"])
def test_four_concurrent_streams_lose_nothing_and_double_nothing(db_path, limits: Limits) -> None:
    async def all_streams(url: str) -> list[list[int]]:
        return await asyncio.gather(*(run_stream(url, stream_batches(s)) for s in range(STREAMS)))

    with running_listener(db_path, ListenerConfig(limits=limits)) as served:
        results = asyncio.run(all_streams(served.url))
        served.recorder.start_session()  # ends the session: its pending track chunks are written
    assert all(status == 200 for statuses in results for status in statuses)
    conn = sqlite3.connect(db_path)
    try:
        per_device = dict(conn.execute("SELECT ident, count(*) FROM messages WHERE session_id = 1 GROUP BY ident"))
        distinct = dict(conn.execute("SELECT ident, count(DISTINCT ts) FROM messages WHERE session_id = 1 "
                                     "GROUP BY ident"))
        session = list_sessions(conn)[0]
    finally:
        conn.close()
    expected = {f"s{s}-d{d}": BATCHES * PER_BATCH // 2 for s in range(STREAMS) for d in range(2)}
    assert per_device == expected and distinct == expected
    assert session.batches == STREAMS * BATCHES and session.retries == STREAMS * BATCHES
