"""Durable recording of batches and rejected requests, written off the event loop.

Every write goes through one dedicated thread that owns the writing connection, so the event
loop stays free to read the next request while SQLite commits (the sqlite3 module releases the
GIL while SQLite works). A batch counts as recorded only once its transaction has committed;
the listener answers 200 after that and not before.

Never lose, never double:

* "committed" means committed to the file at the recorder's path: the path is checked (a stat)
  before and after every write, so a file deleted, moved or replaced while recording is noticed
  and nothing more is acknowledged into it (see `Recorder.problem`, ``store/faults.py``);
* after a failed write the connection is never written through again (it is kept, unused, only
  to retire the file if another one comes to the path), and the next write reopens the file and
  rebuilds what was held in memory (pending chunks, the window of recent messages) from what
  the file holds;
* a message already recorded (``core/message_key.py``, ``store/seen.py``) is dropped from a
  batch, so a retry that was re-cut or grew stores only what is new. Imports keep every point.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import xxhash
from filelock import FileLock, Timeout

from app.core.message_key import content_key, params_content_key, time_keys
from app.core.normalize import Message, normalize, normalize_batch
from app.core.raw_json import select_elements
from app.store.codec import compress_body, decompress_body
from app.store.deriver import DeriverProcess
from app.store.faults import (
    FileId,
    FileReplaced,
    Problem,
    RecordingUnavailable,
    describe,
    file_id,
    gone,
    set_aside,
    write_failure,
)
from app.store.live_fold import encode_command
from app.store.schema import NotTheFile, RecordingConnection, connect, transaction
from app.store.seen import WINDOW, SeenMessages
from app.store.stuck import StuckBatch, insert_stuck
from app.store.track_rows import (
    FLUSH_MESSAGES,
    FLUSH_SECONDS,
    IMPORTING,
    TrackRows,
    complete_chunks,
    derive_stored,
    device_names,
    merge_rows,
    track_rows,
    write_chunks,
)

log = logging.getLogger(__name__)

__all__ = ["BatchResult", "Recorder", "RecordingInUse", "RecordingUnavailable", "Reject"]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What happened to one batch: the row that holds it (or the earlier batch it repeated byte
    for byte), how many of its messages were already recorded, and the messages recorded now
    (the only ones views, tracks and exports get)."""

    batch_id: int
    duplicate: bool  # nothing in it was new
    count: int  # messages in the request
    flagged: int | None  # flagged messages among those recorded now (None: derived later)
    duplicates: int = 0  # messages already recorded, not stored again
    messages: list[Message] = field(default_factory=list)  # recorded now, in the request's order

    @property
    def new(self) -> int:
        """Messages recorded by this request."""
        return self.count - self.duplicates


@dataclass(frozen=True, slots=True)
class Reject:
    """A request that was refused, kept so the user can see what was sent and why it failed."""

    received_at: float
    peer: str
    method: str
    path: str
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    body_bytes: int


@dataclass(frozen=True, slots=True)
class RejectRow:
    """The ``rejects`` row a refusal was kept in, and how many refusals it now stands for."""

    id: int
    count: int
    first_at: float


#: Identical refusals less than this many seconds apart are counted on one row.
REJECT_BURST_WINDOW = 60.0
#: Budget of the rejects table per recording file; the oldest rows go first.
REJECT_MAX_ROWS = 10_000
REJECT_MAX_BYTES = 16 * 1024 * 1024
#: Pruning goes this far below the budget, so it does not run on every insert.
REJECT_PRUNE_TO = 0.9
_REJECT_SIZE = "length(headers) + length(body) + length(path) + length(reason)"
#: A live fold's process that ran at least this long before dying is started again as soon as its
#: output ends, at most once every `REVIVE_EVERY_S`; otherwise (one that died young, or again soon:
#: a fault it would meet again — a damaged batch, no memory for the session) it waits for the next
#: batch, as before: no restart loop without data.
REVIVE_AFTER_S = 1.0
REVIVE_EVERY_S = 60.0


@dataclass(slots=True)
class _Burst:
    id: int
    first_at: float
    last_at: float
    count: int = 1


@dataclass(slots=True)
class _RejectBook:
    """The writer thread's view of the rejects table: its size and the recent bursts."""

    rows: int
    size: int
    bursts: dict[tuple[str, int, str, str], _Burst] = field(default_factory=dict)

    @classmethod
    def load(cls, conn: sqlite3.Connection) -> _RejectBook:
        rows, size = conn.execute(f"SELECT count(*), coalesce(sum({_REJECT_SIZE}), 0) FROM rejects").fetchone()
        return cls(int(rows), int(size))

    def added(self, size: int) -> None:
        self.rows += 1
        self.size += size

    def over_budget(self) -> bool:
        return self.rows > REJECT_MAX_ROWS or self.size > REJECT_MAX_BYTES

    def prune(self, conn: sqlite3.Connection) -> None:
        """Delete the oldest rows until the table is within REJECT_PRUNE_TO of its budget."""
        fresh = _RejectBook.load(conn)  # sessions may have been deleted since the last count
        self.rows, self.size = fresh.rows, fresh.size
        if not self.over_budget():
            return
        keep_rows, keep_size = int(REJECT_MAX_ROWS * REJECT_PRUNE_TO), int(REJECT_MAX_BYTES * REJECT_PRUNE_TO)
        last_id = None
        for row_id, size in conn.execute(f"SELECT id, {_REJECT_SIZE} FROM rejects ORDER BY id").fetchall():
            if self.rows <= keep_rows and self.size <= keep_size:
                break
            last_id, self.rows, self.size = row_id, self.rows - 1, self.size - size
        if last_id is not None:
            conn.execute("DELETE FROM rejects WHERE id <= ?", (last_id,))

    def remember(self, key: tuple[str, int, str, str], burst: _Burst) -> None:
        if len(self.bursts) >= 4096:  # many distinct refusals: forget those whose window has passed
            self.bursts = {k: b for k, b in self.bursts.items() if burst.first_at - b.last_at <= REJECT_BURST_WINDOW}
            if len(self.bursts) >= 4096:
                self.bursts.clear()
        self.bursts[key] = burst


class RecordingInUse(RuntimeError):
    """Another process is already recording into this file."""


def batch_digest(body: bytes) -> bytes:
    """Identity of a batch body; a re-sent batch has the same one (128-bit, ~30 µs per MB)."""
    return xxhash.xxh3_128_digest(body)


@dataclass(slots=True)
class _Written:
    """A batch committed by `Recorder._insert_batch`, for the bookkeeping done once the file
    check after the commit has passed."""

    result: BatchResult
    stored: bool = False  # a new batch row (not a byte-for-byte re-send)
    rows: TrackRows | None = None  # track rows to add to the pending chunks (derived here)
    keys: list[int | None] = field(default_factory=list)  # time keys of the stored messages
    contents: dict[int, bytes | None] = field(default_factory=dict)  # content keys known, by stored index
    flushed: bool = False


@dataclass(slots=True)
class _ImportState:
    """What an import has written so far (track rows not yet in chunks, counts)."""

    session_id: int
    groups: TrackRows = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    new: int = 0
    batches: int = 0
    pending: int = 0
    last: int = 0


@dataclass
class PullTally:
    """What `Recorder.record_pulled` recorded: its session, new messages, ones already held."""

    session_id: int
    new: int = 0
    duplicates: int = 0
    batches: int = 0
    kept: bool = True  # False: nothing was new, and the session was removed again


class AlreadyImported(ValueError):
    """The same file (by content) was imported into this recording before."""

    def __init__(self, session_id: int) -> None:
        super().__init__(f"already imported as session {session_id}")
        self.session_id = session_id


def import_digest(file_digest: bytes, index: int) -> bytes:
    """``batches.digest`` of an imported batch: the file's identity and the batch's place in it
    (never equal to a live batch's digest, so imports and live re-sends never meet)."""
    return batch_digest(b"import:" + file_digest + index.to_bytes(8, "big"))


class Recorder:
    """Owns one recording file: sessions, batches and rejects, written by a single thread.

    ``max_bytes`` caps the file's size: past it, batches are refused like on a full disk.
    ``window`` is how many recent messages are remembered to recognise re-sent ones.
    """

    def __init__(self, path: Path | str, *, sync_full: bool = False, max_bytes: int | None = None,
                 window: int = WINDOW, derive_elsewhere: bool = False,
                 on_frame: Callable[[bytes], None] | None = None) -> None:
        self.path = Path(path)
        #: Track chunks are derived by a child process (`store/deriver.py`) from the committed
        #: bodies, not here: ``trackmon record``, where nothing in this process needs the
        #: normalized messages, so both cores work. `record_keyed` is only for such a recorder.
        #: With ``on_frame`` (the window) a second child folds the current session into the live
        #: fleet and sends its frames there (`store/live_fold`), and the chunks' child runs at a
        #: lower priority (`deriver.BACKGROUND_NICE`); ``derive_elsewhere`` is implied.
        self.derive_elsewhere = derive_elsewhere or on_frame is not None
        self.on_frame = on_frame
        self._fold_commands: dict[str, bytes] = {}  # the live fold's last command of each kind
        self._fold_lock = threading.Lock()
        self._deriver_file: FileId | None = None  # the file the derivers work on
        self._deriver: DeriverProcess | None = None  # the chunks'
        self._fold: DeriverProcess | None = None  # the live fold's (the window's)
        self._closed = False
        self.deriver_restarts = 0
        self._revived_at = float("-inf")  # when a fold's process was last started again on end of output
        self.revive_after_s, self.revive_every_s = REVIVE_AFTER_S, REVIVE_EVERY_S
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sync_full = sync_full
        #: Refuse data once the file would grow past this many bytes (None: no cap). May be
        #: changed while recording; applied before the next write.
        self.max_bytes = max_bytes
        # One writer per file, whatever path leads to it (a symlink included): the lock is taken
        # on the resolved path, and the OS drops it if this process dies.
        self._lock_target = self.path.resolve()
        self._lock = FileLock(f"{self._lock_target}.lock", thread_local=False)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise RecordingInUse(f"{self.path} is being recorded by another trackmon; choose another "
                                 "file with --db") from None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trackmon-writer")
        self._conn: sqlite3.Connection | None = None
        self._lost: sqlite3.Connection | None = None  # open on a file no longer at the path
        #: A connection a write failed on: never written through again, kept open until an open of
        #: the same file succeeds, or another file has come to the path and the old file is retired
        #: through it (its WAL copied into it, its -wal and -shm, still held, set aside).
        self._untrusted: sqlite3.Connection | None = None
        self._file: FileId | None = None  # the file the connection has open
        self._beside: tuple[FileId | None, FileId | None] = (None, None)  # its -wal and -shm
        self._pages: tuple[int | None, int] | None = None  # (max_bytes, page size) applied
        self._problem: Problem | None = None
        #: Counts the different files recorded into at the path (1 after opening): a reader that
        #: saw another value reads a file that is no longer the recording.
        self.file_generation = 0
        self.session_id: int | None = None
        self._session_name = ""
        self._session_started = 0.0
        self._pending: TrackRows = {}  # committed batches whose chunks are not written yet
        self._names: dict[str, str] = {}
        self._pending_count = 0
        self._last_flush = time.monotonic()
        self._window = window
        self._seen = SeenMessages(window)
        self._bodies: dict[int, tuple[float, list[Any]]] = {}  # a few stored batches, read back
        try:
            self._executor.submit(self._open, True).result()
        except BaseException:
            self._executor.shutdown(wait=True)
            self._lock.release()
            raise

    # -- health -----------------------------------------------------------------------------
    @property
    def problem(self) -> str | None:
        """Why nothing is being recorded right now (batches are answered 503), or None."""
        problem = self._problem
        return None if problem is None else problem.text

    @property
    def problem_since(self) -> float | None:
        """Since when (Unix time) the current problem has kept batches out, or None."""
        problem = self._problem
        return None if problem is None else problem.since

    def _set_problem(self, text: str, *, write_failed: bool = False) -> None:
        since = self._problem.since if self._problem is not None else time.time()
        if self._problem is None or self._problem.text != text:
            log.warning("recording refused: %s", text)
        self._problem = Problem(text, since, write_failed)

    # -- the file ---------------------------------------------------------------------------
    def _open(self, first: bool) -> None:
        """Open the file at the path (create it on the first open only), bring its chunks up to
        date and rebuild the window of recent messages. On a reopen, the file now at the path is
        recorded into: the same file moved back, or another one (a restored copy, a new empty
        file); see "Durability" in docs/architecture.md."""
        conn = untrusted = None
        now: FileId | None = None
        if not first:
            now = file_id(self.path)
            if now is None:
                raise RecordingUnavailable(gone(self.path))
            lost, self._lost = self._lost, None
            untrusted, self._untrusted = self._untrusted, None
            if untrusted is not None and untrusted.in_transaction:
                with suppress(sqlite3.Error):  # it would hold the write lock the open needs
                    untrusted.execute("ROLLBACK")
                if untrusted.in_transaction:
                    with suppress(sqlite3.Error):
                        untrusted.close()
                    untrusted = None
            if untrusted is not None and now != self._file:
                # Another file: the old one takes its WAL with it (the deriver's reads would hold
                # the checkpoint up), and what it left at the path is set aside.
                self._stop_deriver()
                self._retire(untrusted)
                untrusted = None
            # The same file: the failed write's connection is let go of once this open has worked
            # (if it fails too, it is kept: it still holds the file for a later retire).
            if lost is not None and now == self._file:
                conn = lost  # the very file (still held open, so not an inode number reused), moved back
            else:
                if lost is not None:
                    self._retire(lost)
                if now != self._file:
                    # What the old file left at the path that no connection of ours held any more
                    # (a reader of it, the window's or a deriver's, kept it there): set aside too.
                    self._set_aside_beside()
                    self._take_over_lock()
        try:
            if conn is None:  # the file judged above, or none (replaced again in between: tried again)
                conn = connect(self.path, sync_full=self.sync_full, create=first, expect=now)
        except BaseException:
            self._untrusted = untrusted
            raise
        try:
            self._conn, self._pages = conn, None
            self._limit_pages()
            with transaction(conn):  # an empty write transaction: cheap, though not a proof the file is writable
                pass
            opened, before = conn.file, self._file
            self._file = opened  # first: a reader seeing the new generation expects this file
            if opened != before:
                self.file_generation += 1  # readers of the old file must open the new one
            if self._deriver is not None and self._deriver_file != opened:
                self._stop_deriver()  # another file: their work is not this file's
            self._beside = (file_id(f"{self.path}-wal"), file_id(f"{self.path}-shm"))
            if first:
                self._drop_unfinished_imports()
            self._recover()
            self._pending.clear()
            self._pending_count = 0
            self._last_flush = time.monotonic()
            self._seen = SeenMessages.load(conn, self._stored_content, self._window)
            if not first:
                self._resume_session()
            if self.derive_elsewhere and self._deriver is None:
                self._start_deriver()
            elif self._deriver is not None:
                self._keep_deriver()  # one that died meanwhile is started again; the other goes on
        except BaseException:
            self._conn = None
            self._untrusted = untrusted
            conn.close()
            raise
        if untrusted is not None:
            with suppress(sqlite3.Error):
                untrusted.close()

    def _retire(self, conn: sqlite3.Connection) -> None:
        """Let go of a file that is no longer at the path (deleted, moved away or replaced).

        Its WAL is copied into it first (a file that was moved away then holds everything), and
        the -wal and -shm it left at the path are set aside: SQLite would otherwise pair them
        with whatever file comes to that path next and apply the old file's pages to it. The
        connection has kept the old files open until now, so their identities cannot have been
        reused by new files."""
        with suppress(sqlite3.Error):
            conn.execute("PRAGMA busy_timeout = 1000")  # a reader of the old file may hold it up
            conn.execute("PRAGMA wal_checkpoint(FULL)")
        self._set_aside_beside()
        with suppress(sqlite3.Error):
            conn.close()

    def _set_aside_beside(self) -> None:
        """Rename the -wal and -shm the old file left at the path, if they are still there."""
        for suffix, old in zip(("-wal", "-shm"), self._beside, strict=True):
            moved = set_aside(Path(f"{self.path}{suffix}"), old)
            if moved is not None:
                log.warning("set aside %s (left by the recording file that was at %s)", moved, self.path)

    def _take_over_lock(self) -> None:
        """The path now leads to another file (a symlink re-pointed): hold that file's lock."""
        target = self.path.resolve()
        if target == self._lock_target:
            return
        lock = FileLock(f"{target}.lock", thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RecordingUnavailable(f"{self.path} now leads to {target}, which another trackmon is "
                                       "recording") from None
        self._lock.release()
        self._lock, self._lock_target = lock, target

    def _resume_session(self) -> None:
        """After a reopen: keep recording into the current session if this file holds it (the
        same file, or a copy of it), else start a new session of the same name in this file."""
        conn = self._conn
        assert conn is not None
        if self.session_id is None:
            return
        row = conn.execute("SELECT started_at FROM sessions WHERE id = ?", (self.session_id,)).fetchone()
        if row is not None and row[0] == self._session_started:
            conn.execute("UPDATE sessions SET ended_at = NULL WHERE id = ? AND ended_at IS NOT NULL",
                         (self.session_id,))
            return
        self._session_started = time.time()
        self.session_id = int(conn.execute("INSERT INTO sessions (name, started_at) VALUES (?, ?)",
                                           (self._session_name, self._session_started)).lastrowid or 0)
        log.warning("recording continues in session %d of the file now at %s", self.session_id, self.path)
        self._folding(self.session_id)

    def _limit_pages(self) -> None:
        """Apply ``max_bytes`` as SQLite's page limit (a write past it fails like a full disk)."""
        conn = self._conn
        assert conn is not None
        if self._pages is not None and self._pages[0] == self.max_bytes:
            return
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = 0xFFFFFFFE if self.max_bytes is None else max(1, self.max_bytes // page_size)
        conn.execute(f"PRAGMA max_page_count = {int(pages)}")
        self._pages = (self.max_bytes, page_size)

    @property
    def file_identity(self) -> FileId | None:
        """The file this recorder records into (or did last, while the path leads nowhere usable),
        as `faults.file_id` names it: what a reader of the recording expects at the path."""
        return self._file

    def open_reader(self) -> RecordingConnection:
        """A read-only connection on the recording; from any thread but the writer's.

        Another file put at the path (a restored copy) is recorded into from the next batch on,
        and until then the old file's -wal is still beside it: a reader opening the path would
        see the old file's sessions as the new one's (SQLite pairs them). So the reader checks
        that the path leads to the recorder's file, and if it does not, the recorder moves to the
        file at the path now, as the next batch would have it do (setting the old -wal aside,
        migrating the file, going on in a session of its own there), and the reader reads that
        one. May wait behind a batch being written and that move (seconds on a large file): not
        for the GUI thread. Raises `RecordingUnavailable` (why, in words) when no recording can
        be read at the path."""
        assert not threading.current_thread().name.startswith("trackmon-writer"), "it would wait for itself"
        if file_id(self.path) is None:
            raise RecordingUnavailable(f"the recording file {self.path} was deleted or moved away: move it back "
                                       "to read it")
        try:
            return connect(self.path, readonly=True, expect=self._file)
        except NotTheFile:
            pass
        try:
            future = self._executor.submit(self._follow_path)
        except RuntimeError:  # the executor is shut down: closed
            raise RecordingUnavailable(f"the recording of {self.path} has been closed") from None
        future.result()
        return connect(self.path, readonly=True, expect=self._file)

    def _follow_path(self) -> None:
        if self._closed:  # a reader's late request must not open the file again
            raise RecordingUnavailable(f"the recording of {self.path} has been closed")
        if file_id(self.path) == self._file:  # moved to it meanwhile (or moved back): nothing to follow
            return
        self._writable_here()

    def _writable_here(self) -> sqlite3.Connection:
        """`_writable`, for a job that is not a batch: on the file at the path (moved to if need
        be), what kept the old file from being written is over once it is; a failed write's problem
        stays (a full disk, failing writes: only a batch written shows it is over)."""
        before = self._problem
        conn = self._writable()
        self._problem = before if before is not None and before.write_failed else None
        return conn

    def _same_file(self) -> bool:
        return self._conn is not None and file_id(self.path) == self._file

    def _writable(self) -> sqlite3.Connection:
        """The writing connection, checked to be on the file at the path; reopened if the last
        write failed or the file was replaced. Raises `RecordingUnavailable` if it cannot be."""
        if self._conn is not None and not self._same_file():
            self._lose()
        if self._conn is None:
            try:
                self._open(first=False)
            except Exception as exc:
                self._set_problem(describe(exc, self.path), write_failed=write_failure(exc))
                raise RecordingUnavailable(self.problem or str(exc)) from exc
        self._limit_pages()
        assert self._conn is not None
        return self._conn

    def _forget_memory(self) -> None:
        """Drop what is held in memory about the file; it is rebuilt from the file on reopen."""
        self._pending.clear()
        self._pending_count = 0
        self._bodies.clear()
        self._rejects = None  # after a reopen the file may be another one

    def _start_deriver(self) -> None:
        """The derivers of this file: the chunks' and, in the window, the live fold's."""
        self._deriver_file = self._file
        self._start_chunks()
        if self.on_frame is not None:
            self._start_fold()

    def _start_chunks(self) -> None:
        """A deriver for the batches not in chunks yet (after recovery: those still to come)."""
        conn = self._conn
        assert conn is not None
        behind = conn.execute(
            "SELECT min(s.indexed_batch) FROM sessions s WHERE s.indexed_batch >= 0 AND EXISTS "
            "(SELECT 1 FROM batches b WHERE b.session_id = s.id AND b.id > s.indexed_batch)").fetchone()[0]
        after = behind if behind is not None else conn.execute("SELECT coalesce(max(id), 0) FROM batches").fetchone()[0]
        page_count = conn.execute("PRAGMA max_page_count").fetchone()[0] if self.max_bytes else None
        self._deriver = DeriverProcess(self.path, int(after), page_count, background=self.on_frame is not None,
                                       file=self._file)

    def _start_fold(self) -> None:
        """The window's live fold, in a process of its own (it writes nothing to the file; it
        starts from the session's first batch)."""
        assert self.on_frame is not None
        with self._fold_lock:  # no command the window gives meanwhile is lost: it waits a few ms
            self._fold = DeriverProcess(self.path, 0, on_frame=self.on_frame, fold_session=self.session_id or 0,
                                        commands=[line for name, line in self._fold_commands.items()
                                                  if name != "session"],  # --fold says it
                                        on_exit=self._deriver_output_ended, file=self._file)

    def _keep_deriver(self) -> None:
        """A deriver that died (killed, out of memory) is started again; its work is redone from
        the chunk marks, so nothing is chunked twice or left out (the live fold's: from the
        session's first batch)."""
        deriver, fold = self._deriver, self._fold
        if deriver is not None and not deriver.running():
            log.warning("the process deriving track chunks of %s ended (%s); starting it again", self.path,
                        deriver.exit_status())
            self.deriver_restarts += 1
            self._start_chunks()
        if fold is not None and not fold.running():
            log.warning("the process folding the live view of %s ended (%s); starting it again", self.path,
                        fold.exit_status())
            self.deriver_restarts += 1
            self._start_fold()
        elif fold is None and self.on_frame is not None:  # its start failed (no process to be had)
            self._start_fold()

    def _deriver_output_ended(self, deriver: DeriverProcess) -> None:
        """On the frame reader thread: the live fold's process closed its output. If it died
        (killed, out of memory) it is started again now rather than at the next batch: the window
        waits for the frames of batches already committed, and a stream may have gone quiet."""
        now = time.monotonic()
        lived_long = now - deriver.started >= self.revive_after_s
        if not self._closed and lived_long and now - self._revived_at >= self.revive_every_s:
            with suppress(RuntimeError):  # closing meanwhile: the writer takes no more jobs
                self._executor.submit(self._revive_deriver, deriver)

    def _revive_deriver(self, deriver: DeriverProcess) -> None:
        # The writer thread: only the fold in use, on the file still open, and only once dead.
        if self._fold is deriver and not self._closed and self._same_file() and deriver.ended(2.0):
            self._revived_at = time.monotonic()
            self._keep_deriver()

    def _stop_deriver(self) -> None:
        """End the derivers without more writes (the file is not trusted or gone): what they had
        not written is derived again by the recovery of the next open."""
        deriver, self._deriver = self._deriver, None
        with self._fold_lock:
            fold, self._fold = self._fold, None
        for child in (fold, deriver):
            if child is not None:
                child.stop()

    def _stored_content(self, batch_id: int, index: int) -> bytes | None:
        """Content key of a stored message (read back to compare a possible re-send with it)."""
        found = self._bodies.get(batch_id)
        if found is None:
            assert self._conn is not None
            received_at, body = self._conn.execute("SELECT received_at, body FROM batches WHERE id = ?",
                                                   (batch_id,)).fetchone()
            found = (received_at, orjson.loads(decompress_body(body)))
            if len(self._bodies) >= 8:
                self._bodies.pop(next(iter(self._bodies)))
            self._bodies[batch_id] = found
        return content_key(normalize(found[1][index], found[0]))

    def _lose(self) -> None:
        """The file at the path is not the one open (deleted, moved, replaced): stop writing.
        The connection is kept open, unused, to recognise the file if it is moved back."""
        conn, self._conn = self._conn, None
        self._forget_memory()
        self._stop_deriver()
        if conn is not None:
            with suppress(sqlite3.Error):  # best effort: a file moved away then holds everything
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            if self._lost is not None:
                self._retire(self._lost)
            self._lost = conn
        self._set_problem(gone(self.path) if file_id(self.path) is None else
                          f"the recording file {self.path} was replaced by another file")

    def _failed(self, exc: BaseException) -> RecordingUnavailable:
        """A write failed: the connection is not written through again (kept, unused, as
        `_untrusted`); the next write reopens. The
        deriver goes on (its own writes wait for the disk as ours do) unless the reopen finds
        another file at the path: starting it again for every refused retry would fold the live
        session again from its start each time."""
        log.debug("write failed", exc_info=exc)
        conn, self._conn = self._conn, None
        self._forget_memory()
        if conn is not None:
            if self._untrusted is not None:
                with suppress(sqlite3.Error):
                    self._untrusted.close()
            self._untrusted = conn
        self._set_problem(describe(exc, self.path), write_failed=True)
        return RecordingUnavailable(self.problem or str(exc))

    def _checked(self) -> None:
        """After a commit: the data is in the file at the path, or it is not acknowledged."""
        if not self._same_file():
            self._lose()
            raise RecordingUnavailable(self.problem)
        self._problem = None

    def _guarded(self, job: Callable[..., Any], *args: Any, file: FileId | None = None) -> Any:
        """Run a write job (in the writer thread) on a checked connection; see `_writable`. With
        ``file``, only on that file (`_run_in`)."""
        if file is None:
            self._writable()
        else:
            self._writable_here()
            if self._file != file:
                raise FileReplaced(f"the recording file {self.path} was replaced by another file since the "
                                   "sessions were listed: nothing was changed; choose again from the list read now")
        try:
            result = job(*args)
        except Exception as exc:
            raise self._failed(exc) from exc
        self._checked()
        return result

    def _run(self, job: Callable[..., Any], *args: Any) -> Any:
        """Run a write job in the writer thread and wait for it."""
        return self._run_in(None, job, *args)

    def _run_in(self, file: FileId | None, job: Callable[..., Any], *args: Any) -> Any:
        """`_run`, on the file ``file`` names (None: any): a session listed in one file is another
        session, or none, in a file that has replaced it since (a restored copy), so a change the
        user chose there is refused (`FileReplaced`) rather than made to the wrong session. The
        recorder moves to the file at the path first, as for any write."""
        return self._executor.submit(partial(self._guarded, job, *args, file=file)).result()

    def _drop_unfinished_imports(self) -> None:
        """Delete sessions an import left marked as importing (the process died during it):
        an import is all or nothing. Only on the first open: later reopens happen while this
        process may be importing."""
        conn = self._conn
        assert conn is not None
        with transaction(conn):
            for table in ("tracks", "batches"):
                conn.execute(f"DELETE FROM {table} WHERE session_id IN "
                             f"(SELECT id FROM sessions WHERE indexed_batch = {IMPORTING})")
            conn.execute(f"DELETE FROM sessions WHERE indexed_batch = {IMPORTING}")

    def _recover(self) -> None:
        """Write the chunks of batches committed after the last chunk flush (the process died
        before it could, or a write failed). The raw bodies are the truth; chunks derive from them.
        A deriver process left over from a recorder that was killed may still be finishing the
        same batches: whoever commits second finds the mark moved and derives again from there."""
        conn = self._conn
        assert conn is not None
        while True:
            behind = conn.execute(
                "SELECT s.id, s.indexed_batch FROM sessions s JOIN batches b ON b.session_id = s.id "
                f"WHERE s.indexed_batch != {IMPORTING} GROUP BY s.id HAVING max(b.id) > s.indexed_batch").fetchall()
            if not behind:
                return
            for session_id, indexed in behind:
                derived = derive_stored(conn.execute(
                    "SELECT id, received_at, body FROM batches WHERE session_id = ? AND id > ? ORDER BY id",
                    (session_id, indexed)))
                complete_chunks(conn, session_id, derived, derived.names, indexed)

    # -- sessions ---------------------------------------------------------------------------
    def start_session(self, name: str = "", *, append: bool = False) -> int:
        """Begin recording into a new session, or into the most recent one with ``append``."""
        return int(self._run(self._start_session, name, append))

    def _start_session(self, name: str, append: bool) -> int:
        self._flush_now()
        conn = self._conn
        assert conn is not None
        if self.session_id is not None:  # the session recorded so far ends here
            conn.execute("UPDATE sessions SET ended_at = ? WHERE id = ?", (time.time(), self.session_id))
        if append:
            row = conn.execute("SELECT id, name, started_at FROM sessions ORDER BY id DESC LIMIT 1").fetchone()
            if row is not None:
                conn.execute("UPDATE sessions SET ended_at = NULL WHERE id = ?", (row[0],))
                self.session_id, self._session_name, self._session_started = int(row[0]), row[1], row[2]
                self._folding(self.session_id)
                return self.session_id
        started = time.time()
        cursor = conn.execute("INSERT INTO sessions (name, started_at) VALUES (?, ?)", (name, started))
        self.session_id, self._session_name, self._session_started = int(cursor.lastrowid or 0), name, started
        self._folding(self.session_id)
        return self.session_id

    def _folding(self, session_id: int) -> None:
        if self.on_frame is not None:
            self.fold_command("session", session_id)

    def fold_command(self, name: str, value: Any) -> None:
        """Tell the live fold (`store/live_fold`: ``session``, ``select``, ``thresholds``,
        ``trail``); kept and told again to a deriver started later. Only for a recorder with
        ``on_frame``."""
        line = encode_command(name, value)
        with self._fold_lock:  # the GUI thread tells, the writer thread starts derivers
            self._fold_commands[name] = line
            fold = self._fold
            if fold is not None:
                fold.send(line)

    def _require_session(self) -> int:
        if self.session_id is None:
            raise RuntimeError("start_session() must be called before recording")
        return self.session_id

    # -- batches ----------------------------------------------------------------------------
    async def record_batch(self, *, received_at: float, peer: str, wire_bytes: int, body: bytes,
                           messages: list[Message], process_ms: float) -> BatchResult:
        """Commit one batch (off the loop) and return only once it is durable in the file at
        the recorder's path. Raises `RecordingUnavailable` when it is not."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self.write_batch, received_at, peer, wire_bytes, body, messages,
            process_ms)

    async def record_keyed(self, *, received_at: float, peer: str, wire_bytes: int, body: bytes,
                           keys: list[int | None], process_ms: float) -> BatchResult:
        """`record_batch` for a body known only by its messages' time keys (a flat JSON array of
        objects, proven by `server.keyed_body`): committed as it came, derived afterwards by the
        deriver process. Only for a recorder made with ``derive_elsewhere``. The result carries
        no messages, and ``flagged`` is None: not known until derived."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self.write_keyed, received_at, peer, wire_bytes, body, keys, process_ms)

    def write_batch(self, received_at: float, peer: str, wire_bytes: int, body: bytes,
                    messages: list[Message], process_ms: float) -> BatchResult:
        """Synchronous form of `record_batch`; runs in the writer thread. ``body`` is the JSON
        array ``messages`` were normalized from, one message per element."""
        keys = time_keys(messages)
        return self._write(received_at, peer, wire_bytes, body, keys, lambda index: content_key(messages[index]),
                           messages, process_ms)

    def write_keyed(self, received_at: float, peer: str, wire_bytes: int, body: bytes,
                    keys: list[int | None], process_ms: float) -> BatchResult:
        """Synchronous form of `record_keyed`; runs in the writer thread."""
        if not self.derive_elsewhere:
            raise RuntimeError("record_keyed needs a recorder that derives elsewhere")
        parsed: list[Any] = []

        def content_of(index: int) -> bytes | None:  # a possible re-send: parse the batch, once
            if not parsed:
                parsed.extend(orjson.loads(body))
            return params_content_key(parsed[index])

        return self._write(received_at, peer, wire_bytes, body, keys, content_of, None, process_ms)

    def _write(self, received_at: float, peer: str, wire_bytes: int, body: bytes, keys: list[int | None],
               content_of: Callable[[int], bytes | None], messages: list[Message] | None,
               process_ms: float) -> BatchResult:
        conn = self._writable()  # a reopen may move recording into a new session (another file)
        session_id = self._require_session()
        try:
            written = self._insert_batch(conn, session_id, received_at, peer, wire_bytes, body, keys, content_of,
                                         messages, process_ms)
        except Exception as exc:
            raise self._failed(exc) from exc
        self._checked()
        if self._deriver is not None:
            try:
                self._keep_deriver()
            except OSError as exc:  # no process to be had now (EAGAIN, ENOMEM): the batch is in; next batch
                log.warning("could not start a deriver of %s again: %s", self.path, exc)
        if written.stored:  # committed and in the file: now the memory may follow
            if written.flushed:
                self._pending.clear()
                self._pending_count = 0
                self._last_flush = time.monotonic()
            elif written.rows is not None:
                merge_rows(self._pending, written.rows)
                self._pending_count += written.result.new
            self._seen.add(written.result.batch_id, written.keys, written.contents, self._stored_content)
        return written.result

    def _insert_batch(self, conn: sqlite3.Connection, session_id: int, received_at: float, peer: str,
                      wire_bytes: int, body: bytes, keys: list[int | None],
                      content_of: Callable[[int], bytes | None], messages: list[Message] | None,
                      process_ms: float) -> _Written:
        """Commit a batch's new messages (and, when due and derived here, the pending chunks
        with them). ``messages`` None: the batch is derived by the deriver process."""
        count = len(keys)
        digest = batch_digest(body)
        # Re-sent byte for byte (the common retry): one indexed look-up, before any per-message work.
        earlier = conn.execute("SELECT id FROM batches WHERE digest = ? ORDER BY id LIMIT 1", (digest,)).fetchone()
        if earlier is not None:  # count it, store nothing (this thread is the only writer)
            with transaction(conn):
                conn.execute("UPDATE batches SET retries = retries + 1 WHERE id = ?", (earlier[0],))
            return _Written(BatchResult(int(earlier[0]), True, count, 0, count))
        verdict = self._seen.check_keys(keys, content_of, self._stored_content)
        dropped, contents = verdict.duplicates, verdict.contents
        kept = count - len(dropped)
        with transaction(conn):
            stored = body
            if dropped:  # re-sent messages in a batch cut differently: store only the new ones
                drop = set(dropped)
                keep = [i for i in range(count) if i not in drop]
                stored = select_elements(body, keep)  # byte for byte, as the sender wrote them
                if messages is not None:
                    messages = [messages[i] for i in keep]
                keys = [keys[i] for i in keep]
                contents = {new: contents[old] for new, old in enumerate(keep) if old in contents}
            flagged = None if messages is None else sum(1 for m in messages if m.flags)
            batch_id = int(conn.execute(
                "INSERT INTO batches (session_id, received_at, peer, wire_bytes, count, flagged,"
                " process_ms, duplicates, digest, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, received_at, peer, wire_bytes, kept, flagged or 0, process_ms,
                 len(dropped), digest, compress_body(stored))).lastrowid or 0)
            rows = None
            flush = False
            if messages is not None and not self.derive_elsewhere:
                rows = track_rows(batch_id, messages)
                device_names(messages, self._names)
                flush = (self._pending_count + len(messages) >= FLUSH_MESSAGES
                         or time.monotonic() - self._last_flush >= FLUSH_SECONDS)
                if flush:
                    merge_rows(self._pending, rows)  # dropped with the connection if this fails
                    self._flush_pending(session_id, batch_id)
        result = BatchResult(batch_id, bool(dropped) and not kept, count, flagged, len(dropped),
                             messages if messages is not None else [])
        return _Written(result, True, rows, keys, contents, flush)

    def _flush_now(self) -> None:
        """Write whatever chunks are pending, in their own transaction."""
        if not self._pending or self.session_id is None:
            return
        conn = self._conn
        assert conn is not None
        last = conn.execute("SELECT max(id) FROM batches WHERE session_id = ?", (self.session_id,)).fetchone()
        with transaction(conn):
            self._flush_pending(self.session_id, int(last[0]))
        self._pending.clear()
        self._pending_count = 0
        self._last_flush = time.monotonic()

    def _flush_pending(self, session_id: int, through_batch: int) -> None:
        """Write pending chunks inside the caller's transaction."""
        conn = self._conn
        assert conn is not None
        write_chunks(conn, session_id, self._pending, self._names)
        conn.execute("UPDATE sessions SET indexed_batch = ? WHERE id = ?", (through_batch, session_id))

    def rename_session(self, session_id: int, name: str, *, file: FileId | None = None) -> None:
        """Give a session a name. ``file``: the file the session was listed in (see `_run_in`)."""
        self._run_in(file, self._update_session, "name", session_id, name)

    def set_note(self, session_id: int, note: str, *, file: FileId | None = None) -> None:
        """Attach a free-text note to a session (``file``: as for `rename_session`)."""
        self._run_in(file, self._update_session, "note", session_id, note)

    def _update_session(self, column: str, session_id: int, value: str) -> None:
        assert column in ("name", "note")
        assert self._conn is not None
        self._conn.execute(f"UPDATE sessions SET {column} = ? WHERE id = ?", (value, session_id))
        if column == "name" and session_id == self.session_id:
            self._session_name = value

    def import_session(self, name: str, batches: Iterable[list[Any]], file_digest: bytes) -> tuple[int, int]:
        """Record ``batches`` of raw messages into a new, closed session beside the live one.
        Returns (session id, messages recorded). Raises `AlreadyImported` when a file with the
        same ``file_digest`` is in this recording already.

        ``batches`` is consumed (a file parsed) in the calling thread; the writer thread gets one
        short job per batch, so live batches keep being recorded in between. Every message is
        kept (imports stay out of the live de-duplication, see `SeenMessages`), and chunks are
        written every `FLUSH_MESSAGES`, so memory stays bounded however large the file.

        All or nothing: until the last job the session is marked as importing
        (``indexed_batch = IMPORTING``), which hides it from session lists and from "the most
        recent session"; if anything fails (the file, the disk), the session is deleted, and a
        session left marked by a crash is deleted when the file is next opened."""
        earlier = self._run(self._imported_as, file_digest)
        if earlier is not None:
            raise AlreadyImported(earlier)
        state = _ImportState(session_id=self._run(self._create_import_session, name))
        try:
            # One batch is written while the next is parsed (at most two in flight: bounded).
            pending = None
            for raws in batches:
                job = self._executor.submit(self._guarded, self._import_batch, state, raws, file_digest)
                if pending is not None:
                    pending.result()
                pending = job
            if pending is not None:
                pending.result()
            self._run(self._finish_import, state)
        except BaseException:
            with suppress(Exception):
                self._run(self._delete_session, state.session_id)
            raise
        return state.session_id, state.new

    def _imported_as(self, file_digest: bytes) -> int | None:
        """The session a file with this digest was imported into, if any."""
        assert self._conn is not None
        row = self._conn.execute("SELECT session_id FROM batches WHERE digest = ?",
                                 (import_digest(file_digest, 0),)).fetchone()
        return None if row is None else int(row[0])

    def _create_import_session(self, name: str) -> int:
        conn = self._conn
        assert conn is not None
        now = time.time()
        return int(conn.execute("INSERT INTO sessions (name, started_at, ended_at, indexed_batch) VALUES (?, ?, ?, ?)",
                                (name, now, now, IMPORTING)).lastrowid or 0)

    def _import_batch(self, state: _ImportState, raws: list[Any], file_digest: bytes) -> None:
        conn = self._conn
        assert conn is not None
        body = orjson.dumps(raws)
        now = time.time()
        messages = normalize_batch(raws, now, body)
        with transaction(conn):
            if conn.execute("SELECT indexed_batch FROM sessions WHERE id = ?",
                            (state.session_id,)).fetchone() != (IMPORTING,):
                raise RuntimeError("the session being imported was removed")
            state.last = int(conn.execute(
                "INSERT INTO batches (session_id, received_at, peer, wire_bytes, count, flagged, digest, body)"
                " VALUES (?, ?, 'import', ?, ?, ?, ?, ?)",
                (state.session_id, now, len(body), len(raws), sum(1 for m in messages if m.flags),
                 import_digest(file_digest, state.batches), compress_body(body))).lastrowid or 0)
            merge_rows(state.groups, track_rows(state.last, messages))
            device_names(messages, state.names)
            state.new += len(raws)
            state.batches += 1
            state.pending += len(raws)
            if state.pending >= FLUSH_MESSAGES:  # chunks as we go: memory stays flat
                write_chunks(conn, state.session_id, state.groups, state.names)
                state.groups, state.pending = {}, 0

    def _finish_import(self, state: _ImportState) -> None:
        conn = self._conn
        assert conn is not None
        with transaction(conn):
            if state.groups:
                write_chunks(conn, state.session_id, state.groups, state.names)
            conn.execute("UPDATE sessions SET indexed_batch = ?, ended_at = ? WHERE id = ?",
                         (state.last, time.time(), state.session_id))

    async def record_pulled(self, name: str, pages: AsyncIterable[list[Any]], peer: str = "flespi-pull") -> PullTally:
        """Record pages of messages pulled from elsewhere (flespi's stored history) into a new
        session, all or nothing like an import — but, unlike an import, each message already in
        this recording (delivered by a stream, pulled before) is left out, as for a live batch:
        the file holds every message once. ``pages`` are fetched on the loop; each is written by
        the writer thread. Cancelled or failed, the session is deleted and the window of recent
        messages rebuilt from the file."""
        loop = asyncio.get_running_loop()
        tally = PullTally(await loop.run_in_executor(self._executor, self._guarded, self._create_import_session, name))
        state = _ImportState(session_id=tally.session_id)
        try:
            async for raws in pages:
                if raws:
                    await loop.run_in_executor(self._executor, self._guarded, self._pull_batch, state, raws, peer,
                                               tally)
            if tally.new:
                await loop.run_in_executor(self._executor, self._guarded, self._finish_import, state)
            else:  # nothing new: no empty session is left behind
                await loop.run_in_executor(self._executor, self._guarded, self._delete_session, tally.session_id)
                tally.kept = False
        except BaseException:
            with suppress(Exception):
                await asyncio.shield(loop.run_in_executor(self._executor, self._guarded, self._delete_session,
                                                          tally.session_id))
            raise
        return tally

    def _pull_batch(self, state: _ImportState, raws: list[Any], peer: str, tally: PullTally) -> None:
        conn = self._conn
        assert conn is not None
        body = orjson.dumps(raws)
        now = time.time()
        messages = normalize_batch(raws, now, body)
        verdict = self._seen.check(messages, self._stored_content)
        keys, contents = verdict.keys, verdict.contents
        stored = body
        if verdict.duplicates:
            drop = set(verdict.duplicates)
            keep = [i for i in range(len(messages)) if i not in drop]
            stored = select_elements(body, keep)
            messages = [messages[i] for i in keep]
            keys = [keys[i] for i in keep]
            contents = {new: contents[old] for new, old in enumerate(keep) if old in contents}
        with transaction(conn):
            if conn.execute("SELECT indexed_batch FROM sessions WHERE id = ?",
                            (state.session_id,)).fetchone() != (IMPORTING,):
                raise RuntimeError("the session being pulled into was removed")
            state.last = int(conn.execute(
                "INSERT INTO batches (session_id, received_at, peer, wire_bytes, count, flagged, duplicates, digest,"
                " body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (state.session_id, now, peer, len(body), len(messages), sum(1 for m in messages if m.flags),
                 len(verdict.duplicates), batch_digest(body), compress_body(stored))).lastrowid or 0)
            merge_rows(state.groups, track_rows(state.last, messages))
            device_names(messages, state.names)
            state.pending += len(messages)
            if state.pending >= FLUSH_MESSAGES:
                write_chunks(conn, state.session_id, state.groups, state.names)
                state.groups, state.pending = {}, 0
        self._seen.add(state.last, keys, contents, self._stored_content)
        tally.new += len(messages)
        tally.duplicates += len(verdict.duplicates)
        tally.batches += 1

    def delete_session(self, session_id: int, *, file: FileId | None = None) -> None:
        """Remove a session and everything recorded in it (``file``: as for `rename_session`)."""
        self._run_in(file, self._delete_session, session_id)

    def _delete_session(self, session_id: int) -> None:
        if session_id == self.session_id:
            self._flush_now()
        assert self._conn is not None
        with transaction(self._conn) as conn:
            for table in ("tracks", "batches", "rejects", "stuck_batches"):
                conn.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        self._bodies.clear()
        self._seen = SeenMessages.load(self._conn, self._stored_content, self._window)
        if session_id == self.session_id:
            self.session_id = None

    # -- rejects ----------------------------------------------------------------------------
    _rejects: _RejectBook | None = None  # the writer thread's; loaded by the first write_reject

    async def record_reject(self, reject: Reject) -> RejectRow:
        """Keep a refused request with its reason; returns the row that now stands for it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.write_reject, reject)

    def write_reject(self, reject: Reject) -> RejectRow:
        """Synchronous form of `record_reject`; runs in the writer thread, on a checked file."""
        return self._guarded(self._insert_reject, reject)

    def _insert_reject(self, reject: Reject) -> RejectRow:
        """An identical refusal (same peer, status, reason and path, whatever its query string)
        within REJECT_BURST_WINDOW of the previous one only counts on that one's row, which keeps
        the first one's details; the table is kept within REJECT_MAX_ROWS and REJECT_MAX_BYTES by
        dropping the oldest rows."""
        assert self._conn is not None
        rejects = self._rejects
        if rejects is None:
            rejects = self._rejects = _RejectBook.load(self._conn)
        key = (reject.peer, reject.status, reject.reason, reject.path.partition("?")[0])
        burst = rejects.bursts.get(key)
        if burst is not None and reject.received_at - burst.last_at <= REJECT_BURST_WINDOW:
            cursor = self._conn.execute("UPDATE rejects SET count = count + 1, last_at = ? WHERE id = ?",
                                        (reject.received_at, burst.id))
            if cursor.rowcount:
                burst.count += 1
                burst.last_at = reject.received_at
                return RejectRow(burst.id, burst.count, burst.first_at)
        headers = orjson.dumps(reject.headers).decode()
        with transaction(self._conn) as conn:
            row_id = int(conn.execute(
                "INSERT INTO rejects (session_id, received_at, peer, method, path, status, reason,"
                " headers, body, body_bytes, count, last_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
                (self.session_id, reject.received_at, reject.peer, reject.method, reject.path,
                 reject.status, reject.reason, headers, reject.body, min(reject.body_bytes, 2**63 - 1),
                 reject.received_at)).lastrowid or 0)
            rejects.added(len(headers) + len(reject.body) + len(reject.path) + len(reject.reason))
            if rejects.over_budget():
                rejects.prune(conn)
        rejects.remember(key, _Burst(row_id, reject.received_at, reject.received_at))
        return RejectRow(row_id, 1, reject.received_at)

    # -- stuck batches (server/poison.py) ---------------------------------------------------
    async def record_stuck(self, stuck: StuckBatch) -> int:
        """Keep a batch a stalled stream kept re-sending, whole; returns its ``stuck_batches`` id.
        Committed (into the file at the path) before it returns, like a batch."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._guarded, self._insert_stuck, stuck)

    def _insert_stuck(self, stuck: StuckBatch) -> int:
        assert self._conn is not None
        with transaction(self._conn) as conn:
            return insert_stuck(conn, self.session_id, stuck)

    # -- lifetime ---------------------------------------------------------------------------
    def close(self) -> None:
        """Mark the session as ended and release the file (after writing pending chunks, if the
        file is still there to take them)."""
        if self._closed:  # closed already: nothing more to release
            return
        self._closed = True

        def _close() -> None:
            if self._lost is not None:
                self._retire(self._lost)
                self._lost = None
            conn = self._conn
            if conn is None:
                self._stop_deriver()  # one kept after a failed write (the file is not open now)
                untrusted, self._untrusted = self._untrusted, None
                if untrusted is not None and file_id(self.path) != self._file:
                    self._retire(untrusted)  # moved away or replaced meanwhile: it takes its WAL with it
                elif untrusted is not None:
                    with suppress(sqlite3.Error):
                        untrusted.close()
                return
            try:
                if self._same_file():
                    self._flush_now()
                    with self._fold_lock:
                        fold, self._fold = self._fold, None
                    if fold is not None:
                        fold.finish()  # at once: it has nothing to write
                    deriver, self._deriver = self._deriver, None
                    if deriver is not None and not deriver.finish():
                        log.warning("track chunks of %s not finished; they are derived on the next open", self.path)
                    if self.session_id is not None:
                        conn.execute("UPDATE sessions SET ended_at = ? WHERE id = ?", (time.time(), self.session_id))
            except sqlite3.Error as exc:  # the chunks are rebuilt from the raw batches on the next open
                log.warning("could not finish the session in %s: %s", self.path, exc)
            finally:
                self._conn = None
                self._stop_deriver()
                conn.close()
        try:
            self._executor.submit(_close).result()
        finally:
            self._executor.shutdown(wait=True)
            self._lock.release()
