"""Operating-system and network errors in words a user can act on.

Python's own text (``[Errno 98] error while attempting to bind…``,
``ConnectionRefusedError: [Errno 111] Connect call failed``) names the symptom in the OS's terms;
these functions say what happened and what to do, and never show an errno.
"""

from __future__ import annotations

import errno
import re
import ssl

import aiohttp

_ERRNO = re.compile(r"\[Errno -?\d+\]\s*")


def plain(exc: BaseException) -> str:
    """An exception's message without the ``[Errno N]`` prefix or the class name."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return _ERRNO.sub("", text).strip() or type(exc).__name__


def listen_problem(exc: BaseException, host: str, port: int) -> str:
    """Why a listener could not start on ``host:port``, and what to change (in Settings)."""
    code = getattr(exc, "errno", None)
    if code == errno.EADDRINUSE:
        return f"port {port} is in use by another program — choose another port in Settings"
    if code == errno.EACCES:
        return (f"port {port} needs administrator rights on this system — choose a port above 1023 "
                "in Settings")
    if code == errno.EADDRNOTAVAIL or (isinstance(exc, OSError) and "assign requested address" in str(exc)):
        return (f"{host} is not an address of this machine — choose 127.0.0.1 (this machine only) or "
                "0.0.0.0 (every network) in Settings")
    if isinstance(exc, ssl.SSLError | FileNotFoundError | IsADirectoryError | PermissionError):
        return (f"the HTTPS certificate or key cannot be used ({plain(exc)}) — choose them again in "
                "Settings, or switch HTTPS off")
    if isinstance(exc, ValueError):
        return f"HTTPS cannot start: {plain(exc)} — check the certificate and key in Settings"
    return f"the listener could not start on {host}:{port}: {plain(exc)} — check the address and port in Settings"


def send_problem(exc: BaseException, url: str) -> str:
    """Why a POST to ``url`` failed, in words (connection refused, unknown host, timeout, TLS)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
        return f"{url} presented a certificate this machine does not trust"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"the host name in {url} could not be found"
    if isinstance(exc, ConnectionRefusedError) or (isinstance(exc, aiohttp.ClientConnectorError) and (
            isinstance(exc.os_error, ConnectionRefusedError))):
        return f"nothing is listening at {url} (connection refused) — is the listener running, and the port right?"
    if isinstance(exc, TimeoutError):
        return f"{url} did not answer in time"
    if isinstance(exc, aiohttp.ServerDisconnectedError | ConnectionResetError):
        return f"{url} closed the connection without answering"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"could not connect to {url}: {plain(exc.os_error)}"
    return f"sending to {url} failed: {plain(exc)}"
