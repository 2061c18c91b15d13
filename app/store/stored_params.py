"""A logged message's parameters, read from the recording when asked for.

The window's log rows come from the folding process without their parameters (`core.fleet_frames`:
carrying every message's would cost the window most of what moving the fold out saved). When a
filter over parameters, the inspector or the chart asks for them, they are read here: the batch's
stored body, decompressed and parsed once for all its messages, the message normalized as the
fold normalized it. Through a read connection of its own (another reader may hold an old snapshot
open for long, where newer batches are not yet to be seen), on one file: the window makes a new one
when the recorder moves to another file, and retires this one. The same connection tells how far
the live view is behind the file (`newest_batch`, `waiting`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import orjson

from app.core.normalize import flatten, normalize, proven_flat
from app.store.codec import decompress_body
from app.store.faults import FileId
from app.store.schema import connect

log = logging.getLogger(__name__)

#: Parsed batches kept (a filter or a chart reads messages of the same few batches in a row).
KEEP_BATCHES = 8
#: Seconds before opening a file that could not be opened is tried again.
RETRY_S = 1.0
#: The messages after a batch, and the oldest one's arrival. `+session_id`: the rows after the batch
#: are read by their ids (a few), not through the session's index (every batch of a day-long
#: session, once a second on the GUI thread).
WAITING_SQL = "SELECT coalesce(sum(count), 0), min(received_at) FROM batches WHERE id > ? AND +session_id = ?"


class StoredParams:
    """Reads parameters of messages stored in the file at ``path``: the file ``expect`` names
    (`faults.file_id`), the one the recorder writes; never another file put at the path since."""

    def __init__(self, path: Path, expect: FileId | None = None) -> None:
        self.path = path
        self.expect = expect
        self._conn: sqlite3.Connection | None = None
        self._retired = False
        self._failed_at = float("-inf")  # when opening it last failed
        self._batches: OrderedDict[int, tuple[float, list[Any], bool]] = OrderedDict()  # and whether flat
        self._reader()

    def _reader(self) -> sqlite3.Connection | None:
        """The connection; None while the file cannot be opened (tried again after a second, not
        for every row a filter asks about)."""
        if self._conn is None and time.monotonic() - self._failed_at >= RETRY_S:
            try:
                self._conn = connect(self.path, readonly=True, expect=self.expect)
            except Exception as exc:  # moved away, replaced, not a recording (any more): nothing to read now
                log.debug("%s not readable: %s", self.path, exc)
                self._failed_at = time.monotonic()
        return self._conn

    def retire(self) -> None:
        """Another file is recorded now: read nothing more (a batch id here names another batch)."""
        self._retired = True
        self._batches.clear()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def newest_batch(self) -> int | None:
        """The newest batch committed to the file (None if it cannot be read)."""
        conn = None if self._retired else self._reader()
        if conn is None:
            return None
        try:
            return int(conn.execute("SELECT coalesce(max(id), 0) FROM batches").fetchone()[0])
        except sqlite3.Error:
            return None

    def waiting(self, after: int, session_id: int) -> tuple[int, float | None]:
        """Messages of ``session_id`` committed after batch ``after`` (what the live view does not
        show yet), and when the oldest of them was received; (0, None) if none or unreadable."""
        conn = None if self._retired else self._reader()
        if conn is None:
            return 0, None
        try:
            count, oldest = conn.execute(WAITING_SQL, (after, session_id)).fetchone()
        except sqlite3.Error:
            return 0, None
        return int(count), oldest

    def params(self, batch_id: int | None, index: int) -> dict[str, Any] | None:
        """Message ``index`` of batch ``batch_id``'s parameters; None when they cannot be read
        now (the file moved away, the session deleted, another file recorded since): asked again
        next time, never remembered as empty."""
        conn = None if batch_id is None or self._retired else self._reader()
        if conn is None:
            return None
        found = self._batches.get(batch_id)  # type: ignore[arg-type]
        if found is None:
            try:
                row = conn.execute("SELECT received_at, body FROM batches WHERE id = ?", (batch_id,)).fetchone()
                if row is None:
                    return None
                body = decompress_body(row[1])
                raws = orjson.loads(body)
                found = (row[0], raws, proven_flat(raws, body))  # flespi's default: each object its parameters
            except Exception as exc:  # unreadable now (a damaged body, a locked file): said in the log
                log.debug("parameters of batch %s not readable: %s", batch_id, exc)
                return None
            self._batches[batch_id] = found  # type: ignore[index]
            if len(self._batches) > KEEP_BATCHES:
                self._batches.popitem(last=False)
        received_at, raws, flat = found
        if not 0 <= index < len(raws):
            return None
        raw = raws[index]
        # An object's parameters are what `normalize` makes of it: the object, flattened (the rest
        # of normalizing, which a log row already carries, would cost several times as much).
        if type(raw) is dict:
            return raw if flat else flatten(raw)
        return normalize(raw, received_at).params
