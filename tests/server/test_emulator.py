"""The emulator's pacing, through the real sender to a real listener."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from app.server.emulator import EmulatorOptions, run_emulator
from app.server.stream_client import StreamSender
from app.store.queries import iter_messages, list_sessions


def sent_messages(db) -> list:
    conn = sqlite3.connect(db)
    try:
        [session] = list_sessions(conn)
        return list(iter_messages(conn, session.id))
    finally:
        conn.close()


def test_backfill_sends_history_at_once_then_continues_the_same_fleet_live(served) -> None:
    began = time.time()
    options = EmulatorOptions(devices=4, batch=1000, rate=8.0, backfill=60.0, duration=1.0, seed=2)

    async def send() -> None:
        async with StreamSender(served.url) as sender:
            await run_emulator(sender, options)

    asyncio.run(send())
    stored = sent_messages(served.db)
    first_batch = [s for s in stored if s.batch_id == stored[0].batch_id]
    assert len(first_batch) >= 480  # 60 s × 8 msg/s were due at once
    assert began - 61 < first_batch[0].message.ts < began - 59
    for ident in {s.message.ident for s in stored}:
        stamps = [s.message.ts for s in stored if s.message.ident == ident]
        assert stamps == sorted(stamps)  # one fleet, one history: no restart
    assert max(s.message.ts for s in stored) <= time.time() + 0.5
    assert len(stored) < 8 * 62  # then paced, not flooded


def test_rate_paces_messages_in_real_time(served) -> None:
    options = EmulatorOptions(devices=2, batch=100, rate=20.0, duration=1.0, seed=3)

    async def send() -> None:
        async with StreamSender(served.url) as sender:
            await run_emulator(sender, options)

    started = time.monotonic()
    asyncio.run(send())
    assert time.monotonic() - started >= 0.9
    assert 10 <= len(sent_messages(served.db)) <= 25
