"""One consistent view of a recording for a reader that asks several questions.

An export or a replay step reads the session's chunk mark (``sessions.indexed_batch``), the
batches after it, and the ``tracks`` chunks, in separate statements. Outside a transaction each
statement sees the file as it is at that moment, so a chunk flush committed in between makes the
same messages appear twice (once raw, once chunked). Inside one read transaction every statement
sees the same WAL snapshot; the recorder keeps writing meanwhile.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress


@contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block in one read transaction (or in the caller's, if one is open).

    Hold it only as long as the reading takes: while it is open the WAL cannot be reset, so a
    long-lived snapshot on a file being recorded makes the WAL grow.
    """
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            with suppress(sqlite3.Error):  # a read transaction has nothing to lose
                conn.execute("COMMIT")
