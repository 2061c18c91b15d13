"""An export from the window, written by a child process.

An export reads the session's chunks (JSON rows parsed into Python lists), turns them into numpy
columns and formats them: seconds of work that holds the GIL. In a thread of the window it took
the GIL from the GUI thread, which needs it for every model cell it paints: in a 12-minute soak
the export thread held most of the window's samples during 5 of its 12 stalls over 250 ms, and
the millions of lists it made grew the young generation the window's collector then had to walk
(`benchmarks/stall_stacks.py`, docs/benchmarks.md). Here the window's export thread only waits on
a pipe; the child does the reading and writing with its own connection, on the other core.

The child writes the file all or nothing as `export_file` does. Lines on its standard output,
JSON each: ``{"progress": [done, total]}``, then one of ``{"written": n, "tracks": n}``,
``{"cancelled": true}``, ``{"error": "why"}``. Its standard input is the cancel: a line, or the
pipe closing (the window gone), cancels the export, which deletes its partial file.

    python -m app.store.export_process DB JOB     (JOB: JSON, see `ExportJob`)
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from app.store.module_process import start_module
from app.store.points import PointFilter

#: Seconds between progress lines (a bar redrawn more often shows nothing more).
PROGRESS_EVERY_S = 0.1
#: Seconds a cancelled child may take to clean up before it is killed.
CANCEL_GRACE_S = 10.0


@dataclass(frozen=True, slots=True)
class ExportJob:
    """Everything the child needs, as plain values (the filter expression as the user typed it:
    the child compiles it again)."""

    fmt: str
    filter: PointFilter
    target: Path
    title: str = "trackmon"
    all_params: bool = False
    points: bool = False
    where: str = ""
    csv_options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return orjson.dumps({**dataclasses.asdict(self), "target": str(self.target)}).decode()

    @staticmethod
    def from_json(text: str) -> ExportJob:
        job = orjson.loads(text)
        return ExportJob(**{**job, "filter": PointFilter.from_plain(job["filter"]), "target": Path(job["target"])})


@dataclass(frozen=True, slots=True)
class ExportResult:
    written: int
    tracks: int


class ExportFailed(Exception):
    """The export could not be written; the message says why (the child's own words)."""


def export_in_child(db: Path, job: ExportJob, progress: Callable[[int, int], None],
               cancelled: Callable[[], bool]) -> ExportResult:
    """Write ``job`` in a child process and wait for it (polling ``cancelled``, passing progress
    on); returns the counts. Raises `exporters.Cancelled` (nothing written), `ExportFailed`."""
    from app.store.exporters import Cancelled

    child = start_module("app.store.export_process", str(db), job.to_json(), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=_read_lines, args=(child.stdout, lines), name="trackmon-export-pipe", daemon=True).start()
    errors: list[bytes] = []
    threading.Thread(target=lambda: errors.append(child.stderr.read()), name="trackmon-export-err",  # type: ignore[union-attr]
                     daemon=True).start()
    asked_to_stop: float | None = None
    try:
        while True:
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                if asked_to_stop is None and cancelled():
                    asked_to_stop = time.monotonic()
                    _close(child.stdin)  # the child cancels and deletes its partial file
                elif asked_to_stop is not None and time.monotonic() - asked_to_stop > CANCEL_GRACE_S:
                    raise Cancelled() from None  # killed below, its partial file removed
                continue
            if not line:  # the child is gone without saying how it ended
                child.wait()
                why = (errors[0] if errors else b"").decode(errors="replace").strip().splitlines()
                raise ExportFailed(f"the export process stopped (exit code {child.returncode})"
                                   + (f": {why[-1]}" if why else ""))
            said = orjson.loads(line)
            if "progress" in said:
                progress(*said["progress"])
            elif "written" in said:
                return ExportResult(said["written"], said["tracks"])
            elif "cancelled" in said:
                raise Cancelled()
            else:
                raise ExportFailed(said["error"])
    finally:
        _close(child.stdin)
        try:
            child.wait(CANCEL_GRACE_S if asked_to_stop is None else 0.5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.returncode != 0:  # killed, or died: what it was writing is left to delete
            from app.store.export_file import discard_partial

            discard_partial(job.target, child.pid)


def _read_lines(stream: IO[bytes], lines: queue.Queue[bytes]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(b"")


def _close(stream: IO[bytes]) -> None:
    with contextlib.suppress(OSError):  # the child has gone: nothing to tell it
        stream.close()


def main(argv: list[str]) -> int:
    """The child: write the export, say how it went on standard output."""
    from app.core.filters import compile_filter
    from app.store.export_file import export_file
    from app.store.exporters import Cancelled, collect_param_keys

    db, job = Path(argv[0]), ExportJob.from_json(argv[1])
    out = sys.stdout.buffer
    cancel = threading.Event()

    def say(what: dict[str, Any]) -> None:
        out.write(orjson.dumps(what) + b"\n")
        out.flush()

    def watch_stdin() -> None:
        sys.stdin.buffer.readline()  # a line, or the pipe closing: either way, stop
        cancel.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    last = 0.0

    def report(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S or done >= total:
            last = now
            say({"progress": [done, total]})

    try:
        conn = sqlite3.connect(db)
        try:
            f = job.filter
            params = collect_param_keys(conn, f) if job.all_params else None
            exporter = export_file(conn, job.fmt, f, job.target, title=job.title, params=params, points=job.points,
                                   where=compile_filter(job.where) if job.where.strip() else None,
                                   progress=report, cancelled=cancel.is_set, **job.csv_options)
        finally:
            conn.close()
    except Cancelled:
        say({"cancelled": True})
    except Exception as exc:  # said to the window, which shows it
        say({"error": str(exc)})
    else:
        say({"written": exporter.written, "tracks": getattr(exporter, "tracks", 0)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
