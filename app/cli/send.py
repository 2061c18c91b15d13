"""Commands that send like a flespi stream: `simulate` and `replay`."""

from __future__ import annotations

import argparse
import asyncio
import time

from app.cli.common import (
    EXIT_USAGE,
    CliError,
    client_ssl,
    open_readonly,
    pick_session,
    sender_headers,
    stop_on_signals,
    warn_resend,
)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run the emulator against a listener and print what was delivered."""
    from app.server.emulator import EmulatorOptions, run_emulator
    from app.server.stream_client import GiveUp, StreamSender

    if not args.to.startswith(("http://", "https://")):
        raise CliError(f"--to must be an http:// or https:// URL, got {args.to!r}", EXIT_USAGE)
    if args.count is None and args.duration is None and args.rate == 0:
        raise CliError("--rate 0 sends as fast as possible: give --count or --duration", EXIT_USAGE)
    headers = sender_headers(args)
    options = EmulatorOptions(devices=args.devices, batch=args.batch, rate=args.rate,
                              count=args.count, duration=args.duration, nested=args.nested,
                              seed=args.seed, interval=args.interval or 5.0, start=args.start,
                              bad_fix_rate=args.bad_fix_rate, backfill=args.backfill, headers=headers,
                              buffered_rate=args.buffered_rate, recut=not args.same_retries)
    ssl_context = client_ssl(args)

    async def run() -> None:
        stop = stop_on_signals()
        async with StreamSender(args.to, headers, ssl_context=ssl_context, on_error=warn_resend,
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
    headers = sender_headers(args)
    ssl_context = client_ssl(args)
    _db, conn = open_readonly(args.db)
    session = pick_session(conn, args.session)

    async def run() -> None:
        stop = stop_on_signals()
        async with StreamSender(args.to, headers, ssl_context=ssl_context, on_error=warn_resend) as sender:
            started = time.perf_counter()
            stats = await replay_session(conn, session, sender, batch=args.batch, speed=speed, stop=stop)
        print(f"replayed {stats.messages} messages of session {session} in {stats.batches} batches to {args.to} "
              f"in {time.perf_counter() - started:.1f} s ({stats.retries} re-sends)", flush=True)

    try:
        asyncio.run(run())
    finally:
        conn.close()
    return 0
