"""A logged message's parameters, read from the recording when asked for.

The window's log rows come from the folding process without their parameters (`core.fleet_frames`:
carrying every message's would cost the window most of what moving the fold out saved). When a
filter over parameters, the inspector or the chart asks for them, they are read here: the batch's
stored body, decompressed and parsed once for all its messages, the message normalized as the
fold normalized it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

from app.core.normalize import normalize
from app.store.codec import decompress_body

log = logging.getLogger(__name__)

#: Parsed batches kept (a filter or a chart reads messages of the same few batches in a row).
KEEP_BATCHES = 8


class StoredParams:
    """Reads parameters of stored messages through ``reader()`` (the window's read connection,
    which follows the recording file)."""

    def __init__(self, reader: Callable[[], sqlite3.Connection]) -> None:
        self._reader = reader
        self._batches: OrderedDict[int, tuple[float, list[Any]]] = OrderedDict()

    def newest_batch(self) -> int | None:
        """The newest batch committed to the file (None if it cannot be read)."""
        try:
            return int(self._reader().execute("SELECT coalesce(max(id), 0) FROM batches").fetchone()[0])
        except sqlite3.Error:
            return None

    def params(self, batch_id: int | None, index: int) -> dict[str, Any]:
        """Message ``index`` of batch ``batch_id``'s parameters; empty if it cannot be read (the
        session was deleted, the file moved away)."""
        if batch_id is None:
            return {}
        found = self._batches.get(batch_id)
        if found is None:
            try:
                row = self._reader().execute("SELECT received_at, body FROM batches WHERE id = ?",
                                             (batch_id,)).fetchone()
                found = (row[0], orjson.loads(decompress_body(row[1]))) if row is not None else (0.0, [])
            except (sqlite3.Error, orjson.JSONDecodeError) as exc:
                log.debug("parameters of batch %s not readable: %s", batch_id, exc)
                return {}
            self._batches[batch_id] = found
            if len(self._batches) > KEEP_BATCHES:
                self._batches.popitem(last=False)
        received_at, raws = found
        return normalize(raws[index], received_at).params if 0 <= index < len(raws) else {}
