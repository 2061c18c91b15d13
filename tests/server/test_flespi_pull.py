"""History pull from flespi (the request-checking stand-in) into a real recording: paging,
a new session all or nothing, the live session, and messages the stream delivered stored once."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from app.core.normalize import normalize_batch
from app.server.flespi_api import FlespiClient, FlespiError
from app.server.flespi_pull import Device, PullProgress, device_pages, pull, resolve_devices
from app.store.queries import iter_messages, list_sessions
from app.store.recorder import Recorder
from tests.flespi_standin import TOKEN, running_standin

T0 = 1_700_000_000.0


def seeded(state) -> None:
    state.add_device(11, "van 1", "3520001")
    state.add_device(12, "van 2", "3520002")
    # van 1: 25 messages, three of them sharing one instant across a page boundary (page = 4)
    stamps = [T0 + i * 10 for i in range(22)] + [T0 + 35, T0 + 35, T0 + 35]
    state.store(11, [{"timestamp": t, "position.latitude": 50 + i / 1000, "position.longitude": 4.0, "seq": i}
                     for i, t in enumerate(stamps)])
    state.store(12, [{"timestamp": T0 + i * 60, "position.latitude": 51.0, "position.longitude": 5 + i / 100}
                     for i in range(7)])


def stored(db: Path) -> list:
    conn = sqlite3.connect(db)
    try:
        return [(s.id, m.message) for s in list_sessions(conn) for m in iter_messages(conn, s.id)]
    finally:
        conn.close()


async def pulling(api: str, job):
    async with FlespiClient(TOKEN, api) as client:
        return await job(client)


def test_pages_by_time_give_every_message_once() -> None:
    with running_standin() as standin:
        seeded(standin.state)

        standin.state.messages[11].append({"timestamp": T0 + 500, "seq": 25})  # stored without an ident

        async def job(client):
            [device] = await resolve_devices(client, ["configuration.ident=3520001"])
            return device, [page async for page in device_pages(client, device, T0, T0 + 1000, page=4)]

        device, pages = asyncio.run(pulling(standin.url, job))
        calls = [c for c in standin.state.calls if "/messages" in c[1]]
    assert device == Device(11, "van 1", "3520001")
    messages = [m for page in pages for m in page]
    assert sorted(m["seq"] for m in messages) == list(range(26))  # none lost, none twice
    assert {m["ident"] for m in messages} == {"3520001"}  # the one without took the device's ident
    assert all(len(page) <= 4 for page in pages) and len(pages) >= 7
    first = orjson.loads(calls[0][1].split("data=", 1)[1])
    assert first == {"from": T0, "to": T0 + 1000, "count": 4}


def test_a_page_full_of_one_instant_is_asked_again_larger() -> None:
    with running_standin() as standin:
        standin.state.add_device(31, "burst", "3520031")
        standin.state.store(31, [{"timestamp": T0, "seq": i} for i in range(10)]
                            + [{"timestamp": T0 + 1, "seq": 10}])
        standin.state.add_device(32, "storm", "3520032")
        standin.state.store(32, [{"timestamp": T0, "seq": i} for i in range(40)])
        device = Device(31, "burst", "3520031")

        async def job(client):
            pages = [page async for page in device_pages(client, device, T0, T0 + 10, page=4)]
            with pytest.raises(FlespiError, match="more than 32 messages share the time"):  # 2 x GROW_LIMIT
                async for _ in device_pages(client, Device(32, "storm", "3520032"), T0, T0 + 10, page=2):
                    pass
            return pages

        pages = asyncio.run(pulling(standin.url, job))
        counts = [orjson.loads(c[1].split("data=", 1)[1])["count"] for c in standin.state.calls if "data=" in c[1]]
    assert sorted(m["seq"] for page in pages for m in page) == list(range(11))
    assert counts == [4, 8, 16, 2, 4, 8, 16, 32]  # doubled while one instant fills the page, up to a limit


def test_pull_into_a_new_session_with_progress(tmp_path) -> None:
    db = tmp_path / "rec.sqlite"
    recorder = Recorder(db)
    recorder.start_session()
    seen: list[PullProgress] = []
    try:
        with running_standin() as standin:
            seeded(standin.state)

            async def job(client):
                devices = await resolve_devices(client, ["11", "12"])
                return await pull(client, recorder, devices, T0, T0 + 1000, session_name="history",
                                  progress=seen.append, page=4)

            summary = asyncio.run(pulling(standin.url, job))
    finally:
        recorder.close()
    assert summary.new == 32 and summary.duplicates == 0 and summary.session_id is not None
    assert "32 messages recorded into session" in summary.text()
    rows = stored(db)
    assert Counter(m.ident for sid, m in rows if sid == summary.session_id) == {"3520001": 25, "3520002": 7}
    assert [p.fraction for p in seen] == sorted(p.fraction for p in seen) and seen[-1].fraction == 1.0
    [history] = [s for s in list_sessions(sqlite3.connect(db)) if s.id == summary.session_id]
    assert history.name == "history" and history.messages == 32


def test_messages_the_stream_delivered_are_stored_once_when_pulled(tmp_path) -> None:
    """The stream delivered part of the history live; pulling the range into the live session,
    and then into a new one, stores only what is missing."""
    db = tmp_path / "rec.sqlite"
    recorder = Recorder(db)
    recorder.start_session()
    try:
        with running_standin() as standin:
            seeded(standin.state)
            delivered = [m for m in standin.state.messages[11] if m["seq"] % 2 == 0]  # what the stream sent

            async def deliver_then_pull(client):
                body = orjson.dumps(delivered)
                await recorder.record_batch(received_at=time.time(), peer="flespi", wire_bytes=len(body), body=body,
                                            messages=normalize_batch(delivered, time.time(), body), process_ms=0)
                devices = await resolve_devices(client, ["11"])
                live = await pull(client, recorder, devices, T0, T0 + 1000, page=4)
                again = await pull(client, recorder, devices, T0, T0 + 1000, session_name="again", page=4)
                return live, again

            live, again = asyncio.run(pulling(standin.url, deliver_then_pull))
    finally:
        recorder.close()
    assert (live.new, live.duplicates) == (25 - len(delivered), len(delivered))
    assert (again.new, again.duplicates, again.session_id) == (0, 25, None)
    assert again.text().startswith("nothing new from 1 device(s): all 25 messages of the range are already")
    assert "again" not in [s.name for s in list_sessions(sqlite3.connect(db))]  # no empty session left
    rows = stored(db)
    assert sorted(m.params["seq"] for _, m in rows) == list(range(25))  # each once in the file


def test_a_cancelled_or_failed_pull_leaves_no_session(tmp_path) -> None:
    db = tmp_path / "rec.sqlite"
    recorder = Recorder(db)
    recorder.start_session()
    try:
        with running_standin() as standin:
            seeded(standin.state)

            async def cancelled(client):
                devices = await resolve_devices(client, ["11"])
                task = asyncio.current_task()
                await pull(client, recorder, devices, T0, T0 + 1000, session_name="gone", page=4,
                           progress=lambda p: task.cancel() if p.messages >= 8 else None)

            with pytest.raises(asyncio.CancelledError):
                asyncio.run(pulling(standin.url, cancelled))

            async def failing(client):
                standin.state.add_device(99, "van 9", "3520009")
                standin.state.unavailable.add(99)  # flespi fails half-way through the pull
                devices = await resolve_devices(client, ["11", "99"])
                await pull(client, recorder, devices, T0, T0 + 1000, session_name="half", page=4)

            with pytest.raises(FlespiError, match="answered 503"):
                asyncio.run(pulling(standin.url, failing))
            # After both, the same range pulls completely: nothing of the failed pulls was kept.
            after = asyncio.run(pulling(standin.url, lambda c: _pull_again(c, recorder)))
    finally:
        recorder.close()
    names = [s.name for s in list_sessions(sqlite3.connect(db))]
    assert "gone" not in names and "half" not in names and "after" in names
    conn = sqlite3.connect(db)  # not even hidden: the rows are gone
    assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (2,)
    assert conn.execute("SELECT count(*) FROM batches").fetchone()[0] == after.pages
    assert after.new == 25 and after.duplicates == 0


async def _pull_again(client, recorder):
    return await pull(client, recorder, await resolve_devices(client, ["11"]), T0, T0 + 1000, session_name="after",
                      page=4)


def test_unknown_devices_and_a_bad_range_are_refused() -> None:
    with running_standin() as standin:
        seeded(standin.state)
        with pytest.raises(FlespiError, match="no device matching '77'"):
            asyncio.run(pulling(standin.url, lambda c: resolve_devices(c, ["77"])))
        with pytest.raises(ValueError, match="before its start"):
            asyncio.run(pulling(standin.url, lambda c: pull(c, None, [], T0 + 1, T0)))  # type: ignore[arg-type]
