"""The `trackmon` command line, subcommand by subcommand."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.cli.common import (
    MQTT_TOKEN_ENVS,
    TOKEN_ENV,
    add_limit_options,
    add_listener_options,
    non_negative_float,
    port_number,
    positive_int,
    time_value,
)
from app.cli.flespi import add_flespi_commands
from app.core.health import CHECKS


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
                                             "batch to SQLite, without a window.",
                                 epilog=f"The bearer token can come from --token-file PATH or the {TOKEN_ENV} "
                                        "environment variable instead of --token, which other local users "
                                        "can read in the process list.")
    add_listener_options(record)
    add_limit_options(record)
    record.add_argument("--append", action="store_true",
                        help="record into the most recent session instead of starting a new one")
    record.add_argument("--session-name", default="", help="name for the new session")
    record.add_argument("--accept-stuck-batches", action="store_true",
                        help="when the stream re-sends the same refused batch a third time (too many messages, too "
                             "deep, not message objects, not JSON), answer 200 and keep it whole as a stuck batch so "
                             "the stream moves on; never for auth failures or bodies over --max-body")
    mqtt = record.add_argument_group(
        "MQTT source (connect out to a broker, e.g. flespi's: no tunnel needed)",
        f"The broker's token (flespi: the token is the username) comes from --mqtt-token-file or the "
        f"{' or '.join(MQTT_TOKEN_ENVS)} environment variable, never from an argument.")
    mqtt.add_argument("--mqtt", default=None, metavar="mqtt[s]://HOST[:PORT]",
                      help="record what this broker publishes (flespi: mqtts://mqtt.flespi.io); ports default "
                           "to 1883 / 8883, mqtts verifies the certificate")
    mqtt.add_argument("--mqtt-topic", action="append", default=[], metavar="TOPIC",
                      help="topic filter to subscribe to (repeatable; default flespi/message/gw/devices/+, "
                           "every device the token may see)")
    mqtt.add_argument("--mqtt-token-file", type=Path, default=None, metavar="PATH",
                      help="read the broker token from this file (its first line)")
    mqtt.add_argument("--mqtt-cafile", type=Path, default=None, metavar="PEM",
                      help="trust only this CA for mqtts:// (default: the system's CAs)")
    mqtt.add_argument("--mqtt-client-id", default=None, metavar="ID",
                      help="the persistent session's name at the broker (default: derived from this machine and "
                           "the recording file, the same on every run so the broker queues while trackmon is away)")
    mqtt.add_argument("--no-listen", action="store_true",
                      help="no HTTP listener: record from --mqtt only")
    tunnel = record.add_argument_group("SSH reverse tunnel (reach this listener from the internet)")
    tunnel.add_argument("--ssh-tunnel", default=None, metavar="USER@HOST[:PORT]",
                        help="keep a reverse tunnel open through this SSH server (reconnects with back-off); "
                             "the far end listens publicly, so a token is required (or --insecure-no-token)")
    tunnel.add_argument("--ssh-remote-port", type=port_number, default=8585, help="port opened on the SSH server")
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
    simulate.add_argument("--devices", type=positive_int, default=10)
    simulate.add_argument("--batch", type=positive_int, default=100,
                          help="messages per request at most, like limit_messages (default 100)")
    simulate.add_argument("--rate", type=non_negative_float, default=1.0,
                          help="messages per second over the fleet; 0 = as fast as acknowledged")
    simulate.add_argument("--count", type=positive_int, default=None, help="stop after N messages")
    simulate.add_argument("--duration", type=non_negative_float, default=None, help="stop after S seconds")
    simulate.add_argument("--nested", action="store_true", help="nested JSON like a convert_message mapping")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--interval", type=non_negative_float, default=5.0,
                          help="seconds between a device's messages with --rate 0 (default 5)")
    simulate.add_argument("--start", type=time_value, default=None, help="timestamp of the first message")
    simulate.add_argument("--backfill", type=non_negative_float, default=0.0, metavar="SECONDS",
                          help="with --rate: first send this much history at once, then continue live")
    simulate.add_argument("--bad-fix-rate", type=non_negative_float, default=0.01)
    simulate.add_argument("--buffered-rate", type=non_negative_float, default=0.0, metavar="P",
                          help="chance per message that a vehicle loses coverage and later uploads what it kept "
                               "(old timestamps after newer ones, like buffered history); 0.002 is lifelike; "
                               "default 0 keeps the feed in time order")
    simulate.add_argument("--same-retries", action="store_true",
                          help="re-send a refused batch byte for byte; by default a retry is cut again from the "
                               "queue (same first message, another end), as flespi's queue may")
    simulate.add_argument("--token", default=None, help="send 'Authorization: Bearer TOKEN'")
    simulate.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                          help="extra header (repeatable)")
    simulate.add_argument("--cafile", type=Path, default=None, help="CA/certificate to trust for HTTPS")
    simulate.add_argument("--insecure", action="store_true", help="do not verify HTTPS certificates")
    simulate.add_argument("--max-attempts", type=positive_int, default=None,
                          help="give up on a batch after N attempts (default: keep trying, like flespi)")

    export = commands.add_parser("export", help="export a session to GPX, CSV, KML, GeoJSON, GeoPackage or GeoParquet",
                                 description="Export recorded tracks. Streams: memory stays flat however "
                                             "large the session. All or nothing: the file appears only when "
                                             "complete. gpkg and geoparquet need pip install 'trackmon[geo]'.")
    export.add_argument("--db", type=Path, default=None)
    export.add_argument("--format", required=True, choices=("gpx", "csv", "kml", "geojson", "gpkg", "geoparquet"))
    export.add_argument("--session", type=int, default=None, help="session id (default: the most recent)")
    export.add_argument("--device", action="append", default=None, metavar="IDENT",
                        help="only this device (repeatable)")
    export.add_argument("--from", dest="t_from", type=time_value, default=None, metavar="TIME",
                        help="Unix or ISO 8601 time")
    export.add_argument("--to", dest="t_to", type=time_value, default=None, metavar="TIME")
    fixes = export.add_mutually_exclusive_group()
    fixes.add_argument("--all-fixes", action="store_true",
                       help="include flagged positions (0/0, valid=false...); default for CSV")
    fixes.add_argument("--valid-only", action="store_true",
                       help="only usable fixes; default for every format but CSV")
    export.add_argument("--param", action="append", default=[], metavar="KEY",
                        help="CSV: add this parameter as a column (repeatable)")
    export.add_argument("--all-params", action="store_true", help="CSV: every parameter as a column (sorted)")
    export.add_argument("--csv-profile", choices=("trackmon", "gis"), default="trackmon",
                        help="CSV columns: 'trackmon' (every message, re-importable) or 'gis' (usable positions "
                             "only, column names gpsbabel unicsv and GDAL/QGIS recognise, speed in m/s)")
    export.add_argument("--raw-text", action="store_true",
                        help="CSV: write device strings exactly as sent; by default a text cell starting with "
                             "=, +, -, @, tab or CR gets a leading ' so spreadsheets do not run it as a formula")
    export.add_argument("--points", action="store_true", help="GeoJSON: a Point feature per message too")
    export.add_argument("--where", default=None, metavar="EXPR",
                        help="only messages matching, e.g. 'position.speed > 100 and exists(alarm.event.trigger)'")
    export.add_argument("--gap", type=non_negative_float, default=300.0, metavar="SECONDS",
                        help="GPX, GeoPackage: start a new track segment after a gap this long (default 300)")
    export.add_argument("-o", "--output", required=True, help="file to write ('-' for standard output)")

    replay = commands.add_parser("replay", help="re-send a recorded session like a flespi stream",
                                 description="Send a recorded session to a listener (another server, another "
                                             "trackmon) with flespi's rules: one request in flight, re-send until 200.")
    replay.add_argument("--db", type=Path, default=None)
    replay.add_argument("--session", type=int, default=None, help="session id (default: the most recent)")
    replay.add_argument("--to", required=True, metavar="URL")
    replay.add_argument("--speed", default="1", help="time factor (1, 2, 10, 600...) or 'max' (default 1)")
    replay.add_argument("--batch", type=positive_int, default=1000, help="messages per request at most")
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
                            "warning or error); checks: " + ", ".join(sorted(CHECKS)))
    check.add_argument("--jump-kmh", type=non_negative_float, default=None, help="implied speed that is a jump")
    check.add_argument("--gap-factor", type=non_negative_float, default=None,
                       help="a gap is this many usual intervals (default 5)")
    check.add_argument("--min-satellites", type=non_negative_float, default=None)
    check.add_argument("--max-hdop", type=non_negative_float, default=None)
    check.add_argument("--latency", type=non_negative_float, default=None, metavar="SECONDS",
                       help="server.timestamp - timestamp above this is late (default 60)")

    cert = commands.add_parser("cert", help="the self-signed HTTPS certificate: show, export, regenerate",
                               description="Manage the self-signed certificate used by --tls-self-signed.")
    cert.add_argument("--export", type=Path, default=None, metavar="PATH",
                      help="copy the certificate (not the key) here, e.g. for flespi's private CA field")
    cert.add_argument("--regenerate", action="store_true", help="make a new key and certificate")

    add_flespi_commands(commands)  # `flespi setup|status`, `pull`

    sessions = commands.add_parser("sessions", help="list recorded sessions")
    sessions.add_argument("--db", type=Path, default=None)
    sessions.add_argument("--json", action="store_true", help="machine-readable output")
    return parser
