"""The `trackmon` command: the desktop window by default, plus headless subcommands.

Every failure a user can cause (bad arguments, a busy port, an unreadable file) ends in one
line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import orjson

from app.core.normalize import parse_timestamp
from app.paths import data_dir, default_db

DEFAULT_PORT = 8585
HEALTH_CHECK_IDS = ("future_time", "jump", "out_of_order", "duplicate_time", "past_time", "invalid_fix",
                    "few_satellites", "high_hdop", "gap", "latency", "params_changed", "stuck")
EXIT_USAGE = 2
EXIT_FAILURE = 1


class CliError(Exception):
    """A user-facing failure: printed as one line, exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


# -- argument parsing ---------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {value}")
    return value


def _time(text: str) -> float:
    value = parse_timestamp(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"not a Unix time or ISO 8601 time: {text!r}")
    return value


def add_listener_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `record` and the desktop window: where and how to listen."""
    group = parser.add_argument_group("listener")
    group.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; "
                       "0.0.0.0 for every interface, which requires a token)")
    group.add_argument("--port", type=_port, default=None,
                       help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)")
    group.add_argument("--path", default=None, help="URL path the stream posts to (default /)")
    group.add_argument("--db", type=Path, default=None, help=f"recording file (default {default_db()})")
    group.add_argument("--token", default=None, help="require 'Authorization: Bearer TOKEN'")
    group.add_argument("--auth-header", default=None, metavar="'NAME: VALUE'",
                       help="require this exact header instead of a bearer token")
    group.add_argument("--insecure-no-token", action="store_true",
                       help="allow binding beyond loopback without any token (not recommended)")
    group.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate (chain) for HTTPS")
    group.add_argument("--tls-key", type=Path, default=None, help="PEM private key for HTTPS")
    group.add_argument("--tls-self-signed", action="store_true",
                       help="HTTPS with a self-signed certificate kept in the data directory (see `trackmon cert`)")
    group.add_argument("--max-body", type=_positive_int, default=64, metavar="MIB",
                       help="largest accepted request body in MiB, after decompression (default 64)")
    group.add_argument("--messages-path", default="", metavar="DOTTED.PATH",
                       help="where the message array sits when the body is a JSON object")
    group.add_argument("--sync", choices=("normal", "full"), default="normal",
                       help="'full' makes each commit survive a power cut too (slower)")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, subcommand by subcommand."""
    parser = argparse.ArgumentParser(
        prog="trackmon",
        description="Live monitor and recorder for flespi HTTP streams. Without a command, "
                    "opens the desktop window.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    gui = commands.add_parser("gui", help="open the desktop window (the default)")
    add_listener_options(gui)

    record = commands.add_parser("record", help="listen and record headless (no window)",
                                 description="Listen for a flespi HTTP stream and record every "
                                             "batch to SQLite, without a window.")
    add_listener_options(record)
    record.add_argument("--append", action="store_true",
                        help="record into the most recent session instead of starting a new one")
    record.add_argument("--session-name", default="", help="name for the new session")
    tunnel = record.add_argument_group("SSH reverse tunnel (reach this listener from the internet)")
    tunnel.add_argument("--ssh-tunnel", default=None, metavar="USER@HOST[:PORT]",
                        help="keep a reverse tunnel open through this SSH server (reconnects with back-off)")
    tunnel.add_argument("--ssh-remote-port", type=_port, default=8585, help="port opened on the SSH server")
    tunnel.add_argument("--ssh-remote-bind", default="", metavar="ADDRESS",
                        help="address the SSH server listens on (default: all its interfaces)")
    tunnel.add_argument("--ssh-key", type=Path, default=None, help="private key file")
    tunnel.add_argument("--ssh-password-env", default=None, metavar="VARIABLE",
                        help="read the SSH password from this environment variable (never on the command line)")
    tunnel.add_argument("--ssh-service", action="store_true",
                        help="the server is a tunnel service that prints a public URL (e.g. localhost.run)")

    simulate = commands.add_parser("simulate", help="send a simulated fleet like a flespi stream",
                                   description="Send plausible tracker messages to a listener "
                                               "exactly like a flespi HTTP stream does.")
    simulate.add_argument("--to", required=True, metavar="URL", help="listener URL")
    simulate.add_argument("--devices", type=_positive_int, default=10)
    simulate.add_argument("--batch", type=_positive_int, default=100,
                          help="messages per request at most, like limit_messages (default 100)")
    simulate.add_argument("--rate", type=_non_negative_float, default=1.0,
                          help="messages per second over the fleet; 0 = as fast as acknowledged")
    simulate.add_argument("--count", type=_positive_int, default=None, help="stop after N messages")
    simulate.add_argument("--duration", type=_non_negative_float, default=None, help="stop after S seconds")
    simulate.add_argument("--nested", action="store_true", help="nested JSON like a convert_message mapping")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--interval", type=_non_negative_float, default=5.0,
                          help="seconds between a device's messages with --rate 0 (default 5)")
    simulate.add_argument("--start", type=_time, default=None, help="timestamp of the first message")
    simulate.add_argument("--backfill", type=_non_negative_float, default=0.0, metavar="SECONDS",
                          help="with --rate: first send this much history at once, then continue live")
    simulate.add_argument("--bad-fix-rate", type=_non_negative_float, default=0.01)
    simulate.add_argument("--token", default=None, help="send 'Authorization: Bearer TOKEN'")
    simulate.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                          help="extra header (repeatable)")
    simulate.add_argument("--cafile", type=Path, default=None, help="CA/certificate to trust for HTTPS")
    simulate.add_argument("--insecure", action="store_true", help="do not verify HTTPS certificates")
    simulate.add_argument("--max-attempts", type=_positive_int, default=None,
                          help="give up on a batch after N attempts (default: keep trying, like flespi)")

    export = commands.add_parser("export", help="export a session to GPX, CSV, KML or GeoJSON",
                                 description="Export recorded tracks. Streams: memory stays flat however "
                                             "large the session.")
    export.add_argument("--db", type=Path, default=None)
    export.add_argument("--format", required=True, choices=("gpx", "csv", "kml", "geojson"))
    export.add_argument("--session", type=int, default=None, help="session id (default: the most recent)")
    export.add_argument("--device", action="append", default=None, metavar="IDENT",
                        help="only this device (repeatable)")
    export.add_argument("--from", dest="t_from", type=_time, default=None, metavar="TIME", help="Unix or ISO 8601 time")
    export.add_argument("--to", dest="t_to", type=_time, default=None, metavar="TIME")
    fixes = export.add_mutually_exclusive_group()
    fixes.add_argument("--all-fixes", action="store_true",
                       help="include flagged positions (0/0, valid=false...); default for CSV")
    fixes.add_argument("--valid-only", action="store_true", help="only usable fixes; default for GPX, KML, GeoJSON")
    export.add_argument("--param", action="append", default=[], metavar="KEY",
                        help="CSV: add this parameter as a column (repeatable)")
    export.add_argument("--all-params", action="store_true", help="CSV: every parameter as a column (sorted)")
    export.add_argument("--points", action="store_true", help="GeoJSON: a Point feature per message too")
    export.add_argument("--where", default=None, metavar="EXPR",
                        help="only messages matching, e.g. 'position.speed > 100 and exists(alarm.event.trigger)'")
    export.add_argument("--gap", type=_non_negative_float, default=300.0, metavar="SECONDS",
                        help="GPX: start a new track segment after a gap this long (default 300)")
    export.add_argument("-o", "--output", required=True, help="file to write ('-' for standard output)")

    replay = commands.add_parser("replay", help="re-send a recorded session like a flespi stream",
                                 description="Send a recorded session to a listener (another server, another "
                                             "trackmon) with flespi's rules: one request in flight, re-send until 200.")
    replay.add_argument("--db", type=Path, default=None)
    replay.add_argument("--session", type=int, default=None, help="session id (default: the most recent)")
    replay.add_argument("--to", required=True, metavar="URL")
    replay.add_argument("--speed", default="1", help="time factor (1, 2, 10, 600...) or 'max' (default 1)")
    replay.add_argument("--batch", type=_positive_int, default=1000, help="messages per request at most")
    replay.add_argument("--token", default=None, help="send 'Authorization: Bearer TOKEN'")
    replay.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'")
    replay.add_argument("--cafile", type=Path, default=None)
    replay.add_argument("--insecure", action="store_true")

    imp = commands.add_parser("import", help="import a GPX or CSV file as a new session")
    imp.add_argument("file", type=Path, help=".gpx (from any tool) or .csv (as trackmon exports it)")
    imp.add_argument("--db", type=Path, default=None)
    imp.add_argument("--name", default="", help="session name (default: 'import <file>')")

    check = commands.add_parser("check", help="health report per device; non-zero exit when chosen checks fail",
                                description="Check recorded trackers: reporting interval, latency, clock, fixes, "
                                            "jumps, gaps, changing and stuck parameters.")
    check.add_argument("--db", type=Path, default=None)
    check.add_argument("--session", type=int, default=None, help="session id (default: the most recent)")
    check.add_argument("--device", action="append", default=None, metavar="IDENT")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument("--fail-on", action="append", default=[], metavar="CHECK",
                       help="exit 3 when this check fires (repeatable; 'errors' = any error, 'warnings' = any "
                            "warning or error); checks: " + ", ".join(sorted(HEALTH_CHECK_IDS)))
    check.add_argument("--jump-kmh", type=_non_negative_float, default=None, help="implied speed that is a jump")
    check.add_argument("--gap-factor", type=_non_negative_float, default=None,
                       help="a gap is this many usual intervals (default 5)")
    check.add_argument("--min-satellites", type=_non_negative_float, default=None)
    check.add_argument("--max-hdop", type=_non_negative_float, default=None)
    check.add_argument("--latency", type=_non_negative_float, default=None, metavar="SECONDS",
                       help="server.timestamp - timestamp above this is late (default 60)")

    cert = commands.add_parser("cert", help="the self-signed HTTPS certificate: show, export, regenerate",
                               description="Manage the self-signed certificate used by --tls-self-signed.")
    cert.add_argument("--export", type=Path, default=None, metavar="PATH",
                      help="copy the certificate (not the key) here, e.g. for flespi's private CA field")
    cert.add_argument("--regenerate", action="store_true", help="make a new key and certificate")

    sessions = commands.add_parser("sessions", help="list recorded sessions")
    sessions.add_argument("--db", type=Path, default=None)
    sessions.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


# -- commands -------------------------------------------------------------------------------
def _listener_setup(args: argparse.Namespace):
    """Validate listener options into (host, port, ListenerConfig, ssl_context)."""
    from app.server.auth import HeaderAuth
    from app.server.listener import ListenerConfig
    from app.server.service import server_ssl_context

    host = args.host or "127.0.0.1"
    port = DEFAULT_PORT if args.port is None else args.port
    auth = None
    if args.token and args.auth_header:
        raise CliError("use either --token or --auth-header, not both", EXIT_USAGE)
    if args.token:
        auth = HeaderAuth.bearer(args.token)
    elif args.auth_header:
        try:
            auth = HeaderAuth.parse(args.auth_header)
        except ValueError as exc:
            raise CliError(f"--auth-header: {exc}", EXIT_USAGE) from None
    if auth is None and not _is_loopback(host) and not args.insecure_no_token:
        raise CliError(f"refusing to listen on {host} without a token: anyone on the network "
                       "could write to your recording. Pass --token (or --insecure-no-token).",
                       EXIT_USAGE)
    try:
        config = ListenerConfig(path=args.path or "/", auth=auth,
                                max_body=args.max_body * 1024 * 1024,
                                messages_path=args.messages_path)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    ssl_context = None
    if args.tls_self_signed and (args.tls_cert or args.tls_key):
        raise CliError("use either --tls-self-signed or --tls-cert/--tls-key", EXIT_USAGE)
    if args.tls_self_signed:
        from app.server.addresses import interface_addresses
        from app.server.tls import make_self_signed
        args.tls_cert, args.tls_key = make_self_signed(data_dir(), hosts=interface_addresses())
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise CliError("HTTPS needs both --tls-cert and --tls-key", EXIT_USAGE)
        try:
            ssl_context = server_ssl_context(args.tls_cert, args.tls_key)
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot load TLS certificate/key: {exc}") from None
    return host, port, config, ssl_context


def _tunnel_setup(args: argparse.Namespace):
    """The SSH tunnel `record` should keep open, or None; bad options are usage errors."""
    if not args.ssh_tunnel:
        return None
    from app.server.tunnels import SshTunnelConfig
    try:
        user, host, port = SshTunnelConfig.parse_target(args.ssh_tunnel)
    except ValueError as exc:
        raise CliError(f"--ssh-tunnel: {exc}", EXIT_USAGE) from None
    password = None
    if args.ssh_password_env:
        password = os.environ.get(args.ssh_password_env)
        if password is None:
            raise CliError(f"--ssh-password-env: the variable {args.ssh_password_env} is not set", EXIT_USAGE)
    if args.ssh_key and not args.ssh_key.is_file():
        raise CliError(f"--ssh-key: no such file {args.ssh_key}", EXIT_USAGE)
    return SshTunnelConfig(host=host, port=port, username=user, password=password,
                           key_path=str(args.ssh_key) if args.ssh_key else None, local_port=0,
                           remote_port=args.ssh_remote_port, remote_bind=args.ssh_remote_bind,
                           announce=args.ssh_service, known_hosts=data_dir() / "known_hosts")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _open_recorder(db: Path, sync_full: bool):
    from app.store.recorder import Recorder, RecordingInUse
    from app.store.schema import SchemaTooNew
    try:
        return Recorder(db, sync_full=sync_full)
    except (SchemaTooNew, RecordingInUse) as exc:
        raise CliError(str(exc)) from None
    except (sqlite3.Error, OSError) as exc:
        raise CliError(f"cannot open recording {db}: {exc}") from None


def cmd_record(args: argparse.Namespace) -> int:
    """Listen and record until interrupted (Ctrl-C or SIGTERM)."""
    from app.server.listener import Listener, RequestEvent
    from app.server.service import ListenerService, PortInUse

    host, port, config, ssl_context = _listener_setup(args)
    tunnel_config = _tunnel_setup(args)
    db = args.db or default_db()
    recorder = _open_recorder(db, args.sync == "full")
    session = recorder.start_session(args.session_name, append=args.append)
    listener = Listener(recorder, config)

    def report(event: RequestEvent) -> None:
        if event.status != 200:
            print(f"rejected {event.status} from {event.peer}: {event.reason}", file=sys.stderr,
                  flush=True)

    listener.on_request(report)
    service = ListenerService(listener, host, port, ssl_context=ssl_context)

    async def serve() -> None:
        stop = _stop_on_signals()
        try:
            urls = await service.start()
        except PortInUse as exc:
            raise CliError(str(exc)) from None
        print(f"recording session {session} to {db}", flush=True)
        if args.tls_cert:
            from app.server.tls import fingerprint
            print(f"HTTPS certificate {args.tls_cert}, SHA-256 {fingerprint(Path(args.tls_cert))}", flush=True)
        for url in urls:
            print(f"listening on {url}", flush=True)
        tunnel_task = None
        if tunnel_config is not None:
            from app.server.tunnels import SshTunnel, TunnelState

            def tunnel_changed(state: TunnelState) -> None:
                url = f", public URL {state.public_url.rstrip('/')}{config.path}" if state.public_url else ""
                print(f"tunnel {state.state}{': ' + state.detail if state.detail else ''}{url}", flush=True)

            tunnel_config.local_port = service.port or port
            tunnel = SshTunnel(tunnel_config, tunnel_changed)
            tunnel_task = asyncio.ensure_future(tunnel.run())
        last = None
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=5.0)
            except TimeoutError:
                figures = (listener.stats.messages, listener.stats.rejects, listener.stats.retries)
                if figures != last:
                    print(f"{figures[0]} messages in {listener.stats.batches} batches, "
                          f"{figures[2]} re-sent, {figures[1]} rejected", flush=True)
                    last = figures
        if tunnel_task is not None:
            tunnel.stop()
            await asyncio.wait_for(tunnel_task, 10)
        await service.stop()

    try:
        asyncio.run(serve())
    finally:
        recorder.close()
    stats = listener.stats
    print(f"stopped: {stats.messages} messages in {stats.batches} batches, {stats.retries} "
          f"re-sent, {stats.rejects} rejected", flush=True)
    return 0


def _client_ssl(args: argparse.Namespace):
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


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run the emulator against a listener and print what was delivered."""
    from app.server.emulator import EmulatorOptions, run_emulator
    from app.server.stream_client import GiveUp, StreamSender

    if not args.to.startswith(("http://", "https://")):
        raise CliError(f"--to must be an http:// or https:// URL, got {args.to!r}", EXIT_USAGE)
    if args.count is None and args.duration is None and args.rate == 0:
        raise CliError("--rate 0 sends as fast as possible: give --count or --duration", EXIT_USAGE)
    headers = _sender_headers(args)
    options = EmulatorOptions(devices=args.devices, batch=args.batch, rate=args.rate,
                              count=args.count, duration=args.duration, nested=args.nested,
                              seed=args.seed, interval=args.interval or 5.0, start=args.start,
                              bad_fix_rate=args.bad_fix_rate, backfill=args.backfill, headers=headers)
    ssl_context = _client_ssl(args)

    async def run() -> None:
        stop = _stop_on_signals()
        async with StreamSender(args.to, headers, ssl_context=ssl_context, on_error=_warn_resend,
                                max_attempts=args.max_attempts) as sender:
            started = time.perf_counter()
            try:
                stats = await run_emulator(sender, options, stop)
            except GiveUp as exc:
                raise CliError(str(exc)) from None
            elapsed = time.perf_counter() - started
        print(f"sent {stats.messages} messages in {stats.batches} batches to {args.to} in "
              f"{elapsed:.1f} s ({stats.retries} re-sends)", flush=True)

    asyncio.run(run())
    return 0


def _fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def cmd_sessions(args: argparse.Namespace) -> int:
    """Print the sessions of a recording file."""
    from app.store.queries import list_sessions

    db, conn = _open_readonly(args.db)
    try:
        sessions = list_sessions(conn)
    except sqlite3.Error as exc:
        raise CliError(f"cannot read {db}: {exc}") from None
    finally:
        conn.close()
    if args.json:
        print(orjson.dumps([asdict(s) for s in sessions], option=orjson.OPT_INDENT_2).decode())
        return 0
    if not sessions:
        print(f"no sessions in {db}")
        return 0
    header = (f"{'id':>4}  {'name':<16} {'devices':>7} {'messages':>9} {'re-sent':>7} {'rejects':>7}  "
              f"{'first (UTC)':<19}  {'last (UTC)':<19}  state")
    print(header)
    for s in sessions:
        state = "recording/interrupted" if s.ended_at is None else "closed"
        print(f"{s.id:>4}  {s.name[:16]:<16} {s.devices:>7} {s.messages:>9} {s.retries:>7} "
              f"{s.rejects:>7}  {_fmt_time(s.first_ts):<19}  {_fmt_time(s.last_ts):<19}  {state}")
    return 0


def _open_readonly(db: Path | None):
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


def _pick_session(conn, session: int | None) -> int:
    from app.store.queries import latest_session_id, session_exists
    if session is None:
        latest = latest_session_id(conn)
        if latest is None:
            raise CliError("the recording has no sessions")
        return latest
    if not session_exists(conn, session):
        raise CliError(f"no session {session}; see `trackmon sessions`")
    return session


def cmd_export(args: argparse.Namespace) -> int:
    """Export a session, with a progress bar on a terminal."""
    from tqdm import tqdm

    from app.store.exporters import collect_param_keys, run_export
    from app.store.points import PointFilter

    if (args.param or args.all_params) and args.format != "csv":
        raise CliError("--param and --all-params apply to --format csv", EXIT_USAGE)
    if args.points and args.format != "geojson":
        raise CliError("--points applies to --format geojson", EXIT_USAGE)
    where = None
    if args.where is not None:
        from app.core.filters import FilterError, compile_filter
        try:
            where = compile_filter(args.where)
        except FilterError as exc:
            raise CliError(f"--where: {exc}", EXIT_USAGE) from None
    db, conn = _open_readonly(args.db)
    try:
        session = _pick_session(conn, args.session)
        valid_only = args.valid_only or (args.format != "csv" and not args.all_fixes)
        f = PointFilter(session, tuple(args.device) if args.device else None, args.t_from, args.t_to, valid_only)
        params = list(args.param)
        if args.all_params:
            params = collect_param_keys(conn, f)
        to_stdout = args.output == "-"
        show = sys.stderr.isatty() and not to_stdout
        bar = tqdm(total=0, unit=" msg", unit_scale=True, disable=not show, file=sys.stderr, desc=args.format)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            out = sys.stdout if to_stdout else open(args.output, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise CliError(f"cannot write {args.output}: {exc}") from None
        try:
            exporter = run_export(conn, args.format, f, out, title=f"{db.stem} session {session}", params=params,
                                  points=args.points, gap=args.gap, where=where, progress=progress)
        finally:
            if not to_stdout:
                out.close()
            bar.close()
    finally:
        conn.close()
    if not to_stdout:
        skipped = f", {exporter.skipped} without a position skipped" if exporter.skipped else ""
        print(f"wrote {exporter.written} points of session {session} to {args.output}{skipped}", file=sys.stderr)
    return 0


def _warn_resend(error: str) -> None:
    print(f"delivery failed, will re-send: {error}", file=sys.stderr, flush=True)


def _stop_on_signals() -> asyncio.Event:
    """An event set by Ctrl-C or SIGTERM, so a sending loop can finish its batch and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


def _sender_headers(args: argparse.Namespace) -> dict[str, str]:
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


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-send a recorded session to a listener."""
    from app.server.replay_sender import replay_session
    from app.server.stream_client import StreamSender

    if not args.to.startswith(("http://", "https://")):
        raise CliError(f"--to must be an http:// or https:// URL, got {args.to!r}", EXIT_USAGE)
    try:
        speed = None if args.speed == "max" else float(args.speed)
    except ValueError:
        raise CliError(f"--speed takes a number or 'max', got {args.speed!r}", EXIT_USAGE) from None
    if speed is not None and not speed > 0:
        raise CliError("--speed must be positive", EXIT_USAGE)
    headers = _sender_headers(args)
    ssl_context = _client_ssl(args)
    _db, conn = _open_readonly(args.db)
    session = _pick_session(conn, args.session)

    async def run() -> None:
        stop = _stop_on_signals()
        async with StreamSender(args.to, headers, ssl_context=ssl_context, on_error=_warn_resend) as sender:
            started = time.perf_counter()
            stats = await replay_session(conn, session, sender, batch=args.batch, speed=speed, stop=stop)
        print(f"replayed {stats.messages} messages of session {session} in {stats.batches} batches to {args.to} "
              f"in {time.perf_counter() - started:.1f} s ({stats.retries} re-sends)", flush=True)

    try:
        asyncio.run(run())
    finally:
        conn.close()
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Import a file into a new session."""
    from app.store.importers import ImportError_, import_file

    if not args.file.is_file():
        raise CliError(f"no such file: {args.file}")
    db = args.db or default_db()
    _open_recorder(db, False).close()  # same one-line errors as `record` for a busy or foreign file
    try:
        session, count = import_file(db, args.file, args.name)
    except ImportError_ as exc:
        raise CliError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {args.file}: {exc}") from None
    print(f"imported {count} points from {args.file} into session {session} of {db}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Health report of a session; exit 3 when a --fail-on check fired."""
    from dataclasses import replace as with_changes

    from app.core.display import utc_text
    from app.core.health import CHECKS, ERROR, SEVERITY_NAMES, WARN, HealthMonitor, HealthThresholds
    from app.store.queries import iter_messages

    unknown = [c for c in args.fail_on if c not in CHECKS and c not in ("errors", "warnings")]
    if unknown:
        raise CliError(f"unknown check {unknown[0]!r}; choose from {', '.join(sorted(CHECKS))}, errors, warnings",
                       EXIT_USAGE)
    overrides = {name: value for name, value in (("jump_kmh", args.jump_kmh), ("gap_factor", args.gap_factor),
                                                 ("min_satellites", args.min_satellites),
                                                 ("max_hdop", args.max_hdop), ("latency_s", args.latency))
                 if value is not None}
    monitor = HealthMonitor(with_changes(HealthThresholds(), **overrides))
    _db, conn = _open_readonly(args.db)
    try:
        session = _pick_session(conn, args.session)
        wanted = set(args.device) if args.device else None
        names: dict[str, str] = {}
        for stored in iter_messages(conn, session):
            m = stored.message
            if wanted is None or m.ident in wanted:
                monitor.add(m, stored.received_at, (stored.batch_id, stored.index))
                name = m.params.get("device.name")
                if name is not None:
                    names[m.ident] = str(name)
    finally:
        conn.close()
    if wanted and not wanted & set(monitor.devices):
        raise CliError(f"no messages from {', '.join(sorted(wanted))} in session {session}")
    reports = {ident: device.report() for ident, device in sorted(monitor.devices.items())}
    failed = sorted({check for ident, device in monitor.devices.items() for check in device.counts()
                     if check in args.fail_on or ("errors" in args.fail_on and CHECKS[check][1] >= ERROR)
                     or ("warnings" in args.fail_on and CHECKS[check][1] >= WARN)})
    if args.json:
        print(orjson.dumps({"session": session, "devices": reports, "failed": failed},
                           option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())
    else:
        for ident, report in reports.items():
            interval = report["interval"]["median_s"]
            title = f"{names[ident]} ({ident or '(no ident)'})" if names.get(ident) else (ident or "(no ident)")
            print(f"{title}: {report['messages']} messages, usual interval "
                  f"{'-' if interval is None else f'{interval:g} s'}, health: {report['worst']}")
            for check, finding in report["findings"].items():
                latest = finding["latest"][-1] if finding["latest"] else None
                example = f" — latest {utc_text(latest['ts'])} UTC {latest['detail']}".rstrip() if latest else ""
                print(f"  {SEVERITY_NAMES[CHECKS[check][1]]:>7}  {finding['label']}: {finding['count']}{example}")
            if report["stuck"]:
                print(f"           stuck: {', '.join(report['stuck'])}")
        if failed:
            print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 3 if failed else 0


def cmd_cert(args: argparse.Namespace) -> int:
    """Show (making it if needed), export or regenerate the self-signed certificate."""
    from app.server.addresses import interface_addresses
    from app.server.tls import certificate_names, export_certificate, fingerprint, make_self_signed

    try:
        cert_path, _key = make_self_signed(data_dir(), hosts=interface_addresses(), regenerate=args.regenerate)
        if args.export:
            export_certificate(cert_path, args.export)
    except OSError as exc:
        raise CliError(f"certificate: {exc}") from None
    print(f"certificate: {cert_path}")
    print(f"SHA-256:     {fingerprint(cert_path)}")
    print(f"valid for:   {', '.join(certificate_names(cert_path))}")
    if args.export:
        print(f"exported to: {args.export}")
    return 0


def cmd_gui(args: argparse.Namespace) -> int:
    """Open the desktop window."""
    from app.ui.launch import launch
    return launch(args)


COMMANDS = {"record": cmd_record, "simulate": cmd_simulate, "sessions": cmd_sessions,
            "export": cmd_export, "import": cmd_import, "replay": cmd_replay, "cert": cmd_cert, "check": cmd_check,
            "gui": cmd_gui}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `trackmon` console script and `python -m app`."""
    parser = build_parser()
    words = list(argv if argv is not None else sys.argv[1:])
    # No command means the window: `trackmon --port 9000` is `trackmon gui --port 9000`.
    first = next((i for i, word in enumerate(words) if word not in ("-v", "--verbose")), len(words))
    if first == len(words) or (words[first].startswith("-") and words[first] not in ("-h", "--help")):
        words.insert(first, "gui")
    args = parser.parse_args(words)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        print(f"trackmon: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `trackmon check | head`: the reader left, stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps Python's exit flush from failing again
        return 141
