"""Hand plain data from a worker thread to a Qt object, without the worker touching Qt.

A worker thread that holds a reference to a Qt object (a dialog in a closure, a QObject whose
signal it emits) may be the one that drops the last reference, and then the object's C++
destructor runs off the GUI thread — the deadlock described in app/ui/gc_guard.py. A
`ThreadBridge` is a plain Python object: it keeps only a *weak* reference to the receiving
method and delivers each call through the asyncio loop, so the call — and any freeing that
follows — happens on the GUI thread. Whatever the worker drops, it never frees a Qt object.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable
from typing import Any


class ThreadBridge:
    """Made on the GUI thread for one receiver; ``send`` may be called from any thread."""

    __slots__ = ("_loop", "_target")

    def __init__(self, receiver: Callable[..., Any], loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_event_loop()
        self._target = weakref.WeakMethod(receiver)  # type: ignore[arg-type]

    def send(self, *args: Any) -> None:
        """Call the receiver with ``args`` (plain data) on the GUI thread, soon; dropped if the
        receiver is gone or the loop is closed."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the window is gone
            self._loop.call_soon_threadsafe(_deliver, self._target, args)


def _deliver(target: weakref.WeakMethod, args: tuple[Any, ...]) -> None:
    method = target()
    if method is not None:
        method(*args)
