"""`trackmon flespi setup|status` and `trackmon pull`: the flespi stream and stored history from
scripts and CI. The flespi token comes only from the FLESPI_TOKEN environment variable (an
argument would show in the process list); ``--api`` points elsewhere (the tests: a stand-in)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from app.cli.common import EXIT_USAGE, CliError, time_value
from app.paths import default_db
from app.server.flespi_api import DEFAULT_API, FLESPI_TOKEN_ENV, FlespiClient, FlespiError, check_selector

#: `flespi status` exits with this when flespi's stream log shows deliveries failing.
EXIT_STREAM_FAILING = 3


def _selector(text: str) -> str:
    try:
        return check_selector(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_flespi_commands(commands: argparse._SubParsersAction) -> None:
    """Register `flespi` (setup, status) and `pull` on the main parser."""
    epilog = (f"The flespi token is read from the {FLESPI_TOKEN_ENV} environment variable only "
              "(never an argument: other local users can read the process list).")
    flespi = commands.add_parser("flespi", help="set up and watch the flespi HTTP stream", epilog=epilog,
                                 description="Create or update the flespi HTTP stream that feeds a listener, "
                                             "subscribe it, and read its health, through flespi's REST API.")
    actions = flespi.add_subparsers(dest="flespi_command", metavar="ACTION", required=True)
    setup = actions.add_parser("setup", help="create or update the stream and subscribe it", epilog=epilog)
    setup.add_argument("--uri", required=True, metavar="URL", help="the listener's public URL (the stream's URI)")
    setup.add_argument("--listener-token", required=True, metavar="T",
                       help="the listener's bearer token: the stream sends 'Authorization: Bearer T'")
    setup.add_argument("--name", default="trackmon", help="stream name (default trackmon)")
    setup.add_argument("--limit-messages", type=int, default=None, metavar="N",
                       help="most messages per POST (default: flespi's, or what the stream has)")
    setup.add_argument("--validate-message", default=None, metavar="EXPR",
                       help="flespi expression: only messages matching it are sent, e.g. "
                            "\"exists('position.latitude')\"")
    setup.add_argument("--ca-file", type=Path, default=None, metavar="PEM",
                       help="private CA flespi should trust for the URI (e.g. from `trackmon cert --export`)")
    for kind in ("device", "channel", "group"):
        setup.add_argument(f"--{kind}", action="append", default=[], type=_selector, metavar="SEL",
                           help=f"subscribe the stream to this {kind} selector: id(s), field=value or "
                                "{expression} (repeatable)")
    status = actions.add_parser("status", help="the stream's state and recent delivery errors", epilog=epilog)
    which = status.add_mutually_exclusive_group()
    which.add_argument("--name", default="trackmon", help="the http stream's name (default trackmon)")
    which.add_argument("--stream", type=int, default=None, metavar="ID", help="the stream's id")
    for parser in (setup, status):
        parser.add_argument("--api", default=DEFAULT_API, metavar="URL",
                            help=f"flespi REST API (default {DEFAULT_API})")

    pull = commands.add_parser("pull", help="record devices' stored messages from flespi", epilog=epilog,
                               description="Pull devices' messages stored in flespi into a new session (all or "
                                           "nothing); messages the recording already holds are stored once.")
    pull.add_argument("--device", action="append", required=True, type=_selector, metavar="SEL",
                      help="device selector: id(s), configuration.ident=IMEI or {expression} (repeatable)")
    pull.add_argument("--from", dest="t_from", required=True, type=time_value, metavar="TIME",
                      help="start, Unix or ISO 8601 time")
    pull.add_argument("--to", dest="t_to", required=True, type=time_value, metavar="TIME", help="end")
    pull.add_argument("--db", type=Path, default=None, help=f"recording file (default {default_db()})")
    pull.add_argument("--name", default="", help="session name (default: 'flespi pull <devices>')")
    pull.add_argument("--append", action="store_true",
                      help="record into the most recent session instead of a new one (fills a gap)")
    pull.add_argument("--api", default=DEFAULT_API, metavar="URL", help=f"flespi REST API (default {DEFAULT_API})")


def flespi_token() -> str:
    """The token from FLESPI_TOKEN, or a clear error (exit 2)."""
    token = os.environ.get(FLESPI_TOKEN_ENV, "").strip()
    if not token:
        raise CliError(f"set the {FLESPI_TOKEN_ENV} environment variable to a flespi token (it is never taken as "
                       "an argument); make one in the flespi panel under Tokens", EXIT_USAGE)
    return token


def cmd_flespi(args: argparse.Namespace) -> int:
    """`trackmon flespi setup|status`."""
    token = flespi_token()
    if args.flespi_command == "setup":
        return asyncio.run(_setup(args, token))
    return asyncio.run(_status(args, token))


async def _setup(args: argparse.Namespace, token: str) -> int:
    from app.server.flespi_stream import StreamSpec, set_up_stream

    if not args.uri.startswith(("http://", "https://")):
        raise CliError("--uri must start with http:// or https://", EXIT_USAGE)
    if args.limit_messages is not None and args.limit_messages < 1:
        raise CliError("--limit-messages must be at least 1", EXIT_USAGE)
    ca_pem = None
    if args.ca_file is not None:
        try:
            ca_pem = args.ca_file.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"--ca-file: cannot read {args.ca_file}: {exc}", EXIT_USAGE) from None
        if "BEGIN CERTIFICATE" not in ca_pem:
            raise CliError(f"--ca-file: {args.ca_file} holds no PEM certificate", EXIT_USAGE)
    spec = StreamSpec(args.name, args.uri, {"Authorization": f"Bearer {args.listener_token}"},
                      limit_messages=args.limit_messages, ca_pem=ca_pem, validate_message=args.validate_message)
    subscriptions = {"devices": args.device, "channels": args.channel, "groups": args.group}
    try:
        async with FlespiClient(token, args.api) as client:
            result = await set_up_stream(client, spec, subscriptions)
    except (FlespiError, ValueError) as exc:
        raise CliError(f"flespi: {exc}") from None
    print(f"stream {result.stream_id}")
    for line in result.lines():
        print(line)
    if not result.subscribed:
        print("not subscribed to anything: flespi sends nothing until it is (--device, --channel, --group)")
    return 0


async def _status(args: argparse.Namespace, token: str) -> int:
    from app.core.display import utc_text
    from app.server.flespi_health import fetch_health, locate_stream

    try:
        async with FlespiClient(token, args.api) as client:
            stream_id = args.stream if args.stream is not None else await locate_stream(client, args.name)
            health = await fetch_health(client, stream_id)
    except FlespiError as exc:
        raise CliError(f"flespi: {exc}") from None
    print(health.summary())
    if health.errors:
        print("recent delivery errors (flespi's stream log, newest first):")
        for error in health.errors:
            print(f"  {utc_text(error.at)}  {error.text}")
    else:
        print("no delivery errors in flespi's recent stream log")
    return EXIT_STREAM_FAILING if health.level == "error" else 0


def cmd_pull(args: argparse.Namespace) -> int:
    """`trackmon pull`: devices' stored messages into a new session (or the latest with --append)."""
    from app.cli.listen import open_recorder

    token = flespi_token()
    if args.t_to < args.t_from:
        raise CliError("--to is before --from", EXIT_USAGE)
    db = args.db or default_db()
    recorder = open_recorder(db, False)
    try:
        return asyncio.run(_pull(args, token, recorder, db))
    finally:
        recorder.close()


async def _pull(args: argparse.Namespace, token: str, recorder, db: Path) -> int:
    from app.server.flespi_pull import PullProgress, pull, resolve_devices
    from app.store.faults import RecordingUnavailable

    def progress(step: PullProgress) -> None:
        print(f"\r{step.fraction:4.0%}  {step.messages:,} messages", end="", file=sys.stderr, flush=True)

    try:
        async with FlespiClient(token, args.api) as client:
            devices = await resolve_devices(client, args.device)
            name = None
            if not args.append:
                name = args.name or "flespi pull " + ", ".join(d.name or str(d.id) for d in devices[:3])
            else:
                recorder.start_session(append=True)
            summary = await pull(client, recorder, devices, args.t_from, args.t_to, session_name=name,
                                 progress=progress if sys.stderr.isatty() else None)
    except (FlespiError, RecordingUnavailable) as exc:
        kept = "" if args.append else " (nothing was recorded)"
        raise CliError(f"flespi pull failed: {exc}{kept}") from None
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(summary.text())
    print(f"({', '.join(summary.devices)}; {summary.pages} pages; recording {db})")
    return 0
