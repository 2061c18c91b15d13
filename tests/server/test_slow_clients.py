"""Slow, idle and numerous clients over raw loopback sockets: each kind is dropped after a
bounded time, and a valid batch still gets through while many are open.

Deadlines are configured short here; the socket timeouts only keep a broken server from
hanging the test.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace

import orjson
import pytest

from app.server.auth import HeaderAuth
from app.server.limits import Limits
from app.server.listener import ListenerConfig
from app.server.ratelog import RateLimitFilter
from app.store.queries import list_rejects
from tests.conftest import RunningListener, http, running_listener
from tests.server.test_hostile_bodies import read_response

FAST = Limits(header_timeout=0.5, body_idle_timeout=0.5, body_timeout=2.0, keepalive_timeout=0.5,
              max_connections=8)
BATCH = orjson.dumps([{"ident": "valid", "timestamp": 1_700_000_000.0}])
POST_HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
BOUND = 15  # seconds a socket waits before the test calls the server stuck


@pytest.fixture
def guarded(db_path) -> Iterator[RunningListener]:
    with running_listener(db_path, ListenerConfig(limits=FAST)) as running:
        yield running


def connect(served: RunningListener, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(served.address, timeout=BOUND)
    if first:
        sock.sendall(first)
    return sock


def wait_until(predicate, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def closed_by_server(sock: socket.socket) -> bool:
    """Read until the server closes; True if it did (a response before the close is fine)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


@pytest.mark.parametrize("sent", [b"", b"POST / HT", POST_HEAD + b"Content-Length: 2\r\nX-Slow: "],
                         ids=["silent", "partial request line", "partial headers"])
def test_a_request_that_never_completes_its_headers_is_dropped(guarded, sent: bytes) -> None:
    with connect(guarded, sent) as sock:
        assert closed_by_server(sock)
    assert http("GET", guarded.url + "status").body["connections"]["header_timeouts"] == 1


@pytest.mark.parametrize("head, sent", [
    (POST_HEAD + b"Content-Length: 100\r\n\r\n", b'[{"ident":'),
    (POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n", b"5\r\n[1,2,\r\n"),
], ids=["short of its Content-Length", "unterminated chunked"])
def test_a_body_that_stops_coming_gets_408_and_is_kept(guarded, head: bytes, sent: bytes) -> None:
    with connect(guarded, head + sent) as sock:
        answer = read_response(sock)
        assert closed_by_server(sock)
    assert answer.startswith(b"HTTP/1.1 408") and b'"body_timeout"' in answer
    conn = sqlite3.connect(guarded.db)
    [reject] = list_rejects(conn)
    conn.close()
    assert reject["status"] == 408 and "no body data" in reject["reason"]


def test_a_body_trickling_in_is_cut_at_the_total_deadline(guarded) -> None:
    with connect(guarded, POST_HEAD + b"Content-Length: 100000\r\n\r\n") as sock:
        sock.settimeout(0.2)
        answer = b""
        while not answer:  # one byte at a time, each well inside the idle deadline
            sock.sendall(b" ")
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
        sock.settimeout(BOUND)
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 2 s" in answer


def test_an_idle_keep_alive_connection_is_closed(guarded) -> None:
    with connect(guarded, POST_HEAD + b"Content-Length: %d\r\n\r\n" % len(BATCH) + BATCH) as sock:
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        assert closed_by_server(sock)  # nothing more was sent: closed after the keep-alive timeout


def test_a_valid_batch_gets_through_while_many_slow_connections_are_open(db_path) -> None:
    limits = replace(FAST, header_timeout=60.0, keepalive_timeout=60.0)  # only the cap closes them here
    with running_listener(db_path, ListenerConfig(limits=limits)) as served, ExitStack() as stack:
        slow = [stack.enter_context(connect(served, b"POST / HT")) for _ in range(40)]
        reply = served.post(None, raw=BATCH)
        status = http("GET", served.url + "status").body["connections"]
        for sock in slow[:-limits.max_connections]:  # the longest waiting were closed to make room
            assert closed_by_server(sock)
    assert reply.status == 200 and reply.body["accepted"] == 1
    assert status["evicted"] >= 40 - limits.max_connections and status["open"] <= limits.max_connections


def test_when_every_connection_is_busy_a_newcomer_is_closed_then_service_resumes(db_path) -> None:
    config = ListenerConfig(auth=HeaderAuth.bearer("t"), limits=FAST)
    head = POST_HEAD + b"Authorization: Bearer t\r\nContent-Length: 1000\r\n\r\n["
    with running_listener(db_path, config) as served, ExitStack() as stack:
        busy = [stack.enter_context(connect(served, head)) for _ in range(FAST.max_connections)]
        wait_until(lambda: served.listener.connections.busy == FAST.max_connections)  # bodies being read
        newcomer = connect(served)
        with newcomer:
            assert closed_by_server(newcomer)
        for sock in busy:
            assert read_response(sock).startswith(b"HTTP/1.1 408")
        after = served.post(None, raw=BATCH, headers={"Authorization": "Bearer t"})
        refused = http("GET", served.url + "status", headers={"Authorization": "Bearer t"}).body["connections"]
    assert after.status == 200
    assert refused["refused"] >= 1


def test_a_folded_authorization_header_is_answered_without_the_token(db_path, caplog) -> None:
    token = "folded-secret-token"
    caplog.set_level(logging.DEBUG)
    with running_listener(db_path, ListenerConfig(auth=HeaderAuth.bearer(token), limits=FAST)) as served, \
            connect(served, b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n " + token.encode()
                    + b"\r\nContent-Length: 2\r\n\r\n[]") as sock:
        answer = read_response(sock)
    assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request") and b'"bad_http"' in answer
    assert token.encode() not in answer
    assert token not in caplog.text
    conn = sqlite3.connect(db_path)
    stored = conn.execute("SELECT group_concat(headers || path || reason) FROM rejects").fetchone()[0] or ""
    conn.close()
    assert token not in stored


def test_the_open_file_limit_is_raised_to_the_hard_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip("the hard limit leaves nothing to raise")
    code = "from app.server.connections import raise_open_file_limit; print(raise_open_file_limit())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)))
    assert int(result.stdout) > 256


def test_log_lines_of_one_kind_are_rate_limited() -> None:
    now = [0.0]
    limiter = RateLimitFilter(burst=3, window=10.0, clock=lambda: now[0])
    record = lambda: logging.LogRecord("asyncio", logging.ERROR, "f", 1, "socket.accept() out of system resource",  # noqa: E731
                                       None, None)
    passed = [limiter.filter(record()) for _ in range(1_000)]
    assert passed.count(True) == 3
    now[0] = 11.0
    summary = record()
    assert limiter.filter(summary) and "997 similar messages suppressed" in summary.getMessage()
