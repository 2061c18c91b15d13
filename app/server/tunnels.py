"""Make the listener reachable from the cloud: SSH reverse tunnels and external tunnel tools.

* `SshTunnel` asks an SSH server (one you run, or a public tunnel service) to forward a remote
  port to the local listener, in-process with asyncssh, reconnecting with back-off. Host keys are
  trusted on first use and checked afterwards. Services that hand out a URL print it on the
  session; `find_public_url` picks it out.
* `ExternalTunnel` starts `cloudflared` or `ngrok` when installed, reads the public URL from
  their output, and stops them when asked (the window does so on exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import asyncssh

log = logging.getLogger(__name__)

_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::\d+)?(?:/[^\s\"'<>]*)?")
#: Domains public tunnel services hand out addresses under.
TUNNEL_DOMAINS = ("trycloudflare.com", "ngrok-free.app", "ngrok-free.dev", "ngrok.app", "ngrok.io", "lhr.life",
                  "localhost.run", "serveo.net", "serveousercontent.com", "pinggy.link", "pinggy.online",
                  "a.pinggy.io", "loca.lt")
_NOT_TUNNELS = ("admin.", "www.", "dashboard.", "docs.", "api.")


def find_public_url(text: str) -> str | None:
    """The public address a tunnel tool or service announced in ``text``, or None.

    A tunnel address is an https URL with no path on a subdomain. Output also carries
    documentation and dashboard links, so candidates are scored: under a known tunnel domain, a
    generated-looking host, on a line about forwarding or tunnels.
    """
    best, best_score = None, 1
    for line in text.splitlines():
        lowered = line.lower()
        for match in _URL.finditer(line):
            url = match.group(0).rstrip(".,;)]}|")
            parsed = urlparse(url)
            host = parsed.hostname or ""
            if (parsed.scheme != "https" or parsed.path not in ("", "/") or host.count(".") < 2
                    or host.replace(".", "").isdigit()):
                continue
            score = 0
            if any(host.endswith("." + d) for d in TUNNEL_DOMAINS):
                score += 2
            label = host.split(".")[0]
            if any(ch.isdigit() for ch in label) or len(label) >= 8 or "-" in label:
                score += 1
            if host.startswith(_NOT_TUNNELS):
                score -= 3
            if "forward" in lowered or "tunnel" in lowered or '"url"' in lowered:
                score += 1
            if score > best_score:
                best, best_score = url, score
    return best


@dataclass(frozen=True, slots=True)
class TunnelState:
    """What a tunnel is doing, for the status bar and the tunnel dialog."""

    state: str  # "connecting", "connected", "retrying", "failed", "stopped"
    detail: str = ""
    public_url: str | None = None


StateCallback = Callable[[TunnelState], None]


@dataclass(slots=True)
class SshTunnelConfig:
    """Where to tunnel through and what to forward."""

    host: str
    username: str
    local_port: int
    port: int = 22
    password: str | None = None
    key_path: str | None = None
    remote_port: int = 8585
    remote_bind: str = ""  # "" = every interface of the SSH server (needs GatewayPorts there)
    local_host: str = "127.0.0.1"
    announce: bool = False  # the server is a tunnel service that prints the public URL
    known_hosts: Path = field(default_factory=lambda: Path("known_hosts"))

    @classmethod
    def parse_target(cls, target: str) -> tuple[str, str, int]:
        """'user@host[:port]' → (user, host, port); raises ValueError with what is wrong."""
        user, at, host = target.strip().partition("@")
        if not at or not user or not host:
            raise ValueError(f"expected user@host[:port], got {target!r}")
        port = "22"
        if host.count(":") == 1:  # host:port (a bare IPv6 address has several colons)
            host, port = host.split(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected user@host[:port], got {target!r}")
        return user, host, int(port)


class HostKeyChanged(Exception):
    """The SSH server's key differs from the one trusted before: refuse, do not retry."""


def _known_host_pattern(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


async def trust_on_first_use(path: Path, host: str, port: int) -> None:
    """Record the server's host key the first time we meet it (later connections check it)."""
    pattern = _known_host_pattern(host, port)
    if path.exists() and any(line.split(" ", 1)[0] == pattern for line in path.read_text().splitlines() if line):
        return
    key = await asyncssh.get_server_host_key(host, port)
    if key is None:
        raise OSError(f"{host}:{port} offered no host key")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(f"{pattern} {key.export_public_key('openssh').decode().strip()}\n")
    log.warning("trusting SSH host key of %s on first use: %s", pattern, key.get_fingerprint())


class SshTunnel:
    """A reverse tunnel kept up until stopped."""

    def __init__(self, config: SshTunnelConfig, on_state: StateCallback | None = None) -> None:
        self.config = config
        self.on_state = on_state
        self.state = TunnelState("stopped")
        self.bound_port: int | None = None
        self._stop = asyncio.Event()

    def _set(self, state: TunnelState) -> None:
        self.state = state
        if self.on_state is not None:
            self.on_state(state)

    def stop(self) -> None:
        """Ask the tunnel to close; `run` returns soon after."""
        self._stop.set()

    async def run(self, first_backoff: float = 1.0, max_backoff: float = 60.0) -> None:
        """Connect, forward, and reconnect with back-off until `stop` (or a changed host key)."""
        backoff = first_backoff
        c = self.config
        while not self._stop.is_set():
            self._set(TunnelState("connecting", f"{c.username}@{c.host}:{c.port}"))
            try:
                await self._session()
                backoff = first_backoff  # it was up: start the back-off again
                if self._stop.is_set():
                    break
                detail = "connection closed"
            except HostKeyChanged as exc:
                self._set(TunnelState("failed", str(exc)))
                return
            except (TimeoutError, OSError, asyncssh.Error) as exc:
                detail = f"{type(exc).__name__}: {exc}".strip()
            self._set(TunnelState("retrying", f"{detail}; retrying in {backoff:.0f} s"))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff)
            backoff = min(max_backoff, backoff * 2)
        self._set(TunnelState("stopped"))

    async def _session(self) -> None:
        c = self.config
        await trust_on_first_use(c.known_hosts, c.host, c.port)
        options = {"username": c.username, "known_hosts": str(c.known_hosts), "password": c.password,
                   "client_keys": [c.key_path] if c.key_path else None, "keepalive_interval": 15}
        try:
            conn = await asyncio.wait_for(asyncssh.connect(c.host, c.port, **options), 20)
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostKeyChanged(f"the host key of {c.host}:{c.port} does not match the one trusted before "
                                 f"({c.known_hosts}); refusing to connect") from exc
        async with conn:
            listener = await conn.forward_remote_port(c.remote_bind, c.remote_port, c.local_host, c.local_port)
            self.bound_port = listener.get_port()
            url = None if c.announce else f"http://{c.host}:{self.bound_port}"
            self._set(TunnelState("connected", f"{c.host}:{self.bound_port} → {c.local_host}:{c.local_port}", url))
            waits = [asyncio.ensure_future(conn.wait_closed()), asyncio.ensure_future(self._stop.wait())]
            if c.announce:
                waits.append(asyncio.ensure_future(self._read_announcement(conn)))
            try:
                await asyncio.wait(waits[:2], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()
                listener.close()

    async def _read_announcement(self, conn: asyncssh.SSHClientConnection) -> None:
        """Tunnel services print the public URL on the session; read until one shows up."""
        process = await conn.create_process(term_type=None, stderr=asyncssh.STDOUT)
        seen = ""
        async for line in process.stdout:
            seen += line
            url = find_public_url(seen)
            if url:
                self._set(TunnelState("connected", self.state.detail, url))


TOOL_ARGS = {
    "cloudflared": lambda port: ["tunnel", "--no-autoupdate", "--url", f"http://127.0.0.1:{port}"],
    "ngrok": lambda port: ["http", str(port), "--log", "stdout", "--log-format", "json"],
}


def available_tools() -> dict[str, str]:
    """Tunnel tools on PATH: name → executable."""
    return {name: path for name in TOOL_ARGS if (path := shutil.which(name))}


class ExternalTunnel:
    """cloudflared or ngrok, started for the listener's port; the public URL read from its output."""

    def __init__(self, tool: str, port: int, on_state: StateCallback | None = None) -> None:
        if tool not in TOOL_ARGS:
            raise ValueError(f"unknown tunnel tool {tool!r}")
        self.tool, self.port, self.on_state = tool, port, on_state
        self.process: asyncio.subprocess.Process | None = None
        self.state = TunnelState("stopped")
        self._reader: asyncio.Task | None = None

    def _set(self, state: TunnelState) -> None:
        self.state = state
        if self.on_state is not None:
            self.on_state(state)

    async def start(self) -> None:
        """Start the tool; the URL arrives through ``on_state`` once it prints it."""
        executable = shutil.which(self.tool)
        if executable is None:
            raise FileNotFoundError(f"{self.tool} is not on PATH")
        self.process = await asyncio.create_subprocess_exec(
            executable, *TOOL_ARGS[self.tool](self.port), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        self._set(TunnelState("connecting", f"{self.tool} started (pid {self.process.pid})"))
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        seen = ""
        while line := await self.process.stdout.readline():
            seen += line.decode(errors="replace")
            url = find_public_url(seen)
            if url and url != self.state.public_url:
                self._set(TunnelState("connected", f"{self.tool} (pid {self.process.pid})", url))
        code = await self.process.wait()
        if self.state.state != "stopped":
            self._set(TunnelState("failed", f"{self.tool} exited with {code}"))

    async def stop(self) -> None:
        """Terminate the tool (kill it if it does not go within 5 s)."""
        if self.process is not None and self.process.returncode is None:
            self._set(TunnelState("stopped"))
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            self._reader.cancel()
        self._set(TunnelState("stopped"))
