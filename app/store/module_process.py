"""Run one of trackmon's own modules in a child process, whatever directory or install it
runs from: the second core's share of an import, a large export or ingest derivation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

#: The directory holding the `app` package.
_ROOT = str(Path(__file__).resolve().parents[2])


def start_module(module: str, *args: str, **popen: Any) -> subprocess.Popen[bytes]:
    """``python -m module args...`` with this interpreter and this copy of trackmon importable;
    ``popen`` goes to `subprocess.Popen` (pipes, stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", module, *args], env=env, **popen)


def read_stdin_line() -> bytes:
    """One line from standard input, read below Python's buffered reader (see `wait_for_stdin_end`)."""
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
        return f"the {what} was killed ({name}; out of memory, or stopped from outside)"
    return f"the {what} stopped unexpectedly (exit code {returncode})"
