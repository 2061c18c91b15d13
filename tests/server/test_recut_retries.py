"""Retries that are cut again, as flespi's queue may: the emulator against the real listener
through a loopback proxy that loses some answers after the batch was committed (the listener
recorded it, the stream never heard). Every message must be stored exactly once."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from app.server.emulator import EmulatorOptions, run_emulator
from app.server.stream_client import StreamSender
from app.store.queries import iter_messages
from tests.conftest import running_listener


@asynccontextmanager
async def answer_losing_proxy(target: tuple[str, int], lose_every: int) -> AsyncIterator[tuple[str, int]]:
    """Forward connections to ``target``; on every ``lose_every``-th connection the listener's
    answer is dropped and the connection closed once the answer starts (so it was committed)."""
    connections = 0

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lose: bool) -> None:
        try:
            while chunk := await reader.read(65536):
                if lose:
                    break
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        lose = connections % lose_every == 0
        server_reader, server_writer = await asyncio.open_connection(*target)
        upstream = asyncio.create_task(pipe(client_reader, server_writer, False))
        await pipe(server_reader, client_writer, lose)
        upstream.cancel()
        await asyncio.gather(upstream, return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[:2]
    finally:
        server.close()
        await server.wait_closed()


def send_through_proxy(served, options: EmulatorOptions) -> StreamSender:
    async def run() -> StreamSender:
        async with answer_losing_proxy(served.address, lose_every=4) as (host, port):
            # A fresh connection per request (as after every lost answer): "Connection: close".
            sender = StreamSender(f"http://{host}:{port}/", {"Connection": "close"}, first_backoff=0.01,
                                  max_backoff=0.02)
            async with sender:
                await run_emulator(sender, options)
            return sender
    return asyncio.run(run())


def identical_repeats(db: Path) -> int:
    """Requests recognised as a byte-for-byte repeat of a stored batch (its digest)."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT coalesce(sum(retries), 0) FROM batches").fetchone()[0]
    finally:
        conn.close()


def stored_keys(db: Path) -> list[tuple[str, float]]:
    conn = sqlite3.connect(db)
    try:
        session = conn.execute("SELECT max(id) FROM sessions").fetchone()[0]
        return [(m.message.ident, m.message.ts) for m in iter_messages(conn, session)]
    finally:
        conn.close()


def test_recut_retries_after_lost_answers_are_stored_exactly_once(db_path: Path) -> None:
    options = EmulatorOptions(devices=7, batch=50, count=1500, seed=4, start=1_700_000_000.0, buffered_rate=0.01)
    with running_listener(db_path) as served:
        sender = send_through_proxy(served, options)
        assert sender.stats.retries > 0  # answers were lost, batches re-sent
        assert served.listener.stats.duplicates > 0  # re-cut retries carried messages already recorded...
    assert identical_repeats(db_path) == 0  # never byte for byte: every retry was cut anew
    keys = stored_keys(db_path)
    assert len(keys) == 1500 and not [k for k, n in Counter(keys).items() if n > 1]  # ...stored once


def test_byte_identical_retries_are_recognised_by_their_digest(db_path: Path) -> None:
    options = EmulatorOptions(devices=7, batch=50, count=600, seed=4, start=1_700_000_000.0, recut=False)
    with running_listener(db_path) as served:
        sender = send_through_proxy(served, options)
        assert sender.stats.retries > 0
    assert identical_repeats(db_path) > 0
    keys = stored_keys(db_path)
    assert len(keys) == 600 and len(set(keys)) == 600


def test_simulate_with_buffered_history_records_every_message_and_late_ones_show_their_delay(tmp_path) -> None:
    from tests.processes import recorder_process, trackmon
    db = tmp_path / "late.sqlite"
    with recorder_process(db) as rec:
        sent = trackmon("simulate", "--to", rec.url, "--rate", "0", "--count", "800", "--devices", "5",
                        "--interval", "10", "--buffered-rate", "0.02", "--seed", "3")
        assert sent.returncode == 0, sent.stderr
    conn = sqlite3.connect(db)
    try:
        session = conn.execute("SELECT max(id) FROM sessions").fetchone()[0]
        stored = [m.message for m in iter_messages(conn, session)]
    finally:
        conn.close()
    assert len(stored) == 800 and len({(m.ident, m.ts) for m in stored}) == 800
    assert sum(1 for m in stored if m.server_ts - m.ts > 30) > 10  # uploaded after a coverage gap
    assert {type(m.params["device.id"]) for m in stored} == {int} and all(":" in m.params["peer"] for m in stored)
