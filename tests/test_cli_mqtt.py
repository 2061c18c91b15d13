"""`trackmon record --mqtt`: a real `trackmon` process recording from a real broker, alone or
beside the HTTP listener; the token only from a file or the environment."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import orjson

from tests.conftest import http
from tests.mqtt_broker import running_broker
from tests.processes import ROOT, trackmon

TOKEN = "cli-flespi-token"


def publish(port: int, count: int, start: int = 0) -> None:
    async def run() -> None:
        async with aiomqtt.Client("127.0.0.1", port, username=TOKEN, identifier="cli-publisher") as client:
            for i in range(start, start + count):
                payload = {"ident": "860000000000001", "timestamp": 1_700_000_000 + i, "position.latitude": 49.0,
                           "position.longitude": 28.6}
                await client.publish("flespi/message/gw/devices/42", orjson.dumps(payload), qos=1)
    asyncio.run(run())


def start_record(db: Path, *args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app", "record", "--db", str(db), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **env})


def wait_for_line(process: subprocess.Popen, text: str, seen: list[str]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"trackmon exited: {''.join(seen)}")
        seen.append(line)
        if text in line:
            return line
    raise AssertionError(f"no {text!r} in {''.join(seen)}")


def stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.stdout.read()


def count_messages(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT coalesce(sum(count), 0) FROM batches").fetchone()[0]
    finally:
        conn.close()


def test_record_from_a_broker_alone_with_the_token_from_the_environment(tmp_path: Path) -> None:
    db = tmp_path / "mqtt.db"
    seen: list[str] = []
    with running_broker(token=TOKEN) as broker:
        process = start_record(db, "--mqtt", broker.url, "--mqtt-topic", "flespi/message/gw/devices/+",
                               "--no-listen", env={"FLESPI_TOKEN": TOKEN})
        try:
            wait_for_line(process, "MQTT connected", seen)
            publish(broker.port, 250)
            deadline = time.monotonic() + 30
            while count_messages(db) < 250 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            output = "".join(seen) + stop(process)
    assert process.returncode == 0, output
    assert "listening on" not in output  # no HTTP listener
    assert count_messages(db) == 250
    assert "stopped:" in output and "MQTT: 250 messages" in output
    assert TOKEN not in output


def test_record_from_a_broker_beside_the_listener_shows_it_in_status(tmp_path: Path) -> None:
    db = tmp_path / "both.db"
    token_file = tmp_path / "mqtt-token"
    token_file.write_text(TOKEN + "\n")
    seen: list[str] = []
    with running_broker(token=TOKEN) as broker:
        process = start_record(db, "--port", "0", "--mqtt", broker.url, "--mqtt-token-file", str(token_file),
                               env={})
        try:
            url = wait_for_line(process, "listening on", seen).split()[-1]
            wait_for_line(process, "MQTT connected", seen)
            publish(broker.port, 20)
            deadline = time.monotonic() + 30
            while count_messages(db) < 20 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert http("POST", url, orjson.dumps([{"ident": "http-1", "timestamp": 1_700_000_500}]),
                        {"Content-Type": "application/json"}).status == 200
            status = http("GET", url.rstrip("/") + "/status").body
        finally:
            stop(process)
    assert count_messages(db) == 21
    assert status["mqtt"]["state"] == "connected" and status["mqtt"]["messages"] == 20
    assert status["mqtt"]["topics"] == ["flespi/message/gw/devices/+"]  # the default: every device
    assert status["messages"] == 1


def test_a_wrong_token_is_reported_and_recording_goes_on_trying(tmp_path: Path) -> None:
    seen: list[str] = []
    with running_broker(token=TOKEN) as broker:
        process = start_record(tmp_path / "x.db", "--mqtt", broker.url, "--no-listen",
                               env={"TRACKMON_MQTT_TOKEN": "not-the-token", "FLESPI_TOKEN": ""})
        try:
            line = wait_for_line(process, "reconnecting in", seen)
        finally:
            stop(process)
    assert "refused the credentials" in line and "token" in line
    assert "not-the-token" not in "".join(seen)


def test_mqtt_options_are_checked() -> None:
    cases = [
        (["--no-listen"], "add --mqtt URL"),
        (["--mqtt-topic", "a/b"], "need --mqtt URL"),
        (["--mqtt", "http://broker"], "mqtt:// or mqtts://"),
        (["--mqtt", "mqtt://broker", "--mqtt-topic", "a/#/b"], "'#'"),
        (["--mqtt", "mqtt://broker", "--mqtt-cafile", "/nonexistent.pem"], "no such file"),
    ]
    for args, error in cases:
        result = trackmon("record", "--db", "/nonexistent/never.db", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert error in result.stderr, (args, result.stderr)
