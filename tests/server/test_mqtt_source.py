"""The MQTT source against a real broker (amqtt, its own process on 127.0.0.1): recorded exactly
once, acknowledged only after the commit, bad payloads kept as rejects, reconnects, TLS, auth."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import orjson
import pytest

from app.server.mqtt_config import MqttConfig, parse_broker_url
from app.server.mqtt_source import MqttSource
from app.server.tls import make_self_signed
from app.store.queries import iter_messages, list_rejects
from app.store.recorder import Recorder
from tests.mqtt_broker import running_broker, running_mosquitto

TOKEN = "flespi-token-0123456789"
TOPIC = "flespi/message/gw/devices/+"


def message(i: int, device: int = 1) -> bytes:
    """A payload as flespi publishes it (one flat object), with its own spacing kept as sent."""
    return orjson.dumps({"ident": f"35262500000{device:04d}", "timestamp": 1_700_000_000 + i,
                         "position.latitude": 49.0 + i / 1e4, "position.longitude": 28.6, "#12": i})


def config_for(url: str, **changes) -> MqttConfig:
    fields = {"token": TOKEN, "client_id": "trackmon-test", "first_backoff": 0.1, "max_backoff": 0.5,
              "connect_timeout": 5.0} | changes
    return MqttConfig(parse_broker_url(url), (TOPIC,), **fields)


async def wait_until(condition: Callable[[], bool], timeout: float = 20.0,
                     message: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not reached {message()}"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def source_running(recorder: Recorder, config: MqttConfig) -> AsyncIterator[MqttSource]:
    source = MqttSource(recorder, config)
    task = asyncio.create_task(source.run())
    try:
        yield source
    finally:
        source.stop()
        await asyncio.wait_for(task, 15)


async def publish(port: int, payloads: list[tuple[str, bytes]], *, tls=None) -> None:
    async with aiomqtt.Client("127.0.0.1", port, username=TOKEN, identifier="publisher",
                              tls_context=tls) as client:
        for topic, payload in payloads:
            await client.publish(topic, payload, qos=1)


def stored(db: Path) -> list:
    conn = sqlite3.connect(db)
    try:
        session = conn.execute("SELECT max(id) FROM sessions").fetchone()[0]
        return list(iter_messages(conn, session))
    finally:
        conn.close()


def bodies(db: Path) -> list[bytes]:
    from app.store.codec import decompress_body
    conn = sqlite3.connect(db)
    try:
        return [decompress_body(row[0]) for row in conn.execute("SELECT body FROM batches ORDER BY id")]
    finally:
        conn.close()


@pytest.fixture
def recorder(tmp_path: Path):
    rec = Recorder(tmp_path / "mqtt.db")
    rec.start_session()
    yield rec
    rec.close()


def test_publishes_are_recorded_once_in_batches_and_bad_payloads_are_rejects(recorder: Recorder) -> None:
    good = [(f"flespi/message/gw/devices/{i % 3}", message(i, i % 3)) for i in range(400)]
    bad = [("flespi/message/gw/devices/7", b"[1, 2]"), ("flespi/message/gw/devices/7", b"{not json"),
           ("flespi/message/gw/devices/7", b"\"text\"")]
    seen: list[int] = []

    async def run() -> MqttSource:
        with running_broker(token=TOKEN) as broker:
            async with source_running(recorder, config_for(broker.url)) as source:
                source.on_batch(lambda event, messages: seen.extend([len(messages)]))
                await wait_until(lambda: source.state.phase == "connected")
                await publish(broker.port, good[:200] + bad + good[200:])
                await wait_until(lambda: source.stats.messages + source.stats.rejects >= 403)
                return source

    source = asyncio.run(run())
    rows = stored(recorder.path)
    assert sorted(m.message.ts for m in rows) == [1_700_000_000 + i for i in range(400)]  # each once
    assert sum(seen) == 400 and source.stats.batches == len(seen) < 400  # batched, views told
    assert all(m.message.params["#12"] == m.message.ts - 1_700_000_000 for m in rows)
    # The stored body is the payloads' bytes as received, joined into a JSON array.
    stored_bodies = bodies(recorder.path)
    assert all(body.startswith(b"[") and body.endswith(b"]") for body in stored_bodies)
    assert b",".join(body[1:-1] for body in stored_bodies) == b",".join(p for _t, p in good)
    conn = sqlite3.connect(recorder.path)
    rejects = list_rejects(conn)
    conn.close()
    # The two "not an object" payloads are one burst row counting two (as the listener keeps them).
    assert sorted((r["status"], r["count"]) for r in rejects) == [(400, 1), (422, 2)]
    assert all(r["method"] == "MQTT" and r["path"] == "flespi/message/gw/devices/7" for r in rejects)
    assert source.status()["rejects"] == 3 and source.status()["state"] == "stopped"


def test_survives_a_broker_restart_and_records_each_message_once(recorder: Recorder) -> None:
    phases: list[str] = []

    async def run() -> None:
        with running_broker(token=TOKEN) as broker:
            async with source_running(recorder, config_for(broker.url)) as source:
                source.on_state(lambda state: phases.append(state.phase))
                await wait_until(lambda: source.state.phase == "connected")
                await publish(broker.port, [(TOPIC.replace("+", "1"), message(i)) for i in range(50)])
                await wait_until(lambda: source.stats.messages == 50)
                broker.restart()  # a fresh broker process: the connection drops, the session is gone
                await wait_until(lambda: "reconnecting" in phases and source.state.phase == "connected")
                await publish(broker.port, [(TOPIC.replace("+", "1"), message(i)) for i in range(50, 120)])
                await wait_until(lambda: source.stats.messages == 120)

    asyncio.run(run())
    assert sorted(m.message.ts for m in stored(recorder.path)) == [1_700_000_000 + i for i in range(120)]


def test_persistent_session_gets_what_was_published_while_away_and_acks_were_sent(recorder: Recorder) -> None:
    async def run() -> tuple[MqttSource, MqttSource]:
        with running_broker(token=TOKEN) as broker:
            config = config_for(broker.url)
            async with source_running(recorder, config) as first:
                await wait_until(lambda: first.state.phase == "connected")
                await publish(broker.port, [(TOPIC.replace("+", "2"), message(i)) for i in range(30)])
                await wait_until(lambda: first.stats.messages == 30)
            # amqtt drops (rather than re-sends) messages in flight to a connection that is closing:
            # give it time to see the DISCONNECT before publishing to the now offline session.
            await asyncio.sleep(0.5)
            # trackmon is away: the broker queues for its session (clean session off, same client id)
            await publish(broker.port, [(TOPIC.replace("+", "2"), message(i)) for i in range(30, 80)])
            async with source_running(recorder, config) as second:
                await wait_until(lambda: second.stats.received >= 50, message=lambda: f"{second.status()}")
                await asyncio.sleep(0.5)  # anything re-sent (an acknowledgement lost) would come now
            return first, second

    _first, second = asyncio.run(run())
    assert second.stats.received == 50 and second.stats.duplicates == 0  # the first run's PUBACKs went out
    assert sorted(m.message.ts for m in stored(recorder.path)) == [1_700_000_000 + i for i in range(80)]


def test_a_batch_the_file_refuses_is_held_unacknowledged_and_recorded_once_it_can_be(recorder: Recorder) -> None:
    details: list[str] = []

    async def run() -> MqttSource:
        with running_broker(token=TOKEN) as broker:
            async with source_running(recorder, config_for(broker.url)) as source:
                source.on_state(lambda state: details.append(state.detail))
                await wait_until(lambda: source.state.phase == "connected")
                recorder.max_bytes = 1  # the file may not grow by a page: "the disk is full"
                noise = [orjson.dumps(orjson.loads(message(i)) | {"noise": os.urandom(3000).hex()}) for i in range(40)]
                await publish(broker.port, [(TOPIC.replace("+", "3"), payload) for payload in noise])
                await wait_until(lambda: any("holding" in d for d in details))
                assert source.stats.messages == 0
                recorder.max_bytes = None  # space again
                await wait_until(lambda: source.stats.messages == 40)
                return source

    source = asyncio.run(run())
    assert any("not recorded" in d and "full" in d for d in details)
    assert source.state.detail == "" and len(stored(recorder.path)) == 40


def test_nothing_is_acknowledged_before_it_is_committed(recorder: Recorder, tmp_path: Path) -> None:
    """Held while the file refuses data, then trackmon stops: the broker (mosquitto, which re-sends
    unacknowledged messages to a persistent session as MQTT 3.1.1 requires) delivers them again
    to the next run, and they are recorded once. Acknowledged on receipt, they would be lost."""
    details: list[str] = []

    async def run() -> MqttSource:
        with running_mosquitto(tmp_path) as broker:
            config = config_for(broker.url, token="", client_id="trackmon-held")
            async with source_running(recorder, config) as first:
                first.on_state(lambda state: details.append(state.detail))
                await wait_until(lambda: first.state.phase == "connected")
                recorder.max_bytes = 1  # "the disk is full"
                noise = [orjson.dumps(orjson.loads(message(i)) | {"noise": os.urandom(3000).hex()}) for i in range(25)]
                await publish(broker.port, [(TOPIC.replace("+", "5"), payload) for payload in noise])
                await wait_until(lambda: first.stats.received == 25 and any("holding" in d for d in details))
            assert first.stats.messages == 0  # stopped while holding: nothing recorded, nothing acknowledged
            recorder.max_bytes = None
            async with source_running(recorder, config) as second:
                await wait_until(lambda: second.stats.messages == 25)
                await asyncio.sleep(0.3)
                return second

    second = asyncio.run(run())
    assert second.stats.received == 25 and second.stats.duplicates == 0
    assert sorted(m.message.ts for m in stored(recorder.path)) == [1_700_000_000 + i for i in range(25)]


def test_past_max_held_the_broker_keeps_the_rest_until_the_file_takes_data(recorder: Recorder, tmp_path: Path) -> None:
    """While the file refuses data, at most ``max_held`` messages wait in memory: then the source
    disconnects (nothing acknowledged) and the broker keeps them; all are recorded once later."""
    reasons: list[str] = []

    async def run() -> MqttSource:
        with running_mosquitto(tmp_path) as broker:
            config = config_for(broker.url, token="", client_id="trackmon-bounded", max_held=10, batch_max=5)
            async with source_running(recorder, config) as source:
                source.on_state(lambda state: reasons.append(state.detail))
                await wait_until(lambda: source.state.phase == "connected")
                recorder.max_bytes = 1  # "the disk is full"
                noise = [orjson.dumps(orjson.loads(message(i)) | {"noise": os.urandom(3000).hex()}) for i in range(60)]
                await publish(broker.port, [(TOPIC.replace("+", "6"), payload) for payload in noise])
                await wait_until(lambda: any("held" in r and "broker keeps them" in r for r in reasons),
                                 message=lambda: f"{reasons[-3:]} {source.status()}")
                recorder.max_bytes = None
                await wait_until(lambda: len(stored(recorder.path)) == 60, timeout=30,
                                 message=lambda: f"{len(stored(recorder.path))} {source.status()}")
                return source

    source = asyncio.run(run())
    assert source.stats.connects >= 2  # it let go, and came back
    assert sorted(m.message.ts for m in stored(recorder.path)) == [1_700_000_000 + i for i in range(60)]


def test_tls_against_a_private_ca_and_an_untrusted_certificate(recorder: Recorder, tmp_path: Path) -> None:
    cert, key = make_self_signed(tmp_path / "ca", hosts=["127.0.0.1"])
    import ssl
    publisher_tls = ssl.create_default_context(cafile=str(cert))

    async def run() -> tuple[MqttSource, str]:
        with running_broker(token=TOKEN, cert=cert, key=key) as broker:
            assert broker.url.startswith("mqtts://")
            async with source_running(recorder, config_for(broker.url, client_id="untrusting")) as untrusting:
                await wait_until(lambda: untrusting.state.phase == "reconnecting")
                refused = untrusting.state.detail
            async with source_running(recorder, config_for(broker.url, cafile=cert)) as source:
                await wait_until(lambda: source.state.phase == "connected")
                await publish(broker.port, [(TOPIC.replace("+", "4"), message(i)) for i in range(10)],
                              tls=publisher_tls)
                await wait_until(lambda: source.stats.messages == 10)
                return source, refused

    _source, refused = asyncio.run(run())
    assert "certificate was not trusted" in refused and "--mqtt-cafile" in refused
    assert len(stored(recorder.path)) == 10


def test_a_refused_token_is_said_plainly_and_retried(recorder: Recorder) -> None:
    async def run() -> dict:
        with running_broker(token=TOKEN) as broker:
            async with source_running(recorder, config_for(broker.url, token="wrong-token")) as source:
                await wait_until(lambda: source.state.phase == "reconnecting")
                return source.status()

    status = asyncio.run(run())
    assert status["state"] == "reconnecting" and status["auth_failed"] is True and status["connects"] == 0
    assert "refused the credentials" in status["detail"] and "token" in status["detail"]
    assert status["text"].startswith("reconnecting in ")


@pytest.mark.parametrize("url, error", [
    ("http://broker", "mqtt:// or mqtts://"), ("mqtt://user:pw@host", "no credentials"),
    ("mqtt://", "no host"), ("mqtts://host/path", "no path"), ("mqtt://host:99999", "bad port")])
def test_broker_urls_are_checked(url: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_broker_url(url)


def test_broker_url_defaults_and_topic_filters() -> None:
    assert parse_broker_url("mqtts://mqtt.flespi.io").port == 8883
    assert parse_broker_url("mqtt://localhost").port == 1883
    with pytest.raises(ValueError, match="#"):
        MqttConfig(parse_broker_url("mqtt://h"), ("a/#/b",))
    with pytest.raises(ValueError, match="topic"):
        MqttConfig(parse_broker_url("mqtt://h"), ())
