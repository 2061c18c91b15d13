"""`trackmon replay`: send a recorded session again, exactly as it arrived, like a flespi stream.

Messages go out as their raw JSON, in arrival order, re-batched to ``batch`` and paced by their
original receive times divided by ``speed`` (or as fast as acknowledged). The sender keeps
flespi's rules (one request in flight, re-send until 200), so a recording can feed another
server or another trackmon.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import orjson

from app.server.stream_client import SendStats, StreamSender
from app.store.codec import decompress_body


def recorded_messages(conn: sqlite3.Connection, session_id: int) -> Iterator[tuple[float, Any]]:
    """(receive time, raw message) for every message of a session, in arrival order."""
    cursor = conn.execute("SELECT received_at, body FROM batches WHERE session_id = ? ORDER BY id", (session_id,))
    for received_at, body in cursor:
        for raw in orjson.loads(decompress_body(body)):
            yield received_at, raw


async def replay_session(conn: sqlite3.Connection, session_id: int, sender: StreamSender, *, batch: int = 1000,
                         speed: float | None = None, stop: asyncio.Event | None = None) -> SendStats:
    """Send the session; ``speed`` None means as fast as the receiver acknowledges."""
    first: float | None = None
    started = time.monotonic()
    pending: list[Any] = []
    pending_at = 0.0

    async def flush() -> None:
        nonlocal pending
        if pending:
            await sender.send(orjson.dumps(pending), len(pending))
            pending = []

    for received_at, raw in recorded_messages(conn, session_id):
        if stop is not None and stop.is_set():
            break
        if first is None:
            first = received_at
        if speed is not None and received_at != pending_at:
            await flush()  # pace at original batch boundaries
            due = started + (received_at - first) / speed
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        pending_at = received_at
        pending.append(raw)
        if len(pending) >= batch:
            await flush()
    await flush()
    return sender.stats
