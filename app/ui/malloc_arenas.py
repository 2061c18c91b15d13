"""Fewer malloc arenas for the window's process.

glibc gives each thread its own arena at its first allocation, up to eight per core (arenas of
finished threads are reused), and keeps what is freed in an arena for later allocations there. The
window runs many threads that allocate in bursts — the listener, the recorder's writer, the parser,
the file readers, imports and exports, and Qt's own. In the soak, minutes 4–10, its resident
memory was 616–628 MB with two arenas against 747–844 MB with glibc's default (one run each, see
docs/benchmarks.md), and it was a little faster, not slower: Python's small objects come from its
own allocator, and the GIL lets one thread allocate at a time for most of the rest.

glibc only; anywhere else, and when the user set ``MALLOC_ARENA_MAX`` or a glibc malloc tunable
themselves, nothing changes.
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
    if (not sys.platform.startswith("linux") or os.environ.get("MALLOC_ARENA_MAX")
            or "glibc.malloc.arena_max" in os.environ.get("GLIBC_TUNABLES", "")):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a C library without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return mallopt(M_ARENA_MAX, arenas) == 1
