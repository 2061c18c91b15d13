"""Shared pieces of the command line: errors, argument types, listener options, helpers."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

from app.core.normalize import parse_timestamp
from app.paths import default_db

DEFAULT_PORT = 8585
#: Environment variable holding the listener's bearer token (out of the process list).
TOKEN_ENV = "TRACKMON_TOKEN"
#: Environment variables holding the MQTT broker's token (the flespi token is the username), in
#: the order they are looked at. Never an argument: any local user can read the process list.
MQTT_TOKEN_ENVS = ("TRACKMON_MQTT_TOKEN", "FLESPI_TOKEN")
EXIT_USAGE = 2
EXIT_FAILURE = 1


class CliError(Exception):
    """A user-facing failure: printed as one line, exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than zero, got {text}")
    return value


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {value}")
    return value


def time_value(text: str) -> float:
    value = parse_timestamp(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"not a Unix time or ISO 8601 time: {text!r}")
    return value


def add_listener_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `record` and the desktop window: where and how to listen."""
    group = parser.add_argument_group("listener")
    group.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; "
                       "0.0.0.0 for every interface, which requires a token)")
    group.add_argument("--port", type=port_number, default=None,
                       help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)")
    group.add_argument("--path", default=None, help="URL path the stream posts to (default /)")
    group.add_argument("--db", type=Path, default=None, help=f"recording file (default {default_db()})")
    group.add_argument("--token", default=None,
                       help="require 'Authorization: Bearer TOKEN'. Other local users can read it in the "
                            f"process list: prefer --token-file or the {TOKEN_ENV} environment variable")
    group.add_argument("--token-file", type=Path, default=None, metavar="PATH",
                       help=f"read the bearer token from this file (its first line); without --token, "
                            f"--token-file or --auth-header, {TOKEN_ENV} is used if set")
    group.add_argument("--auth-header", default=None, metavar="'NAME: VALUE'",
                       help="require this exact header instead of a bearer token")
    group.add_argument("--insecure-no-token", action="store_true",
                       help="allow binding beyond loopback without any token (not recommended)")
    group.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate (chain) for HTTPS")
    group.add_argument("--tls-key", type=Path, default=None, help="PEM private key for HTTPS")
    group.add_argument("--tls-self-signed", action="store_true",
                       help="HTTPS with a self-signed certificate kept in the data directory (see `trackmon cert`)")
    group.add_argument("--max-body", type=positive_int, default=64, metavar="MIB",
                       help="largest accepted request body in MiB, after decompression (default 64)")
    group.add_argument("--messages-path", default="", metavar="DOTTED.PATH",
                       help="where the message array sits when the body is a JSON object")
    group.add_argument("--sync", choices=("normal", "full"), default="normal",
                       help="'full' makes each commit survive a power cut too (slower)")


def add_limit_options(parser: argparse.ArgumentParser) -> None:
    """What one client may cost the headless listener (see app/server/limits.py for why)."""
    from app.server.limits import Limits
    defaults = Limits()
    group = parser.add_argument_group("limits on clients")
    group.add_argument("--max-messages", type=positive_int, default=defaults.max_messages, metavar="N",
                       help=f"most messages in one batch (default {defaults.max_messages:,})")
    group.add_argument("--max-depth", type=positive_int, default=defaults.max_depth, metavar="N",
                       help=f"deepest nesting of a body's arrays/objects (default {defaults.max_depth})")
    group.add_argument("--max-connections", type=positive_int, default=defaults.max_connections, metavar="N",
                       help=f"open connections at once; at the cap the longest-idle one is closed "
                            f"(default {defaults.max_connections})")
    group.add_argument("--header-timeout", type=positive_float, default=defaults.header_timeout, metavar="S",
                       help=f"seconds to receive a request's headers (default {defaults.header_timeout:g})")
    group.add_argument("--body-timeout", type=positive_float, default=defaults.body_timeout, metavar="S",
                       help=f"seconds to receive a whole body (default {defaults.body_timeout:g}; "
                            f"{defaults.body_idle_timeout:g} s without any byte ends it too)")
    group.add_argument("--keepalive-timeout", type=positive_float, default=defaults.keepalive_timeout,
                       metavar="S", help=f"seconds an idle connection stays open (default "
                                         f"{defaults.keepalive_timeout:g})")


def resolve_token(args: argparse.Namespace) -> None:
    """Set ``args.token`` from --token-file, or from TRACKMON_TOKEN when no token or auth header
    was given. Both keep the secret out of the process list, which any local user can read."""
    token_file = getattr(args, "token_file", None)
    if token_file is not None:
        if args.token:
            raise CliError("use either --token or --token-file, not both", EXIT_USAGE)
        args.token, args.token_file = read_token_file(token_file, "--token-file"), None
    elif not args.token and not getattr(args, "auth_header", None):
        token = os.environ.get(TOKEN_ENV, "").strip()
        if token:
            args.token = token


def read_token_file(path: Path, option: str) -> str:
    """The first line of a token file, or a usage error saying why not."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{option}: cannot read {path}: {exc}", EXIT_USAGE) from None
    token = lines[0].strip() if lines else ""
    if not token:
        raise CliError(f"{option}: {path} is empty", EXIT_USAGE)
    return token


def resolve_mqtt_token(args: argparse.Namespace) -> str:
    """The MQTT broker's token: --mqtt-token-file, else the first of MQTT_TOKEN_ENVS that is set,
    else none (a broker that lets anyone in)."""
    token_file = getattr(args, "mqtt_token_file", None)
    if token_file is not None:
        return read_token_file(token_file, "--mqtt-token-file")
    for name in MQTT_TOKEN_ENVS:
        token = os.environ.get(name, "").strip()
        if token:
            return token
    return ""


def open_readonly(db: Path | None):
    from app.store.schema import SchemaTooNew, connect
    db = db or default_db()
    if not db.exists():
        raise CliError(f"no recording at {db}")
    try:
        return db, connect(db, readonly=True)
    except SchemaTooNew as exc:
        raise CliError(str(exc)) from None
    except sqlite3.Error as exc:
        raise CliError(f"cannot read {db}: {exc}") from None


def pick_session(conn, session: int | None) -> int:
    from app.store.queries import latest_session_id, session_exists
    if session is None:
        latest = latest_session_id(conn)
        if latest is None:
            raise CliError("the recording has no sessions")
        return latest
    if not session_exists(conn, session):
        raise CliError(f"no session {session}; see `trackmon sessions`")
    return session


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def warn_resend(error: str) -> None:
    print(f"delivery failed, will re-send: {error}", file=sys.stderr, flush=True)


def stop_on_signals() -> asyncio.Event:
    """An event set by Ctrl-C or SIGTERM, so a sending loop can finish its batch and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


def sender_headers(args: argparse.Namespace) -> dict[str, str]:
    from app.server.auth import HeaderAuth
    headers: dict[str, str] = {}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    for spec in args.header:
        try:
            extra = HeaderAuth.parse(spec)
        except ValueError as exc:
            raise CliError(f"--header: {exc}", EXIT_USAGE) from None
        headers[extra.name] = extra.value
    return headers


def client_ssl(args: argparse.Namespace):
    import ssl
    if not args.to.startswith("https://"):
        return None
    if args.insecure:
        return False
    if args.cafile:
        try:
            return ssl.create_default_context(cafile=str(args.cafile))
        except (OSError, ssl.SSLError) as exc:
            raise CliError(f"cannot load --cafile: {exc}") from None
    return None
