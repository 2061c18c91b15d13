"""Start and stop real `trackmon` processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def trackmon(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a trackmon command to completion, capturing its output."""
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Recorder:
    """A `trackmon record` process and the URL it announced."""

    def __init__(self, process: subprocess.Popen, url: str) -> None:
        self.process, self.url = process, url

    def kill_hard(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> str:
        """Stop gracefully (SIGTERM) and return what it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.stdout.read() if self.process.stdout else ""


@contextmanager
def recorder_process(db: Path, *args: str, port: int = 0) -> Iterator[Recorder]:
    """`trackmon record` on 127.0.0.1; always stopped when the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "record", "--db", str(db), "--port", str(port), *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 30
        url = None
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"recorder exited early with {process.wait()}")
            if line.startswith("listening on "):
                url = line.split()[-1]
        assert url is not None, "recorder did not announce a URL"
        yield Recorder(process, url)
    finally:
        Recorder(process, "").stop()
