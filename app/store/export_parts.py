"""A large CSV export written by two processes, each taking half of the time range.

The CSV of a session is one pass over its points in time order, formatted a block at a time in
one interpreter: one core. For a finished session of at least `PARALLEL_MIN` points the time range
is split where about half the points lie before (from the chunk index); a child process writes the
second half (rows at or after the split) to its own partial file while this process writes the
header and the first half (rows strictly before it), then appends the child's rows. The result is
byte for byte the file one process writes (tested). Only for sessions that cannot change
meanwhile (closed, every batch in chunks): the two processes read the file in two snapshots.

    python -m app.store.export_parts DB     (the child; its job, JSON, on standard input: the filter and CSV options)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from app.store.faults import file_id_text, parse_file_id
from app.store.module_process import (
    NOT_THE_FILE,
    how_it_ended,
    last_line,
    read_stdin_line,
    start_module,
    wait_for_stdin_end,
)
from app.store.points import PointFilter, chunk_sizes
from app.store.schema import file_of

#: Points below which one process writes the export (starting a second costs ~0.3 s).
PARALLEL_MIN = 300_000


def split_time(conn: sqlite3.Connection, f: PointFilter) -> float | None:
    """A time splitting the filtered points of a finished session in about half, or None when
    the session is small, still being recorded, or has batches not yet in chunks."""
    row = conn.execute("SELECT ended_at, indexed_batch FROM sessions WHERE id = ?", (f.session_id,)).fetchone()
    if row is None or row[0] is None:
        return None
    last = conn.execute("SELECT max(id) FROM batches WHERE session_id = ?", (f.session_id,)).fetchone()[0]
    if last is not None and row[1] < last:
        return None
    sizes = chunk_sizes(conn, f)
    total = sum(n for _, _, n in sizes)
    if total < PARALLEL_MIN:
        return None
    lows, highs, counts = (np.array(column, dtype=np.float64) for column in zip(*sizes, strict=True))
    spans = np.maximum(highs - lows, 1e-9)

    def before(t: float) -> float:  # points estimated before t, each chunk's spread evenly over its span
        return float(np.sum(counts * np.clip((t - lows) / spans, 0.0, 1.0)))

    low, high = float(lows.min()), float(highs.max())
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (middle, high) if before(middle) < total / 2 else (low, middle)
    return high


class SecondHalf:
    """The child process writing the points at or after ``split`` to ``path``. Its job goes on
    its standard input (a device list can pass any command line's length), which then stays open
    to the end: if this process dies, the child stops and deletes its part."""

    def __init__(self, conn: sqlite3.Connection, f: PointFilter, split: float, path: Path,
                 options: dict[str, Any]) -> None:
        db = conn.execute("PRAGMA database_list").fetchone()[2]
        self.path = path
        part = dataclasses.replace(f, t_from=split if f.t_from is None else max(f.t_from, split))
        # The file the first half reads, or none (`schema.RecordingConnection`; another file put at the path meanwhile).
        file = file_of(conn)
        job = {"filter": dataclasses.asdict(part), "path": str(path),
               "file": None if file is None else file_id_text(file), **options}
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed in `discard`) a file, not a pipe: never blocks
        try:
            self.child = start_module("app.store.export_parts", db, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._errors)
        except BaseException:
            self._errors.close()
            raise
        assert self.child.stdin is not None
        try:
            self.child.stdin.write(orjson.dumps(job) + b"\n")
            self.child.stdin.flush()
        except OSError:  # it died at once: `finish` says how
            pass

    def finish(self, cancelled: Callable[[], bool] | None = None) -> tuple[int, int]:
        """Wait for the child, polling ``cancelled``; (written, skipped). Raises OSError if it
        failed, `Cancelled` if cancelled meanwhile (the caller discards the part)."""
        from app.store.exporters import Cancelled

        while True:
            try:
                self.child.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                if cancelled is not None and cancelled():
                    raise Cancelled() from None
        if cancelled is not None and cancelled():  # the child was done first (a slow first half): still a cancel
            raise Cancelled()
        assert self.child.stdout is not None
        out = self.child.stdout.read()  # one short line: it fits the pipe, so the child was never held up
        if self.child.returncode != 0:
            why = last_line(self._errors)
            if self.child.returncode == NOT_THE_FILE:
                raise OSError(why)
            raise OSError(how_it_ended("second export process", self.child.returncode) + (f": {why}" if why else ""))
        written, skipped = out.split()
        return int(written), int(skipped)

    def append_to(self, target: Path) -> None:
        """Append the child's rows (its file without the header line) to ``target``."""
        with open(self.path, "rb") as part, open(target, "ab") as whole:
            part.readline()
            shutil.copyfileobj(part, whole, 1 << 20)

    def discard(self) -> None:
        """Stop the child (if running) and delete its file."""
        if self.child.poll() is None:
            self.child.kill()
        self.child.wait()
        for stream in (self.child.stdin, self.child.stdout, self._errors):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.path.unlink(missing_ok=True)


#: Seconds an orphaned child may take to stop on its own before it exits regardless.
ORPHAN_GRACE_S = 10.0


def main(argv: list[str]) -> int:
    """The child: write one part as a whole CSV (header included) and print its counts; exit 3
    without a part if the parent goes first, `NOT_THE_FILE` if the path leads to another file
    than the parent's."""
    from app.store.exporters import Cancelled, drive, make_exporter
    from app.store.schema import NotTheFile, connect

    db, job = argv[0], orjson.loads(read_stdin_line())
    f = PointFilter.from_plain(job["filter"])
    part = Path(job["path"])
    orphaned = threading.Event()
    try:
        conn = connect(db, readonly=True, expect=None if job.get("file") is None else parse_file_id(job["file"]))
    except NotTheFile as exc:  # said as it is (`SecondHalf.finish`)
        print(f"{exc} during the export: export again", file=sys.stderr)
        return NOT_THE_FILE
    try:
        try:
            with open(part, "w", encoding="utf-8", newline="") as out:
                # Watched from here on: the part exists, so an orphan's part is surely deleted.
                threading.Thread(target=_stop_if_orphaned, args=(orphaned, part), daemon=True).start()
                writer = make_exporter(conn, "csv", out, title=job["title"], csv_profile=job["csv_profile"],
                                       raw_text=job["raw_text"])
                drive(conn, writer, f, cancelled=orphaned.is_set)
        except Cancelled:
            pass
    finally:
        conn.close()
    if orphaned.is_set():  # closed first, then deleted: Windows deletes no open file
        part.unlink(missing_ok=True)
        return 3
    print(writer.written, writer.skipped)
    return 0


def _stop_if_orphaned(orphaned: threading.Event, part: Path) -> None:
    """The parent keeps our standard input open while it wants the part: at its end (the parent
    gone, killed or crashed) the export stops and the part is deleted. If the main thread does
    not get there in `ORPHAN_GRACE_S`, this thread deletes what it can and exits."""
    wait_for_stdin_end()
    orphaned.set()
    time.sleep(ORPHAN_GRACE_S)
    with contextlib.suppress(OSError):
        part.unlink(missing_ok=True)
    os._exit(3)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
