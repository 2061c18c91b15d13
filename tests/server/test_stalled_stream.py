"""A stream stuck on one refused batch, over real loopback HTTP with the stream client's flespi
rules (one request in flight, the same batch re-sent until 200): detected, shown in ``/status``,
and — when asked — accepted as flagged so the stream moves on, its body kept whole."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from pathlib import Path

import orjson
import pytest

from app.server.auth import HeaderAuth
from app.server.limits import Limits
from app.server.listener import ListenerConfig
from app.server.stream_client import GiveUp, StreamSender
from app.store.stuck import list_stuck
from tests.conftest import http, running_listener
from tests.processes import recorder_process

TOKEN = "stall-token"


def batch(count: int, start: int = 0) -> bytes:
    return orjson.dumps([{"ident": "860000000000009", "timestamp": 1_700_000_000 + start + i} for i in range(count)])


async def deliver(url: str, bodies: list[bytes], *, attempts: int | None = None, token: str = TOKEN) -> StreamSender:
    async with StreamSender(url, {"Authorization": f"Bearer {token}"}, first_backoff=0.01, max_backoff=0.05,
                            max_attempts=attempts) as sender:
        for body in bodies:
            await sender.send(body, len(orjson.loads(body)))
    return sender


def status(url: str) -> dict:
    return http("GET", url.rsplit("/", 1)[0] + "/status", headers={"Authorization": f"Bearer {TOKEN}"}).body


def config(**changes) -> ListenerConfig:
    return ListenerConfig(**{"auth": HeaderAuth.bearer(TOKEN), "limits": Limits(max_messages=50)} | changes)


def test_the_same_refused_batch_again_and_again_is_a_stalled_stream(db_path: Path) -> None:
    with running_listener(db_path, config()) as served:
        asyncio.run(deliver(served.url, [batch(20)]))
        with pytest.raises(GiveUp):
            asyncio.run(deliver(served.url, [batch(120, 20)], attempts=4))  # over max_messages: refused 4 times
        stalled = status(served.url)["stalled"]
        assert stalled["refusals"] == 4 and stalled["status"] == 413 and stalled["error"] == "too_many_messages"
        assert "limit_messages" in stalled["advice"] and "limit_messages" in stalled["text"]
        assert stalled["acceptable"] is True and stalled["accepting"] is False
        # Re-cut (what a user does after lowering limit_messages): accepted, the stall is over.
        asyncio.run(deliver(served.url, [batch(50, 20), batch(50, 70), batch(20, 120)]))
        now = status(served.url)
        assert now["stalled"] is None and now["messages"] == 140


def test_a_stall_is_recognised_when_the_re_sends_are_cut_again(db_path: Path) -> None:
    """flespi cuts each attempt from the head of its queue: a re-send of a refused batch can be
    longer (more was queued meanwhile) — another body, the same first message."""
    messages = orjson.loads(batch(200))
    queue = deque(messages[:70])
    cuts: list[int] = []

    def top_up() -> None:  # ten more messages queued during each pause
        queue.extend(messages[len(queue):len(queue) + 10])

    def encode(cut: list) -> bytes:
        cuts.append(len(cut))
        return orjson.dumps(cut)

    async def run() -> None:
        async with StreamSender(served.url, {"Authorization": f"Bearer {TOKEN}"}, first_backoff=0.01,
                                max_backoff=0.02, max_attempts=4) as sender:
            await sender.send_from(queue, 100, encode, top_up=top_up)

    with running_listener(db_path, config()) as served:
        with pytest.raises(GiveUp):
            asyncio.run(run())
        stalled = status(served.url)["stalled"]
    assert cuts == [70, 80, 90, 100]  # four different bodies, each refused (over 50 messages)
    assert stalled["refusals"] == 4 and stalled["body_bytes"] == len(orjson.dumps(messages[:100]))


def test_different_refused_batches_are_not_a_stall_and_auth_failures_never_are(db_path: Path) -> None:
    with running_listener(db_path, config(accept_stuck=True)) as served:
        for start in range(5):  # five different refused batches: no re-send of one batch
            assert served.post(None, raw=batch(60, start * 100),
                               headers={"Authorization": f"Bearer {TOKEN}"}).status == 413
        assert status(served.url)["stalled"] is None
        with pytest.raises(GiveUp):  # a wrong token, again and again: never accepted, never "stuck"
            asyncio.run(deliver(served.url, [batch(5)], attempts=6, token="wrong"))
        now = status(served.url)
        assert now["stalled"] is None and now["stuck"] == 0 and now["rejects"] == 11


def test_accepting_stuck_batches_lets_the_stream_move_on_and_keeps_the_body(db_path: Path) -> None:
    poison = batch(120, 1000)
    with running_listener(db_path, config(accept_stuck=True)) as served:
        sender = asyncio.run(deliver(served.url, [batch(10), poison, batch(10, 10)]))  # never gives up
        assert sender.stats.retries == 2  # refused twice, accepted the third time
        now = status(served.url)
        assert now["stuck"] == 1 and now["stalled"] is None and now["messages"] == 20 and now["rejects"] == 2
    conn = sqlite3.connect(db_path)
    stuck = list_stuck(conn)
    conn.close()
    assert len(stuck) == 1 and stuck[0]["body"] == poison  # whole, byte for byte
    assert stuck[0]["status"] == 413 and stuck[0]["refusals"] == 3 and "more than 50" in stuck[0]["reason"]


def test_a_body_over_the_size_limit_is_reported_but_cannot_be_accepted(db_path: Path) -> None:
    with running_listener(db_path, config(accept_stuck=True, max_body=2000)) as served:
        with pytest.raises(GiveUp):
            asyncio.run(deliver(served.url, [batch(40)], attempts=4))
        stalled = status(served.url)["stalled"]
        assert stalled["error"] == "too_large" and stalled["acceptable"] is False
        assert "--max-body" in stalled["advice"]
        assert status(served.url)["stuck"] == 0


def test_record_logs_the_stall_and_accepts_when_told(db_path: Path) -> None:
    with recorder_process(db_path, "--token", TOKEN, "--max-messages", "50") as rec:
        with pytest.raises(GiveUp):
            asyncio.run(deliver(rec.url, [batch(80)], attempts=3))
        output = rec.stop()
    assert "STALLED" in output and "limit_messages" in output and "--accept-stuck-batches" in output
    with recorder_process(db_path, "--token", TOKEN, "--max-messages", "50", "--accept-stuck-batches") as rec:
        asyncio.run(deliver(rec.url, [batch(80), batch(5, 100)]))
        output = rec.stop()
    assert "moved on" in output and "1 stuck batch" in output
