"""The SQLite schema, its migrations, and how every connection is opened.

Layout, chosen for ingest speed (see docs/architecture.md and docs/benchmarks.md):

* ``batches`` keeps each accepted request body once, exactly as received (the raw JSON array),
  zstd-compressed (see ``store/codec.py``), with a digest so a re-sent batch is recognised and
  counted as a retry instead of stored again. Messages a request repeats from earlier ones are
  left out of its body (``duplicates`` counts them), so every stored message is stored once.
* ``tracks`` holds chunks of one device's messages: the extracted fix columns packed as a JSON
  array of rows (see ``TRACK_COLUMNS``), accumulated across batches and written every couple of
  seconds, so a chunk holds many messages even when a batch holds one per device. The indexes
  answer "messages of device X in session S ordered by time" and "everything in session S between
  t0 and t1". ``sessions.indexed_batch`` says up to which batch the chunks are complete; later
  batches are indexed again from their raw bodies when the file is next opened.
* ``messages`` is a view that unpacks ``tracks`` into one row per message (without the raw JSON,
  which is compressed), for people poking at a recording with the sqlite3 shell. The application
  reads ``tracks`` directly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from app.store.faults import FileId, file_id

#: Order of the values in each packed row of ``tracks.rows``.
TRACK_COLUMNS: tuple[str, ...] = (
    "batch_id", "idx", "ts", "server_ts", "lat", "lon", "alt", "speed", "direction", "satellites", "hdop",
    "valid", "flags",
)

_V1 = """
CREATE TABLE sessions (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL DEFAULT '',
    note        TEXT NOT NULL DEFAULT '',
    started_at  REAL NOT NULL,
    ended_at    REAL,
    indexed_batch INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE batches (
    id           INTEGER PRIMARY KEY,
    session_id   INTEGER NOT NULL REFERENCES sessions(id),
    received_at  REAL NOT NULL,
    peer         TEXT NOT NULL DEFAULT '',
    wire_bytes   INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    flagged      INTEGER NOT NULL DEFAULT 0,
    process_ms   REAL NOT NULL DEFAULT 0,
    retries      INTEGER NOT NULL DEFAULT 0,
    digest       BLOB NOT NULL,
    body         BLOB NOT NULL
);
CREATE INDEX batches_digest ON batches(digest);
CREATE INDEX batches_session ON batches(session_id, received_at);
CREATE TABLE tracks (
    id          INTEGER PRIMARY KEY,
    session_id  INTEGER NOT NULL REFERENCES sessions(id),
    ident       TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    n           INTEGER NOT NULL,
    t_min       REAL NOT NULL,
    t_max       REAL NOT NULL,
    rows        BLOB NOT NULL
);
CREATE INDEX tracks_device_time ON tracks(session_id, ident, t_min);
CREATE INDEX tracks_time ON tracks(session_id, t_min);
CREATE INDEX tracks_device_end ON tracks(session_id, ident, t_max);
CREATE TABLE rejects (
    id           INTEGER PRIMARY KEY,
    session_id   INTEGER REFERENCES sessions(id),
    received_at  REAL NOT NULL,
    peer         TEXT NOT NULL DEFAULT '',
    method       TEXT NOT NULL,
    path         TEXT NOT NULL,
    status       INTEGER NOT NULL,
    reason       TEXT NOT NULL,
    headers      TEXT NOT NULL,
    body         BLOB NOT NULL,
    body_bytes   INTEGER NOT NULL
);
CREATE INDEX rejects_session ON rejects(session_id, received_at);
CREATE VIEW messages AS
SELECT t.session_id AS session_id,
       json_extract(r.value, '$[0]')  AS batch_id,
       json_extract(r.value, '$[1]')  AS batch_index,
       t.ident      AS ident,
       json_extract(r.value, '$[2]')  AS ts,
       json_extract(r.value, '$[3]')  AS server_ts,
       json_extract(r.value, '$[4]')  AS lat,
       json_extract(r.value, '$[5]')  AS lon,
       json_extract(r.value, '$[6]')  AS alt,
       json_extract(r.value, '$[7]')  AS speed,
       json_extract(r.value, '$[8]')  AS direction,
       json_extract(r.value, '$[9]')  AS satellites,
       json_extract(r.value, '$[10]') AS hdop,
       json_extract(r.value, '$[11]') AS valid,
       json_extract(r.value, '$[12]') AS flags
FROM tracks t
JOIN json_each(t.rows) r;
"""

#: Refused requests collapse into bursts: identical refusals (same peer, status, reason, path)
#: close together are one row with how many there were and when the first and last came.
REJECT_BURSTS = """
ALTER TABLE rejects ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE rejects ADD COLUMN last_at REAL;
UPDATE rejects SET last_at = received_at;
"""

#: Per-message de-duplication (see ``store/seen.py``): how many messages of a request were
#: dropped from its stored body as already recorded.
DUPLICATES = """
ALTER TABLE batches ADD COLUMN duplicates INTEGER NOT NULL DEFAULT 0;
"""

#: Batches a stalled stream kept re-sending, accepted as flagged (``--accept-stuck-batches``, see
#: ``server/poison.py``): the whole body as received (zstd), why it was refused and how often.
STUCK_BATCHES = """
CREATE TABLE stuck_batches (
    id           INTEGER PRIMARY KEY,
    session_id   INTEGER REFERENCES sessions(id),
    received_at  REAL NOT NULL,
    peer         TEXT NOT NULL DEFAULT '',
    path         TEXT NOT NULL,
    status       INTEGER NOT NULL,
    reason       TEXT NOT NULL,
    refusals     INTEGER NOT NULL,
    body_bytes   INTEGER NOT NULL,
    digest       BLOB NOT NULL,
    body         BLOB NOT NULL
);
CREATE INDEX stuck_batches_session ON stuck_batches(session_id, received_at);
"""

#: Replay asks, for each device, which chunks begun before those it read reach past them (a
#: tracker uploading buffered history makes chunks overlap). With ``t_min`` in the index the
#: answer comes from the index alone; without it every later chunk's row was looked up (a third
#: of a 1,000-device seek).
TRACKS_END_COVERING = """
DROP INDEX tracks_device_end;
CREATE INDEX tracks_device_end ON tracks(session_id, ident, t_max, t_min);
"""

#: Migrations in order; ``PRAGMA user_version`` records how many have been applied.
MIGRATIONS: tuple[str, ...] = (_V1, REJECT_BURSTS, DUPLICATES, STUCK_BATCHES, TRACKS_END_COVERING)
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The file was written by a newer trackmon; refusing to touch it protects the data."""


class NotTheFile(RuntimeError):
    """The path leads to another file than the one asked for (replaced meanwhile)."""


class RecordingConnection(sqlite3.Connection):
    """A connection that knows which file it opened (`faults.file_id`): what it hands on to a
    child process reading the same recording (`connect(expect=conn.file)`), so that the child
    reads that very file or nothing."""

    file: FileId | None = None


def file_of(conn: sqlite3.Connection) -> FileId | None:
    """The file ``conn`` opened, if `connect` opened it (a plain connection does not say)."""
    return getattr(conn, "file", None)


def connect(path: Path | str, *, sync_full: bool = False, readonly: bool = False,
            create: bool = True, expect: FileId | None = None) -> RecordingConnection:
    """Open (and create or migrate) a recording file with the pragmas trackmon relies on.

    ``expect`` (`faults.file_id` of the file meant): raise `NotTheFile`, having read nothing, if
    the path leads to another file. The connection's ``file`` names the file it opened, for a
    child process to expect. One put there in place of a recording may have that
    recording's -wal and -shm beside it, which SQLite would pair with it (and, on closing, write
    the old file's pages into it); it reads them only at the first statement, checked before.

    WAL lets readers (replay, exports, the UI) run while the recorder writes. With the default
    ``synchronous=NORMAL`` a commit survives the process being killed; ``sync_full`` also makes
    it survive a power cut, at the price of an fsync per batch. ``create=False`` opens only a
    file that exists (the recorder reopening its file must not conjure up an empty one).
    """
    if expect is not None and file_id(path) is None:  # said as such, and never created
        raise NotTheFile(f"the recording file {path} was deleted or moved away")
    if readonly:
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, factory=RecordingConnection)
    elif not create:
        uri = Path(path).resolve().as_uri() + "?mode=rw"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None,
                               factory=RecordingConnection)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, factory=RecordingConnection)
    # SQLite opened the file just now; without ``expect``, what is at the path a microsecond later
    # is taken to be it (a replacement in between goes unseen, as it would a moment earlier).
    conn.file = file_id(path)
    if expect is not None and conn.file != expect:  # before the first statement reads any -wal
        conn.close()
        raise NotTheFile(f"the recording file {path} was " + ("deleted or moved away" if conn.file is None
                                                              else "replaced by another file"))
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {'FULL' if sync_full else 'NORMAL'}")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn)
        else:
            check_version(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def check_version(conn: sqlite3.Connection) -> int:
    """Return the file's schema version, refusing files from a newer trackmon."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"this recording uses schema version {version}; this trackmon understands up to "
            f"{SCHEMA_VERSION}. Upgrade trackmon to open it.")
    return version


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction (the connection is in autocommit mode): committed when the block
    ends, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        # SQLite may already have rolled back (SQLITE_FULL, I/O errors do); the error that got
        # us here is the one to report, not a failing ROLLBACK.
        if conn.in_transaction:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except BaseException:  # not committed (busy, say): never left open, holding the write lock
        if conn.in_transaction:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def migrate(conn: sqlite3.Connection) -> None:
    """Apply every migration the file has not seen yet, each in its own transaction."""
    version = check_version(conn)
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        with transaction(conn):
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";\n") if part.strip()]
