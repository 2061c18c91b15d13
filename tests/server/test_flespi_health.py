"""The stream's health from flespi's side: state, backlog and delivery errors read from the
stand-in's stream item and logs (its HTTP stream really delivers to a real listener), and the
poller's polite schedule."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.server.auth import HeaderAuth
from app.server.flespi_api import FlespiClient, FlespiError
from app.server.flespi_health import HealthPoller, StreamHealth, delivery_error, fetch_health, read_health
from app.server.flespi_stream import StreamSpec, inject_into_stream, probe_messages, set_up_stream
from app.server.listener import ListenerConfig
from tests.conftest import running_listener
from tests.flespi_standin import TOKEN, running_standin


def test_reading_records() -> None:
    assert delivery_error({"timestamp": 5, "error_text": "connection refused"}).text == "connection refused"
    error = delivery_error({"timestamp": 6, "rejected": 3, "response_code": 401, "reason": "bad token"})
    assert error.text == "3 messages rejected, HTTP 401, bad token"
    assert delivery_error({"timestamp": 7, "read": 3, "accepted": 3, "ack_latency": 0.02}) is None
    health = read_health({"id": 9, "name": "s", "enabled": True, "queue_size": 0},
                         [{"timestamp": 10, "accepted": 3}, {"timestamp": 5, "error_text": "x"}], now=11)
    assert health.level == "ok" and health.last_accepted == 10  # the error is older than the last delivery
    failing = read_health({"id": 9, "name": "s", "enabled": True, "queue_size": 40},
                          [{"timestamp": 10, "accepted": 3}, {"timestamp": 12, "error_text": "HTTP 503"}])
    assert failing.level == "error" and "last error: HTTP 503" in failing.summary() and "queue 40" in failing.summary()
    assert read_health({"id": 9, "name": "s", "enabled": False}, []).level == "warning"
    assert "queue ?" in read_health({"id": 9, "name": "s"}, []).summary()


def test_health_of_a_stream_delivering_and_then_refused(tmp_path) -> None:
    """A stream that delivers shows OK; the same stream pointed at a listener that refuses its
    token shows the refusal from flespi's own log, and the backlog grows."""
    with running_standin() as standin, running_listener(tmp_path / "rec.sqlite",
                                                         ListenerConfig(auth=HeaderAuth.bearer("right"))) as served:
        async def job():
            async with FlespiClient(TOKEN, standin.url) as client:
                good = StreamSpec("trackmon", served.url, {"Authorization": "Bearer right"})
                result = await set_up_stream(client, good)
                await inject_into_stream(client, result.stream_id, probe_messages()[1])
                deadline = time.monotonic() + 30  # a busy machine: give the delivery time
                while not (healthy := await fetch_health(client, result.stream_id)).last_accepted:
                    assert time.monotonic() < deadline, "the stream never delivered"
                    await asyncio.sleep(0.05)
                await set_up_stream(client, StreamSpec("trackmon", served.url, {"Authorization": "Bearer wrong"}))
                await inject_into_stream(client, result.stream_id, probe_messages()[1])
                deadline = time.monotonic() + 30
                while (failing := await fetch_health(client, result.stream_id)).level != "error":
                    assert time.monotonic() < deadline, "the refusal never showed"
                    await asyncio.sleep(0.05)
                return healthy, failing

        healthy, failing = asyncio.run(job())
    assert healthy.level == "ok" and healthy.enabled is True and healthy.queue_size == 0
    assert failing.level == "error" and failing.queue_size == 2
    assert "HTTP 401" in failing.errors[0].text and "last error" in failing.summary()


def test_poller_polls_and_backs_off_on_errors() -> None:
    with running_standin() as standin:
        stream_id = standin.state.add_stream({"name": "trackmon", "protocol_id": 1,
                                              "configuration": {"uri": "https://a.example.test/"}})
        seen: list[StreamHealth] = []
        errors: list[str] = []

        async def job():
            good = HealthPoller(TOKEN, standin.url, "trackmon", seen.append, errors.append, interval=0.05)
            good.start()
            while len(seen) < 3:
                await asyncio.sleep(0.01)
            await good.stop()
            bad = HealthPoller("wrong", standin.url, stream_id, seen.append, errors.append, interval=0.05,
                               max_backoff=0.2)
            bad.start()
            while len(errors) < 3:
                await asyncio.sleep(0.01)
            waits = bad.next_wait()
            bad.cancel()
            return waits, bad.failures

        started = time.monotonic()
        waits, failures = asyncio.run(job())
        assert time.monotonic() - started < 30
    assert {h.stream_id for h in seen} == {stream_id} and all(h.name == "trackmon" for h in seen)
    assert failures >= 3 and waits == 0.2  # doubled per failure, capped
    assert all("did not accept the token" in e for e in errors)
    assert HealthPoller(TOKEN, "x", 1, print, print, interval=30).next_wait() == 30


def test_a_missing_stream_is_said_so() -> None:
    with running_standin() as standin:
        async def job():
            async with FlespiClient(TOKEN, standin.url) as client:
                await fetch_health(client, 4242)

        with pytest.raises(FlespiError, match="no stream 4242"):
            asyncio.run(job())
