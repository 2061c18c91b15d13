"""Run a `Listener` on a host and port, on whatever asyncio loop is current.

Used alike by `trackmon record` (plain asyncio), the desktop window (qasync) and the tests.
"""

from __future__ import annotations

import errno
import ssl
from pathlib import Path

from aiohttp import web

from app.server import ratelog
from app.server.addresses import listening_urls
from app.server.connections import GuardedServer, raise_open_file_limit
from app.server.listener import Listener

#: Seconds a stopping service waits for requests in progress before closing their connections.
SHUTDOWN_TIMEOUT = 5.0
#: Seconds the unread rest of a refused body is drained so the client can read the answer.
LINGERING_TIME = 2.0


class PortInUse(OSError):
    """The chosen port is taken; the message says which and what to do."""


class ListenerService:
    """Starts and stops the listener's HTTP(S) server."""

    def __init__(self, listener: Listener, host: str = "127.0.0.1", port: int = 8080, *,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.listener = listener
        self.host = host
        self.requested_port = port
        self.ssl_context = ssl_context
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> list[str]:
        """Bind and serve; returns the URLs a stream can post to. Raises PortInUse."""
        raise_open_file_limit()
        ratelog.install()
        limits = self.listener.config.limits
        # Bodies are decoded by the listener itself, so it can bound decompression and refuse
        # unknown encodings with a recorded 415 instead of aiohttp's bare 400.
        server = GuardedServer(self.listener.handle, limits=limits, stats=self.listener.connections,
                               access_log=None, auto_decompress=False,
                               keepalive_timeout=limits.keepalive_timeout, lingering_time=LINGERING_TIME)
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.requested_port, ssl_context=self.ssl_context,
                           reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            self.listener.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUse(exc.errno, f"port {self.requested_port} on {self.host} is "
                                f"already in use; choose another with --port") from None
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self.urls()

    def urls(self) -> list[str]:
        """Every URL the listener can be reached at (loopback first)."""
        if self.port is None:
            return []
        scheme = "https" if self.ssl_context is not None else "http"
        return listening_urls(self.host, self.port, self.listener.config.path, scheme)

    async def stop(self) -> None:
        """Stop accepting requests and close open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.listener.close()


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS server context from a PEM certificate (chain) and key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context
