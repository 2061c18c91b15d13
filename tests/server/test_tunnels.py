"""Tunnels: a real SSH reverse tunnel against an asyncssh server on 127.0.0.1, URL detection
from tool outputs, and the external tool's process lifecycle."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from pathlib import Path

import aiohttp
import asyncssh
import pytest

from app.server.tunnels import ExternalTunnel, SshTunnel, SshTunnelConfig, available_tools, find_public_url
from app.store.queries import iter_messages
from tests.conftest import running_listener
from tests.processes import free_port

OUTPUTS = Path(__file__).resolve().parents[1] / "data" / "tunnel-outputs"


@pytest.mark.parametrize(("sample", "url"), [
    ("cloudflared.txt", "https://seasonal-wise-grain-tracker.trycloudflare.com"),
    ("ngrok.jsonl", "https://3f2a-203-0-113-5.ngrok-free.app"),
    ("localhost-run.txt", "https://4c2d8e1b9a7f63.lhr.life"),
    ("serveo.txt", "https://a1b2c3d4e5f6.serveo.net"),
    ("docs-only.txt", None),
])
def test_public_url_is_picked_out_of_tool_output(sample, url) -> None:
    assert find_public_url((OUTPUTS / sample).read_text()) == url


def test_ssh_target_parsing() -> None:
    assert SshTunnelConfig.parse_target("me@example.org") == ("me", "example.org", 22)
    assert SshTunnelConfig.parse_target("nokey@localhost.run:2222") == ("nokey", "localhost.run", 2222)
    for bad in ("example.org", "@host", "me@", "me@host:abc", "me@host:70000"):
        with pytest.raises(ValueError, match="user@host"):
            SshTunnelConfig.parse_target(bad)


class _Server(asyncssh.SSHServer):
    live: list[asyncssh.SSHServerConnection] = []  # noqa: RUF012 - shared on purpose: the test drops them

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.live.append(conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return (username, password) == ("tracker", "s3cret")

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return True  # allow the reverse forward


async def _announce(process: asyncssh.SSHServerProcess) -> None:
    process.stdout.write("Welcome! Docs at https://docs.example-tunnel.test/guide\r\n")
    process.stdout.write("Forwarding HTTP traffic from https://k7x2m9q4.serveo.net\r\n")
    await process.stdin.read()  # keep the session open until the client leaves


async def start_ssh_server(port: int, key: asyncssh.SSHKey, announce: bool = False) -> asyncssh.SSHAcceptor:
    return await asyncssh.create_server(_Server, "127.0.0.1", port, server_host_keys=[key],
                                        process_factory=_announce if announce else None)


async def post_through(port: int, ident: str, token: str | None = None) -> int:
    body = [{"ident": ident, "timestamp": 1}]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, \
            session.post(f"http://127.0.0.1:{port}/", json=body, headers=headers) as reply:
        return reply.status


async def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_request_travels_through_a_real_ssh_reverse_tunnel_and_it_reconnects(tmp_path) -> None:
    ssh_port, remote_port = free_port(), free_port()
    key = asyncssh.generate_private_key("ssh-ed25519")

    async def scenario(local_port: int) -> None:
        server = await start_ssh_server(ssh_port, key)
        states = []
        config = SshTunnelConfig(host="127.0.0.1", port=ssh_port, username="tracker", password="s3cret",
                                 local_port=local_port, remote_port=remote_port, remote_bind="127.0.0.1",
                                 known_hosts=tmp_path / "known_hosts")
        tunnel = SshTunnel(config, states.append)
        runner = asyncio.ensure_future(tunnel.run(first_backoff=0.2, max_backoff=0.5))
        try:
            await wait_for(lambda: tunnel.state.state == "connected")
            assert tunnel.state.public_url == f"http://127.0.0.1:{remote_port}"
            assert await post_through(remote_port, "via-ssh") == 200
            assert "[127.0.0.1]:" in (tmp_path / "known_hosts").read_text()  # trusted on first use
            server.close()  # the far end goes away...
            for conn in _Server.live:
                conn.close()
            _Server.live.clear()
            await server.wait_closed()
            await wait_for(lambda: tunnel.state.state == "retrying")
            server = await start_ssh_server(ssh_port, key)  # ...and comes back
            await wait_for(lambda: tunnel.state.state == "connected")
            assert await post_through(remote_port, "again") == 200
        finally:
            tunnel.stop()
            await asyncio.wait_for(runner, 10)
            server.close()
        assert [s.state for s in states][-1] == "stopped"

    with running_listener(tmp_path / "ssh.sqlite") as served:
        asyncio.run(scenario(int(served.url.rsplit(":", 1)[1].strip("/"))))
    conn = sqlite3.connect(tmp_path / "ssh.sqlite")
    assert [m.message.ident for m in iter_messages(conn, 1)] == ["via-ssh", "again"]
    conn.close()


def test_a_tunnel_service_announces_its_public_url(tmp_path) -> None:
    ssh_port = free_port()

    async def scenario() -> None:
        server = await start_ssh_server(ssh_port, asyncssh.generate_private_key("ssh-ed25519"), announce=True)
        config = SshTunnelConfig(host="127.0.0.1", port=ssh_port, username="tracker", password="s3cret",
                                 local_port=9, remote_port=0, remote_bind="127.0.0.1", announce=True,
                                 known_hosts=tmp_path / "known_hosts")
        tunnel = SshTunnel(config)
        runner = asyncio.ensure_future(tunnel.run())
        try:
            await wait_for(lambda: tunnel.state.public_url is not None)
            assert tunnel.state.public_url == "https://k7x2m9q4.serveo.net"
        finally:
            tunnel.stop()
            await asyncio.wait_for(runner, 10)
            server.close()

    asyncio.run(scenario())


def test_a_changed_host_key_is_refused_without_retrying(tmp_path) -> None:
    ssh_port = free_port()

    async def scenario() -> None:
        config = SshTunnelConfig(host="127.0.0.1", port=ssh_port, username="tracker", password="s3cret",
                                 local_port=9, remote_port=0, remote_bind="127.0.0.1",
                                 known_hosts=tmp_path / "known_hosts")
        for attempt in range(2):  # the same address, a different server key the second time
            server = await start_ssh_server(ssh_port, asyncssh.generate_private_key("ssh-ed25519"))
            tunnel = SshTunnel(config)
            runner = asyncio.ensure_future(tunnel.run(first_backoff=0.2))
            try:
                if attempt == 0:
                    await wait_for(lambda t=tunnel: t.state.state == "connected")
                    tunnel.stop()
                await asyncio.wait_for(runner, 10)
            finally:
                tunnel.stop()
                server.close()
                await server.wait_closed()
        assert tunnel.state.state == "failed" and "host key" in tunnel.state.detail

    asyncio.run(scenario())


def test_external_tool_is_started_its_url_read_and_it_is_stopped(tmp_path, monkeypatch) -> None:
    fake = tmp_path / "cloudflared"
    fake.write_text(f"#!/bin/sh\ncat {OUTPUTS / 'cloudflared.txt'} >&2\nexec sleep 60\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert available_tools()["cloudflared"] == str(fake)

    async def scenario() -> None:
        tunnel = ExternalTunnel("cloudflared", 8585)
        await tunnel.start()
        try:
            await wait_for(lambda: tunnel.state.public_url is not None)
            assert tunnel.state.public_url == "https://seasonal-wise-grain-tracker.trycloudflare.com"
        finally:
            await tunnel.stop()
        assert tunnel.process.returncode is not None and tunnel.state.state == "stopped"

    asyncio.run(scenario())


def test_headless_recorder_keeps_a_tunnel_open(tmp_path, monkeypatch) -> None:
    import threading

    from tests.processes import recorder_process

    ssh_port, remote_port = free_port(), free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)
        key = asyncssh.generate_private_key("ssh-ed25519")
        holder["server"] = loop.run_until_complete(start_ssh_server(ssh_port, key))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    monkeypatch.setenv("TRACKMON_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TM_SSH_PASSWORD", "s3cret")
    monkeypatch.setenv("TRACKMON_TOKEN", "tunnel-token")  # a public tunnel needs one; kept off the command line
    try:
        with recorder_process(tmp_path / "headless.sqlite", "--ssh-tunnel", f"tracker@127.0.0.1:{ssh_port}",
                              "--ssh-password-env", "TM_SSH_PASSWORD", "--ssh-remote-port", str(remote_port),
                              "--ssh-remote-bind", "127.0.0.1") as rec:
            line = ""
            while "tunnel connected" not in line:
                line = rec.process.stdout.readline()
                assert line, "recorder ended before the tunnel came up"
            assert f"public URL http://127.0.0.1:{remote_port}/" in line
            assert asyncio.run(post_through(remote_port, "stranger")) == 401
            assert asyncio.run(post_through(remote_port, "headless", "tunnel-token")) == 200
    finally:
        loop.call_soon_threadsafe(holder["server"].close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    conn = sqlite3.connect(tmp_path / "headless.sqlite")
    assert [m.message.ident for m in iter_messages(conn, 1)] == ["headless"]
    conn.close()
