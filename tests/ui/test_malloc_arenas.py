"""The window's process keeps to two malloc arenas however many threads allocate (glibc)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Eight threads allocate and stay alive, then glibc says how many arenas (heaps) the process has.
COUNT_ARENAS = r"""
import ctypes, sys, threading
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "limited":
    from app.ui.malloc_arenas import limit_malloc_arenas
    assert limit_malloc_arenas()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
started, done = threading.Barrier(9), threading.Event()
def allocate():
    kept = [ctypes.create_string_buffer(4000) for _ in range(2000)]
    started.wait()
    done.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads:
    t.start()
started.wait()
path = sys.argv[3]
out = ctypes.c_void_p(libc.fopen(path.encode(), b"w"))
libc.malloc_info(0, out)
libc.fclose(out)
done.set()
for t in threads:
    t.join()
with open(path) as report:
    print(report.read().count("<heap nr="))
"""


def arenas(mode: str, report: Path) -> int:
    env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_ARENA_MAX or GLIBC_TUNABLES from the caller
    result = subprocess.run([sys.executable, "-c", COUNT_ARENAS, str(ROOT), mode, str(report)], capture_output=True,
                            text=True, timeout=60, env=env, check=True)
    return int(result.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's")
def test_the_window_keeps_to_two_malloc_arenas_however_many_threads_allocate(tmp_path: Path) -> None:
    assert arenas("default", tmp_path / "default.xml") > 2  # glibc's default: an arena per thread
    assert arenas("limited", tmp_path / "limited.xml") <= 2
