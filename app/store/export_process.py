"""An export from the window, written by a child process.

An export reads the session's chunks (JSON rows parsed into Python lists), turns them into numpy
columns and formats them: seconds of work that holds the GIL. In a thread of the window it took
the GIL from the GUI thread, which needs it for every model cell it paints: in a 12-minute soak
the export thread held most of the window's samples during 5 of its 12 stalls over 250 ms, and
the lists it made grew the young generation the window's collector then had to walk
(`benchmarks/stall_stacks.py`; docs/benchmarks.md, "native stacks of the stalls"). Here the
window's export thread only waits on a pipe; the child reads and writes with its own connection,
on the other core.

The child writes the file all or nothing as `export_file` does, its partial files named by a tag
this side chooses (so they can be found and deleted if the child dies). Its standard input
carries the job (one JSON line), then stays open: its end cancels the export (this side closing
it, or the window gone), which deletes the partial file. Its standard output says how it goes,
a JSON object a line: ``{"progress": [done, total]}``, then one of ``{"written": n, "tracks": n}``,
``{"cancelled": true}``, ``{"error": "why"}``.

    python -m app.store.export_process DB     (the job on standard input, see `ExportJob`)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from app.store.faults import FileId, file_id_text, parse_file_id
from app.store.module_process import (
    binary_stdout,
    how_it_ended,
    last_line,
    read_stdin_line,
    start_module,
    wait_for_stdin_end,
)
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
    points_filter: PointFilter
    target: Path
    title: str = "trackmon"
    all_params: bool = False
    points: bool = False
    where: str = ""
    csv_options: dict[str, Any] = field(default_factory=dict)
    #: Names the partial files (`export_file.partial_path`); chosen by the parent, unique per export.
    tag: str = field(default_factory=lambda: f"{os.getpid()}-{secrets.token_hex(4)}")
    #: The file the session was chosen in (`faults.file_id`): the child reads it or nothing, never
    #: another file put at the path since (None: whatever is at the path).
    source: FileId | None = None

    def to_json(self) -> bytes:
        source = None if self.source is None else file_id_text(self.source)
        return orjson.dumps({**dataclasses.asdict(self), "target": str(self.target), "source": source})

    @staticmethod
    def from_json(text: bytes) -> ExportJob:
        job = orjson.loads(text)
        source = job.get("source")
        return ExportJob(**{**job, "points_filter": PointFilter.from_plain(job["points_filter"]),
                            "target": Path(job["target"]), "source": None if source is None else parse_file_id(source)})


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

    before = _identity(job.target)
    errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed below) a file, not a pipe: it never blocks the child
    # Its own session: Ctrl-C in the terminal reaches the window, which cancels; not the child directly.
    child = start_module("app.store.export_process", str(db), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=errors, start_new_session=True)
    assert child.stdin is not None and child.stdout is not None
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=_read_lines, args=(child.stdout, lines), name="trackmon-export-pipe", daemon=True).start()
    asked_to_stop: float | None = None
    try:
        try:
            child.stdin.write(job.to_json() + b"\n")
            child.stdin.flush()
        except OSError:  # it died at once: said below, from its end of the pipe
            pass
        while True:
            if asked_to_stop is None and cancelled():
                asked_to_stop = time.monotonic()
                _close(child.stdin)  # the child cancels and deletes its partial file
            elif asked_to_stop is not None and time.monotonic() - asked_to_stop > CANCEL_GRACE_S:
                child.kill()  # stuck: what it leaves is deleted below
                child.wait()
                said = _final_answer(lines)  # it may have finished as the grace ran out
                if said is not None and "written" in said:
                    return ExportResult(said["written"], said["tracks"])
                if _identity(job.target) != before:  # killed between its rename and its answer
                    raise ExportFailed(f"the export was cancelled as it finished: {job.target.name} was written"
                                       + (", but may lack its column types file" if job.fmt == "csv" else ""))
                raise Cancelled()
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if not line:  # the child is gone without saying how it ended
                child.wait()
                why = last_line(errors)
                raise ExportFailed(how_it_ended("export process", child.returncode) + (f": {why}" if why else ""))
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
            child.wait(CANCEL_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        errors.close()
        from app.store.export_file import discard_partial

        discard_partial(job.target, job.tag)  # whatever a child that was killed or died left (the tag is this export's)


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _read_lines(stream: IO[bytes], lines: queue.Queue[bytes]) -> None:
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):  # the pipe closed under us: the end, like any other
        pass
    finally:
        lines.put(b"")


def _final_answer(lines: queue.Queue[bytes]) -> dict[str, Any] | None:
    """The last thing a child that has ended said, if anything (what is left in the queue)."""
    said = None
    with contextlib.suppress(queue.Empty):
        while line := lines.get(timeout=1.0):
            said = orjson.loads(line)
    return said


def _close(stream: IO[bytes]) -> None:
    with contextlib.suppress(OSError):  # the child has gone: nothing to tell it
        stream.close()


def main(argv: list[str]) -> int:
    """The child: write the export, say how it went on standard output."""
    from app.core.filters import compile_filter
    from app.store.export_file import export_file
    from app.store.exporters import Cancelled, collect_param_keys
    from app.store.schema import NotTheFile, connect

    db = Path(argv[0])
    job = ExportJob.from_json(read_stdin_line())
    out = binary_stdout()
    cancel = threading.Event()

    def say(what: dict[str, Any]) -> None:
        out.write(orjson.dumps(what) + b"\n")
        out.flush()

    def watch_stdin() -> None:
        wait_for_stdin_end()  # this side closing it, or the window gone: either way, stop
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
        try:
            conn = connect(db, readonly=True, expect=job.source)  # never creates a file moved away
        except NotTheFile as exc:
            say({"error": f"{exc} since this session was chosen: open the export from the sessions list again"})
            return 0
        try:
            f = job.points_filter
            params = collect_param_keys(conn, f) if job.all_params else None
            exporter = export_file(conn, job.fmt, f, job.target, title=job.title, params=params, points=job.points,
                                   where=compile_filter(job.where) if job.where.strip() else None,
                                   progress=report, cancelled=cancel.is_set, tag=job.tag, **job.csv_options)
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
