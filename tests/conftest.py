"""Shared test fixtures: a real listener on loopback, real SQLite files, real HTTP."""

from __future__ import annotations

import asyncio
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.pop("FLESPI_TOKEN", None)  # the window would watch the real flespi with it: tests stay on 127.0.0.1

from app.server.listener import Listener, ListenerConfig
from app.server.service import ListenerService
from app.store.recorder import Recorder


@dataclass
class HttpReply:
    """Status and decoded JSON body of one request."""

    status: int
    body: Any


def http(method: str, url: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> HttpReply:
    """One real HTTP request with the standard library; errors come back as replies."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return HttpReply(reply.status, orjson.loads(reply.read()))
    except urllib.error.HTTPError as error:
        return HttpReply(error.code, orjson.loads(error.read()))


@dataclass
class RunningListener:
    """A listener serving on 127.0.0.1 in a background thread, recording to ``db``."""

    url: str
    db: Path
    listener: Listener
    recorder: Recorder

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) for raw sockets."""
        host, port = self.url.split("//")[1].split("/")[0].rsplit(":", 1)
        return host, int(port)

    def post(self, payload: Any, *, headers: dict[str, str] | None = None, raw: bytes | None = None,
             path: str | None = None) -> HttpReply:
        body = raw if raw is not None else orjson.dumps(payload)
        merged = {"Content-Type": "application/json", **(headers or {})}
        url = self.url if path is None else self.url.rsplit("/", 1)[0] + path
        return http("POST", url, body, merged)


@contextmanager
def running_listener(db: Path, config: ListenerConfig | None = None, *,
                     append: bool = False) -> Iterator[RunningListener]:
    """Serve a real listener for the duration of the block, then stop it and close the file."""
    recorder = Recorder(db)
    recorder.start_session(append=append)
    listener = Listener(recorder, config)
    service = ListenerService(listener, "127.0.0.1", 0)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    thread = threading.Thread(target=_serve, args=(loop, service, started), daemon=True)
    thread.start()
    assert started.wait(10), "listener did not start"
    try:
        yield RunningListener(service.urls()[0], db, listener, recorder)
    finally:
        asyncio.run_coroutine_threadsafe(service.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        recorder.close()


def _serve(loop: asyncio.AbstractEventLoop, service: ListenerService, started: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.run_until_complete(service.start())
    started.set()
    loop.run_forever()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "rec.sqlite"


@pytest.fixture
def served(db_path: Path) -> Iterator[RunningListener]:
    """A listener with default settings (no auth, path /)."""
    with running_listener(db_path) as running:
        yield running
