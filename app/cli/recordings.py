"""Commands that read recordings: `sessions`, `export`, `import`, `check`."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from dataclasses import asdict

import orjson

from app.cli.common import EXIT_USAGE, CliError, fmt_time, open_readonly, pick_session
from app.cli.listen import open_recorder
from app.paths import default_db


def cmd_sessions(args: argparse.Namespace) -> int:
    """Print the sessions of a recording file."""
    from app.store.queries import list_sessions

    db, conn = open_readonly(args.db)
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
        print(f"{s.id:>4}  {s.name[:16]:<16} {s.devices:>7} {s.messages:>9} {s.duplicates:>7} "
              f"{s.rejects:>7}  {fmt_time(s.first_ts):<19}  {fmt_time(s.last_ts):<19}  {state}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a session, with a progress bar on a terminal; a file appears only when complete."""
    from pathlib import Path

    from tqdm import tqdm

    from app.store.csv_export import csvt_path
    from app.store.export_file import export_file
    from app.store.exporters import collect_param_keys, run_export
    from app.store.geo_export import GEO_FORMATS, missing_library
    from app.store.points import PointFilter

    if (args.param or args.all_params) and args.format != "csv":
        raise CliError("--param and --all-params apply to --format csv", EXIT_USAGE)
    if (args.raw_text or args.csv_profile != "trackmon") and args.format != "csv":
        raise CliError("--raw-text and --csv-profile apply to --format csv", EXIT_USAGE)
    if args.points and args.format != "geojson":
        raise CliError("--points applies to --format geojson", EXIT_USAGE)
    to_stdout = args.output == "-"
    if args.format in GEO_FORMATS:
        if to_stdout:
            raise CliError(f"--format {args.format} writes a file: give -o PATH", EXIT_USAGE)
        missing = missing_library(args.format)
        if missing:
            raise CliError(missing)
    where = None
    if args.where is not None:
        from app.core.filters import FilterError, compile_filter
        try:
            where = compile_filter(args.where)
        except FilterError as exc:
            raise CliError(f"--where: {exc}", EXIT_USAGE) from None
    db, conn = open_readonly(args.db)
    try:
        session = pick_session(conn, args.session)
        valid_only = args.valid_only or (args.format != "csv" and not args.all_fixes)
        f = PointFilter(session, tuple(args.device) if args.device else None, args.t_from, args.t_to, valid_only)
        params = list(args.param)
        if args.all_params:
            params = collect_param_keys(conn, f)
        show = sys.stderr.isatty() and not to_stdout
        bar = tqdm(total=0, unit=" msg", unit_scale=True, disable=not show, file=sys.stderr, desc=args.format)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        options = {"title": f"{db.stem} session {session}", "params": params, "points": args.points, "gap": args.gap,
                   "where": where, "progress": progress, "csv_profile": args.csv_profile, "raw_text": args.raw_text}
        try:
            if to_stdout:
                exporter = run_export(conn, args.format, f, sys.stdout, **options)
            else:
                exporter = export_file(conn, args.format, f, Path(args.output), **options)
        except BrokenPipeError:
            if to_stdout:  # `trackmon export -o - | head`: the reader left; stop quietly (`cli.main`)
                raise
            raise CliError(f"cannot write {args.output}: broken pipe (nothing was written)") from None
        except OSError as exc:
            raise CliError(f"cannot write {args.output}: {exc} (nothing was written)") from None
        finally:
            bar.close()
    finally:
        conn.close()
    if not to_stdout:
        sidecar = f" (column types in {csvt_path(args.output).name})" if args.format == "csv" else ""
        tracks = f" and {exporter.tracks} track lines" if args.format == "gpkg" else ""
        skipped = f", {exporter.skipped} without a usable position skipped" if exporter.skipped else ""
        print(f"wrote {exporter.written} points{tracks} of session {session} to {args.output}{sidecar}{skipped}",
              file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Import a file into a new session."""
    from app.store.importers import ImportError_, import_file

    if not args.file.is_file():
        raise CliError(f"no such file: {args.file}")
    db = args.db or default_db()
    open_recorder(db, False).close()  # same one-line errors as `record` for a busy or foreign file
    try:
        summary = import_file(db, args.file, args.name)
    except ImportError_ as exc:
        raise CliError(f"{exc} (nothing was imported)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {args.file}: {exc} (nothing was imported)") from None
    print(summary.text())
    print(f"({summary.points:,} points in session {summary.session_id} of {db})")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Health report of a session; exit 3 when a --fail-on check fired."""
    from dataclasses import replace as with_changes

    from app.core.display import utc_text
    from app.core.health import CHECKS, ERROR, SEVERITY_NAMES, WARN, HealthMonitor, HealthThresholds
    from app.core.normalize import Message
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
    _db, conn = open_readonly(args.db)
    try:
        session = pick_session(conn, args.session)
        wanted = set(args.device) if args.device else None
        names: dict[str, str] = {}
        # A stored batch at a time: the checks run per device over each batch's messages.
        batch: list[Message] = []
        refs: list[tuple[int, int]] = []
        received_at = 0.0
        for stored in iter_messages(conn, session):
            m = stored.message
            if wanted is None or m.ident in wanted:
                if batch and refs[-1][0] != stored.batch_id:
                    monitor.add_batch(batch, received_at, refs)
                    batch, refs = [], []
                batch.append(m)
                refs.append((stored.batch_id, stored.index))
                received_at = stored.received_at
                name = m.params.get("device.name")
                if name is not None:
                    names[m.ident] = str(name)
        if batch:
            monitor.add_batch(batch, received_at, refs)
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
