"""Run one of trackmon's own modules in a child process, whatever directory or install it
runs from: the second core's share of an import, a large export or ingest derivation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any, BinaryIO

#: The directory holding the `app` package.
_ROOT = str(Path(__file__).resolve().parents[2])
#: A child's exit status when the recording at its path is no longer the file it was started for
#: (`schema.NotTheFile`): it read nothing; the parent says so in its own words.
NOT_THE_FILE = 4


def start_module(module: str, *args: str, **popen: Any) -> subprocess.Popen[bytes]:
    """``python -m module args...`` with this interpreter and this copy of trackmon importable;
    ``popen`` goes to `subprocess.Popen` (pipes, stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", module, *args], env=env, **popen)


def binary_stdout() -> BinaryIO:
    """Standard output for a child's frames (or the command line's), as a writer that always
    writes all it is given.

    Why not ``sys.stdout.buffer``: under ``PYTHONUNBUFFERED=1`` (``python -u``, set in many
    containers) that is the raw file, whose ``write`` may write only part of a large frame when a
    signal interrupts it on a full pipe (the process stopped and continued: Ctrl+Z and ``fg``, a
    debugger or profiler attaching) and says so only in its return value. The bytes left out
    shifted every later frame: the window's live view read garbage from then on. A buffered
    writer goes on until everything is written (``tests/store/test_deriver.py``)."""
    return open(sys.stdout.fileno(), "wb", closefd=False)  # standard output: never closed here


def read_stdin_line() -> bytes:
    """One line from standard input, read below Python's buffered reader (see
    `wait_for_stdin_end`). A byte at a time: what follows the line is not this reader's."""
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk = os.read(0, 1)
        if not chunk:
            break
        line += chunk
    return bytes(line)


def wait_for_stdin_end() -> None:
    """Block until standard input reaches its end (the parent closed it, or died), for a child's
    watcher thread. Read with `os.read`, not ``sys.stdin``: a daemon thread blocked in the buffered
    reader holds its lock, and the interpreter then aborts at exit ("could not acquire lock for
    <stdin> at interpreter shutdown")."""
    while os.read(0, 4096):
        pass


def how_it_ended(what: str, returncode: int) -> str:
    """How child process ``what`` ended when it said nothing itself, in words (no bare signal number)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if name == "SIGKILL":
            return f"the {what} was killed ({name}; out of memory, or stopped from outside)"
        if name in ("SIGSEGV", "SIGABRT", "SIGBUS", "SIGILL", "SIGFPE"):
            return f"the {what} crashed ({name})"
        return f"the {what} was stopped ({name})"
    if returncode > 0xFFFF:  # Windows: an NTSTATUS, read in hex (0xC0000005: access violation)
        return f"the {what} crashed (0x{returncode:08X})"
    return f"the {what} stopped unexpectedly (exit code {returncode})"


def last_line(stream: IO[bytes]) -> str:
    """The last line a child wrote to ``stream`` (its stderr, a file), read from the end only."""
    stream.seek(0, os.SEEK_END)
    stream.seek(max(0, stream.tell() - 4096))
    lines = stream.read().decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""
