"""What several benchmarks need to run a listener on loopback: a free port, waiting for it to
answer, and a headless `trackmon record` process."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nothing listens on right now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str) -> None:
    """Return once ``url`` answers anything over HTTP; RuntimeError after 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except urllib.error.HTTPError:  # any HTTP answer means it is serving
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def start_recorder(port: int, db: Path, token: str) -> subprocess.Popen:
    """`trackmon record` on ``port`` into ``db``, returned once it says it is listening."""
    record = subprocess.Popen([sys.executable, "-m", "app", "record", "--port", str(port), "--db", str(db),
                               "--token", token], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    while "listening on" not in (record.stdout.readline() or "listening on"):
        pass
    return record


def stop_process(process: subprocess.Popen, wait: float = 30) -> None:
    """Terminate ``process`` and wait for it; killed if it does not end within ``wait`` s."""
    process.terminate()
    try:
        process.wait(wait)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
