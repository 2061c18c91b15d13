"""A real MQTT broker on 127.0.0.1 in its own process, started and stopped by a test.

amqtt (pure Python, from PyPI): run as a script it serves until killed: ``python -m
tests.mqtt_broker PORT [--token T] [--cert PEM --key PEM]``. With a token, a client is let in only
when its username is that token (flespi's rule: the token is the username, the password empty);
otherwise anyone is.

Mosquitto (`running_mosquitto`, installed by ``make test``): for what amqtt does not do as MQTT
3.1.1 §4.4 requires — re-send, on reconnection of a persistent session, messages that were sent
but never acknowledged (amqtt drops them when the connection closes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from amqtt.plugins.base import BaseAuthPlugin

ROOT = Path(__file__).resolve().parents[1]


class TokenAuth(BaseAuthPlugin):
    """Let in a client whose username is the configured token (flespi's rule)."""

    @dataclass
    class Config:
        token: str = ""

    async def authenticate(self, *, session) -> bool:
        return bool(self.config.token) and session.username == self.config.token


def _config(port: int, token: str, cert: str | None, key: str | None) -> dict:
    listener = {"type": "tcp", "bind": f"127.0.0.1:{port}"}
    if cert:
        listener |= {"ssl": True, "certfile": cert, "keyfile": key}
    auth = ({"tests.mqtt_broker.TokenAuth": {"token": token}} if token else
            {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}})
    return {"listeners": {"default": listener}, "plugins": auth}


async def _serve(port: int, token: str, cert: str | None, key: str | None) -> None:
    from amqtt.broker import Broker
    broker = Broker(_config(port, token, cert, key))
    await broker.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await broker.shutdown()


@dataclass
class BrokerProcess:
    """One amqtt broker process; `restart` stops it and starts a fresh one on the same port."""

    port: int
    token: str = ""
    cert: Path | None = None
    key: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.cert else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [sys.executable, "-m", "tests.mqtt_broker", str(self.port)]
        if self.token:
            args += ["--token", self.token]
        if self.cert:
            args += ["--cert", str(self.cert), "--key", str(self.key)]
        self.process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"the MQTT broker did not start ({line!r})")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # listening for certain
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("the MQTT broker is not listening")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_broker(*, token: str = "", cert: Path | None = None, key: Path | None = None) -> Iterator[BrokerProcess]:
    """A broker on a free loopback port for the block; always stopped afterwards."""
    broker = BrokerProcess(free_port(), token, cert, key)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@contextmanager
def running_mosquitto(tmp: Path, *, max_inflight: int = 100) -> Iterator[BrokerProcess]:
    """Mosquitto on a free loopback port (anonymous, in memory, queueing without limit for
    offline persistent sessions) for the block; always stopped."""
    import getpass
    import shutil
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        raise RuntimeError("mosquitto is not installed: `make test` installs it (apt-get install mosquitto)")
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    f"user {getpass.getuser()}\nlog_dest stderr\nmax_inflight_messages {max_inflight}\n"
                    "max_queued_messages 0\n")
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    broker = BrokerProcess(port, process=process)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start (exit {process.poll()})")
            time.sleep(0.05)
        yield broker
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--token", default="")
    parser.add_argument("--cert", default=None)
    parser.add_argument("--key", default=None)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.token, args.cert, args.key))


if __name__ == "__main__":
    main()
