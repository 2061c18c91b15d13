"""Commands that listen: `record`, `gui` (the window), and `cert` for HTTPS."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sqlite3
import sys
from pathlib import Path

from app.cli.common import (
    DEFAULT_PORT,
    EXIT_USAGE,
    CliError,
    resolve_mqtt_token,
    resolve_token,
    stop_on_signals,
)
from app.paths import data_dir, default_db


def listener_setup(args: argparse.Namespace):
    """Validate listener options into (host, port, ListenerConfig, ssl_context)."""
    from app.server.auth import HeaderAuth
    from app.server.limits import Limits
    from app.server.listener import ListenerConfig
    from app.server.service import server_ssl_context

    resolve_token(args)
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
                                messages_path=args.messages_path, limits=_limits(args, Limits()),
                                accept_stuck=getattr(args, "accept_stuck_batches", False))
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


#: `Limits` fields that `record` has an option for (same names).
LIMIT_OPTIONS = ("max_messages", "max_depth", "max_connections", "header_timeout", "body_timeout",
                 "keepalive_timeout")


def _limits(args: argparse.Namespace, defaults):
    """Limits from `record`'s options (the window has none: defaults)."""
    from dataclasses import replace
    return replace(defaults, **{name: getattr(args, name) for name in LIMIT_OPTIONS if hasattr(args, name)})


def tunnel_setup(args: argparse.Namespace):
    """The SSH tunnel `record` should keep open, or None; bad options are usage errors."""
    if not args.ssh_tunnel:
        return None
    if not (args.token or args.auth_header) and not args.insecure_no_token:
        raise CliError("refusing to open an SSH tunnel without a token: its far end listens publicly, so "
                       "anyone could write to your recording. Pass --token-file (or --token, or "
                       "--insecure-no-token).", EXIT_USAGE)
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


def mqtt_setup(args: argparse.Namespace, db: Path):
    """The MQTT source's configuration from `record`'s options, or None without --mqtt."""
    if not args.mqtt:
        if args.mqtt_topic or args.mqtt_token_file or args.mqtt_cafile or args.mqtt_client_id:
            raise CliError("--mqtt-topic, --mqtt-token-file, --mqtt-cafile and --mqtt-client-id need --mqtt URL",
                           EXIT_USAGE)
        if args.no_listen:
            raise CliError("--no-listen leaves nothing to record from: add --mqtt URL", EXIT_USAGE)
        return None
    from app.server.mqtt_config import FLESPI_ALL_DEVICES, MqttConfig, default_client_id, parse_broker_url
    try:
        broker = parse_broker_url(args.mqtt)
    except ValueError as exc:
        raise CliError(f"--mqtt: {exc}", EXIT_USAGE) from None
    if args.mqtt_cafile is not None and not args.mqtt_cafile.is_file():
        raise CliError(f"--mqtt-cafile: no such file {args.mqtt_cafile}", EXIT_USAGE)
    if args.mqtt_cafile is not None and not broker.tls:
        raise CliError("--mqtt-cafile is for mqtts:// brokers", EXIT_USAGE)
    try:
        return MqttConfig(broker, tuple(args.mqtt_topic or [FLESPI_ALL_DEVICES]), token=resolve_mqtt_token(args),
                          cafile=args.mqtt_cafile, client_id=args.mqtt_client_id or default_client_id(db))
    except ValueError as exc:
        raise CliError(f"--mqtt-topic: {exc}", EXIT_USAGE) from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_recorder(db: Path, sync_full: bool, derive_elsewhere: bool = False):
    """The recorder for a command (``derive_elsewhere``: track chunks derived by a second
    process, for `record`), or a one-line CLI error."""
    from app.store.recorder import Recorder, RecordingInUse
    from app.store.schema import SchemaTooNew
    try:
        return Recorder(db, sync_full=sync_full, derive_elsewhere=derive_elsewhere)
    except (SchemaTooNew, RecordingInUse) as exc:
        raise CliError(str(exc)) from None
    except (sqlite3.Error, OSError) as exc:
        raise CliError(f"cannot open recording {db}: {exc}") from None


def cmd_record(args: argparse.Namespace) -> int:
    """Listen (and/or subscribe to an MQTT broker) and record until interrupted (Ctrl-C or SIGTERM)."""
    from app.server.listener import Listener, RequestEvent
    from app.server.service import ListenerService, PortInUse

    host, port, config, ssl_context = listener_setup(args)
    tunnel_config = tunnel_setup(args)
    db = args.db or default_db()
    mqtt_config = mqtt_setup(args, db)
    if args.no_listen and tunnel_config is not None:
        raise CliError("--ssh-tunnel forwards to the HTTP listener: drop --no-listen", EXIT_USAGE)
    recorder = open_recorder(db, args.sync == "full", derive_elsewhere=True)
    session = recorder.start_session(args.session_name, append=args.append)
    listener = Listener(recorder, config)

    def report(event: RequestEvent) -> None:
        if event.status != 200:
            print(f"rejected {event.status} from {event.peer}: {event.reason}", file=sys.stderr,
                  flush=True)

    listener.on_request(report)
    listener.stalls.on_change(_report_stall)
    service = None if args.no_listen else ListenerService(listener, host, port, ssl_context=ssl_context)
    source = _mqtt_source(recorder, mqtt_config, listener)

    async def serve() -> None:
        stop = stop_on_signals()
        urls = []
        if service is not None:
            try:
                urls = await service.start()
            except PortInUse as exc:
                raise CliError(str(exc)) from None
        print(f"recording session {session} to {db}", flush=True)
        if args.tls_cert and service is not None:
            from app.server.tls import fingerprint
            print(f"HTTPS certificate {args.tls_cert}, SHA-256 {fingerprint(Path(args.tls_cert))}", flush=True)
        for url in urls:
            print(f"listening on {url}", flush=True)
        mqtt_task = asyncio.ensure_future(source.run()) if source is not None else None
        tunnel_task = None
        if tunnel_config is not None and service is not None:
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
                figures = _figures(listener, source)
                if figures != last:
                    print(figures, flush=True)
                    last = figures
        if tunnel_task is not None:
            tunnel.stop()
            await asyncio.wait_for(tunnel_task, 10)
        if mqtt_task is not None:
            source.stop()
            await asyncio.wait_for(mqtt_task, 30)
        if service is not None:
            await service.stop()

    try:
        asyncio.run(serve())
    finally:
        recorder.close()
    print(f"stopped: {_figures(listener, source)}", flush=True)
    return 0


def _report_stall(stall) -> None:
    """Say loudly (once, then every tenth re-send) that the stream is stuck, and when it is not."""
    if stall is None:
        print("the stream is no longer stuck", file=sys.stderr, flush=True)
        return
    from app.server.poison import STALL_AFTER
    if stall.count == STALL_AFTER or stall.count % 10 == 0:
        hint = (" Or run with --accept-stuck-batches to accept it as flagged (kept whole) so the stream moves on."
                if stall.acceptable else "")
        print(f"STALLED: {stall.text()}{hint}", file=sys.stderr, flush=True)


def _mqtt_source(recorder, config, listener):
    """The MQTT source for `record`, logging each change of state; its state in ``/status``."""
    if config is None:
        return None
    from app.server.mqtt_source import MqttSource, MqttState
    source = MqttSource(recorder, config, limits=listener.config.limits)

    def changed(state: MqttState) -> None:
        if state.phase == "connected" and state.detail:  # holding a batch the file refuses
            print(f"MQTT {state.detail}", file=sys.stderr, flush=True)
        elif state.phase == "reconnecting":
            print(f"MQTT {state.text()}", file=sys.stderr, flush=True)
        elif state.phase in ("connecting", "connected") and not state.detail:
            print(f"MQTT {state.text()}", flush=True)

    source.on_state(changed)
    listener.add_status("mqtt", source.status)
    return source


def _figures(listener, source) -> str:
    """The running totals `record` prints every few seconds when they change."""
    stats = listener.stats
    text = (f"{stats.messages} messages in {stats.batches} batches, {stats.retries} re-sent, "
            f"{stats.duplicates} duplicate messages left out, {stats.rejects} rejected")
    if stats.stuck:
        text += f", {stats.stuck} stuck batch{'es' if stats.stuck > 1 else ''} accepted as flagged"
    if source is not None:
        m = source.stats
        text += (f"; MQTT: {m.messages} messages in {m.batches} batches, {m.duplicates} received again, "
                 f"{m.rejects} rejected")
    return text


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
    """Open the desktop window (it validates its listener options with `listener_setup`)."""
    from app.ui.launch import LaunchError, launch
    resolve_token(args)
    try:
        return launch(args, listener_setup)
    except LaunchError as exc:
        raise CliError(str(exc)) from None
