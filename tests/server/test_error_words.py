"""OS and network errors in words, from real sockets and real clients on loopback."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from app.server.error_words import listen_problem, send_problem
from app.server.listener_state import ListenerState


def test_a_port_in_use_is_named_with_what_to_do() -> None:
    with socket.socket() as taken, socket.socket() as second:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as caught:
            second.bind(("127.0.0.1", port))
    text = listen_problem(caught.value, "127.0.0.1", port)
    assert text == f"port {port} is in use by another program — choose another port in Settings"


def test_an_address_not_on_this_machine_is_named() -> None:
    with socket.socket() as s, pytest.raises(OSError) as caught:
        s.bind(("192.0.2.77", 0))  # TEST-NET-1: never assigned to this machine
    text = listen_problem(caught.value, "192.0.2.77", 8585)
    assert "192.0.2.77 is not an address of this machine" in text and "Errno" not in text


def test_a_refused_connection_reads_as_nothing_listening() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        url = f"http://127.0.0.1:{port}/"

        async def attempt() -> BaseException:
            async with aiohttp.ClientSession() as session:
                try:
                    await session.post(url, data=b"[]")
                except aiohttp.ClientError as exc:
                    return exc
            raise AssertionError("connected")

        exc = asyncio.run(attempt())
    text = send_problem(exc, url)
    assert text.startswith(f"nothing is listening at {url}") and "Errno" not in text


def test_state_counts_refusals_and_says_where_data_comes_from() -> None:
    state = ListenerState(quiet_after=60)
    state.started(["http://127.0.0.1:8585/"], now=100)
    view = state.view(100, messages=0, devices=0, recording_problem=None, file_name="x.sqlite", file_bytes=0)
    assert view.heading == "Waiting for data" and view.urls == ("http://127.0.0.1:8585/",)
    state.request(101, "10.0.0.5", 401, 0, reason="missing header Authorization")
    state.request(102, "10.0.0.5", 200, 3)
    view = state.view(103, messages=3, devices=1, recording_problem=None, file_name="x.sqlite", file_bytes=0)
    assert view.heading == "Receiving data, some requests refused" and "From 10.0.0.5" in view.detail
    assert "1 refused" in view.totals
    view = state.view(200, messages=3, devices=1, recording_problem=None, file_name="x.sqlite", file_bytes=0)
    assert view.heading.startswith("No data for") and view.suggest_flespi
    view = state.view(200, messages=3, devices=1, recording_problem="the disk is full", file_name="x.sqlite",
                      file_bytes=0)
    assert view.heading == "Not recording" and "disk is full" in view.detail and view.recording.startswith("NOT")
    state.demo_running = True
    state.request(201, "127.0.0.1", 200, 5)
    state.demo_running = False
    view = state.view(202, messages=8, devices=1, recording_problem=None, file_name="x.sqlite", file_bytes=0)
    assert view.heading == "Demo feed stopped" and "the demo feed" in view.detail
    state.failed("port 8585 is in use by another program — choose another port in Settings")
    view = state.view(200, messages=3, devices=1, recording_problem=None, file_name="x.sqlite", file_bytes=0)
    assert view.urls == () and view.listening.startswith("Not listening: port 8585")
    assert not view.recording.startswith("Recording")
