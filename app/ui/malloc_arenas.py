"""Fewer malloc arenas for the window's process.

glibc gives each thread that allocates while another does its own arena (up to eight per core)
and keeps what is freed in it for that thread's next allocation. The window runs many threads that
allocate in bursts — the listener, the recorder's writer, the parser, the file readers, imports
and exports, and Qt's own — and in the 30-minute soak its resident memory settled 130–200 MB
higher than with two arenas (722–847 MB against 616–628 MB over the same minutes, see
docs/benchmarks.md), for no speed: Python's small objects come from its own allocator, and the
GIL lets one thread allocate at a time for most of the rest.

glibc only; anywhere else, and when the user set ``MALLOC_ARENA_MAX`` themselves, nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_ARENA_MAX = -8  # glibc's <malloc.h>
WINDOW_ARENAS = 2


def limit_malloc_arenas(arenas: int = WINDOW_ARENAS) -> bool:
    """Cap the process's malloc arenas at ``arenas`` (call before threads start); True if glibc
    took the limit."""
    if not sys.platform.startswith("linux") or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a C library without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return mallopt(M_ARENA_MAX, arenas) == 1
