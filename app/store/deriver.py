"""Track chunks derived from committed batches by a process of its own, so both cores work.

``trackmon record`` and the window acknowledge a batch once its raw body is committed
(`Recorder.record_keyed`): the fix, the flags and the per-device track chunks are derived here,
afterwards, from the committed bodies — exactly what start-up recovery does, on the second core
instead of the listener's. Readers never wait for it: exports, replay and session lists read the
chunks up to ``sessions.indexed_batch`` and the raw batches after it (``store/snapshot.py``). For
the window, a second child folds the current session into the live fleet (`store/live_fold`) and
writes its frames on its standard output; it writes nothing to the file. The window's chunk child
runs at a lower priority (`BACKGROUND_NICE`): during a backlog the fold is what the user waits for.

The child polls the file for batches newer than the last it has seen and commits chunks every
`FLUSH_SECONDS` or `FLUSH_MESSAGES` per session, each with a compare-and-set of the session's
chunk mark (`track_rows.complete_chunks`). Its parent (`DeriverProcess`) tells it to finish (write
everything, exit 0) when the recorder closes. If the parent dies, the child's stdin reaches EOF
and it exits *without writing*: the next recorder's recovery derives the rest, and the
compare-and-set makes sure no batch is chunked twice even if they overlap.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from app.store.faults import FileId, file_id_text, parse_file_id
from app.store.live_fold import LiveFold, tune_collector
from app.store.module_process import NOT_THE_FILE, binary_stdout, read_stdin_line, start_module
from app.store.schema import NotTheFile, connect
from app.store.track_rows import (
    FLUSH_MESSAGES,
    FLUSH_SECONDS,
    IMPORTING,
    ChunkPiece,
    Derived,
    commit_piece,
    serialize,
    stored_messages,
)

log = logging.getLogger(__name__)

#: How long the child sleeps when no batch is waiting.
POLL_SECONDS = 0.02
#: Batches read per query (~1,000 messages each): during a backlog, the live fold's commands (the
#: selected device, new thresholds) are taken in between two reads, a quarter second apart.
READ_BATCHES = 16
#: How much lower the window's chunk child runs than the fold (Unix ``nice``): the fold is on the
#: critical path of the live view, the chunks are not (readers read the batches not chunked yet;
#: under a load the machine cannot keep up with, the chunks lag, and catch up once it is gone).
#: The window's 200,000-message backlog, alternated against one child doing both: faster in 11 of
#: 14 pairs, means +10 %; at nice 10, slower in 4 of 6. On Linux it also takes the SCHED_IDLE
#: policy: against nice 19 alone, 46,220 / 46,527 / 56,974 → 53,011 / 51,066 / 63,011 msg/s
#: (benchmarks/gui_backlog.py, docs/benchmarks.md 2026-12-07, sixth session).
BACKGROUND_NICE = 19
#: How long a finishing child may take before it is killed (its work is redone on next open).
FINISH_SECONDS = 60.0


# -- the parent's side ------------------------------------------------------------------------
class DeriverProcess:
    """The child deriving ``path``'s batches after ``after`` (those before are chunked), at a
    lower priority if ``background``. With ``on_frame``, instead, the child folds session
    ``fold_session`` for a window (`store/live_fold`) and writes nothing to the file: each frame's
    bytes go to ``on_frame``, called on a reader thread of its own; ``commands`` are sent first
    (`send`). ``on_exit`` is told, on that thread, when the child's output ended (it ended, or is
    ending: see `ended`). With ``file`` (the recorder's), the child works only if the file at
    ``path`` is still that one when it opens it; else it exits with `NOT_THE_FILE`, having opened
    nothing."""

    def __init__(self, path: Path, after: int, max_page_count: int | None = None, *,
                 on_frame: Callable[[bytes], None] | None = None, fold_session: int = 0,
                 commands: Iterable[bytes] = (), background: bool = False,
                 on_exit: Callable[[DeriverProcess], None] | None = None, file: FileId | None = None) -> None:
        args = [str(path), str(after)] + ([str(max_page_count)] if max_page_count else [])
        if file is not None:
            args += ["--file", file_id_text(file)]
        if on_frame is not None:
            args += ["--fold", str(fold_session)]
        if background:
            args += ["--background"]
        self._child = start_module("app.store.deriver", *args, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE if on_frame is not None else None)
        self.started = time.monotonic()
        self._sending = threading.Lock()
        for line in commands:
            self.send(line)
        if on_frame is not None:
            threading.Thread(target=self._read, args=(on_frame, on_exit), name="trackmon-frames",
                             daemon=True).start()

    def _read(self, on_frame: Callable[[bytes], None], on_exit: Callable[[DeriverProcess], None] | None) -> None:
        assert self._child.stdout is not None
        _read_frames(self._child.stdout, on_frame)
        if on_exit is not None:
            on_exit(self)

    def send(self, line: bytes) -> None:
        """One command line for the child's live fold (`live_fold.encode_command`); lost if the
        child is gone (a new one is given the current ones when it starts)."""
        child = self._child
        with self._sending, suppress(OSError, ValueError):
            assert child.stdin is not None
            child.stdin.write(line)
            child.stdin.flush()

    @property
    def pid(self) -> int:
        return self._child.pid

    def running(self) -> bool:
        return self._child.poll() is None

    def ended(self, timeout: float) -> bool:
        """Whether the child has exited, waiting up to ``timeout`` seconds: its output closes a
        moment before it can be reaped (its other threads are still being torn down)."""
        try:
            self._child.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def exit_status(self) -> str:
        """How the child ended, in words (a signal or an exit code)."""
        code = self._child.returncode
        return "still running" if code is None else f"signal {-code}" if code < 0 else f"exit code {code}"

    def finish(self) -> bool:
        """Have every batch derived and chunked (a fold: the last frame sent), then the child
        gone. False if it failed or took longer than `FINISH_SECONDS` (then it is killed;
        recovery redoes its work)."""
        child = self._child
        try:
            assert child.stdin is not None
            with self._sending:
                child.stdin.write(b"finish\n")
                child.stdin.close()
            return child.wait(FINISH_SECONDS) == 0
        except (OSError, subprocess.TimeoutExpired):
            self.stop()
            return False

    def stop(self) -> None:
        """End the child without it writing anything more (the file is not trusted, or gone)."""
        child = self._child
        if child.stdin is not None and not child.stdin.closed:
            with self._sending, suppress(OSError):
                child.stdin.close()  # EOF: the child exits without a write
        try:
            child.wait(5.0)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _read_frames(out: IO[bytes], on_frame: Callable[[bytes], None]) -> None:
    """Hand each frame the child writes (4-byte little-endian length, then the frame) to
    ``on_frame`` until the child's output ends."""
    with suppress(OSError, ValueError):
        while len(head := out.read(4)) == 4:
            frame = out.read(int.from_bytes(head, "little"))
            if len(frame) < int.from_bytes(head, "little"):
                return
            try:
                on_frame(frame)
            except Exception:  # one bad frame: said, and the next read (never the child left blocked on its pipe)
                log.exception("a frame of the live fold could not be taken in")


# -- the child's side -------------------------------------------------------------------------
@dataclass(slots=True)
class _Session:
    """One session's batches derived and not yet written: the piece due (serialized; written in
    the call that made it, or derived again after a failed write) and the run being derived."""

    expected: int  # its chunk mark as last written (or read)
    names: dict[str, str] = field(default_factory=dict)
    derived: Derived = field(default_factory=Derived)
    since: float = field(default_factory=time.monotonic)
    due: ChunkPiece | None = None


class ChunkDeriver:
    """The child's work: derive batches after ``after`` as they are committed, write chunks; with
    a `LiveFold`, fold the live session's batches for the window instead (and write nothing)."""

    def __init__(self, conn: sqlite3.Connection, after: int, fold: LiveFold | None = None) -> None:
        self.conn = conn
        self.last = after  # the newest batch looked at
        self.sessions: dict[int, _Session] = {}
        self.fold = fold

    def read(self) -> int:
        """Derive the next batches (in memory); how many were read."""
        fold = self.fold
        start = self.last if fold is None else fold.last
        rows = self.conn.execute(
            "SELECT b.id, b.session_id, b.received_at, b.body, s.indexed_batch FROM batches b "
            "JOIN sessions s ON s.id = b.session_id WHERE b.id > ? ORDER BY b.id LIMIT ?",
            (start, READ_BATCHES)).fetchall()
        for batch_id, session_id, received_at, body, indexed in rows:
            # Not if chunked elsewhere (an import, recovery), or if this process folds.
            chunk = fold is None and batch_id > self.last and indexed != IMPORTING and batch_id > indexed
            folding = fold is not None and batch_id > fold.last
            live = folding and session_id == fold.session_id  # type: ignore[union-attr]
            messages = stored_messages(received_at, body) if chunk or live else []
            if chunk:
                session = self.sessions.get(session_id)
                if session is None:
                    session = self.sessions[session_id] = _Session(indexed)
                session.derived.add_messages(batch_id, messages)
            self.last = max(self.last, batch_id)
            if folding:
                fold.fold(session_id, batch_id, received_at, messages)  # type: ignore[union-attr]
        return len(rows)

    def behind(self) -> bool:
        """Whether batches are committed that this process has not read yet (a backlog)."""
        newest = self.conn.execute("SELECT max(id) FROM batches").fetchone()[0]
        fold = self.fold
        return newest is not None and newest > (self.last if fold is None else fold.last)

    def flush(self, everything: bool = False) -> None:
        """Write the chunks of every session that is due: one piece per session and call, between
        two reads, or all of them (``everything``: the recorder is closing)."""
        now = time.monotonic()
        for session_id, session in list(self.sessions.items()):
            derived = session.derived
            if derived.last and (everything or derived.count >= FLUSH_MESSAGES or now - session.since >= FLUSH_SECONDS):
                self._close_piece(session_id, session, now)
            if session.due is not None and not self._write(session_id, session):
                # Another writer (recovery) chunked some of it: derive again from its mark.
                rebuilt = self._from_mark(session_id)  # replaces the session (kept until then: `forget`)
                if rebuilt is not None and everything:
                    self._close_piece(session_id, rebuilt, now)
                    if not self._write(session_id, rebuilt):
                        self.sessions.pop(session_id, None)  # moved again: the next recovery derives the rest

    @staticmethod
    def _close_piece(session_id: int, session: _Session, now: float) -> None:
        """The run derived so far becomes the piece due, serialized; a new run starts. (A piece
        due is written in the call that made it, or the session is derived again: never two.)"""
        assert session.due is None, "a piece due was not written"
        session.names.update(session.derived.names)
        session.due = serialize(session_id, session.derived, session.names)
        session.derived, session.since = Derived(), now

    def _write(self, session_id: int, session: _Session) -> bool:
        """Write a session's piece due (compare-and-set on its mark); False if another
        writer moved the mark or the session is gone (the caller derives it again: `_from_mark`)."""
        piece = session.due
        assert piece is not None
        if commit_piece(self.conn, session_id, piece, session.expected):
            session.expected = piece.last
            session.due = None
            return True
        return False

    def _from_mark(self, session_id: int) -> _Session | None:
        """Derive again, from the session's chunk mark as it is now, its batches this process has
        read past it: what the other writer chunked stands, and these were committed after it
        (dropping them would leave a hole the next recovery, which starts at the mark, never
        sees). None if there are none, or the session is gone. The session as it was stays until
        this has read everything: if a read fails, `forget` starts again from its mark."""
        row = self.conn.execute("SELECT indexed_batch FROM sessions WHERE id = ?", (session_id,)).fetchone()
        session = None
        if row is not None and 0 <= row[0] < self.last:
            session = _Session(row[0])
            for batch_id, received_at, body in self.conn.execute(
                    "SELECT id, received_at, body FROM batches WHERE session_id = ? AND id > ? AND id <= ? ORDER BY id",
                    (session_id, row[0], self.last)):
                session.derived.add(batch_id, received_at, body)
        if session is None or not session.derived.last:
            self.sessions.pop(session_id, None)
            return None
        self.sessions[session_id] = session
        return session

    def forget(self) -> None:
        """After a failed write: start again from the oldest mark not yet written."""
        pending = [s.expected for s in self.sessions.values() if s.derived.last or s.due is not None]
        if pending:
            self.last = min(self.last, min(pending))
        self.sessions.clear()


def run(path: Path, after: int, max_page_count: int | None, commands: threading.Event,
        finishing: threading.Event, orphaned: threading.Event, fold_session: int | None = None,
        inbox: queue.SimpleQueue[bytes] | None = None, file: FileId | None = None) -> int:
    """The child's loop; returns its exit status."""
    # The fold writes nothing. The recorder's file may have been replaced before this process got
    # going, the old -wal and -shm possibly still beside the new file (SQLite would pair them): then
    # it opens nothing, and its recorder starts children for the new file once it has moved to it.
    try:
        conn = connect(path, create=False, readonly=fold_session is not None, expect=file)
    except NotTheFile:
        log.warning("%s is no longer the file this process was started for: nothing read", path)
        return NOT_THE_FILE
    if max_page_count:
        conn.execute(f"PRAGMA max_page_count = {int(max_page_count)}")
    fold = None
    if fold_session is not None:
        fold = LiveFold(binary_stdout(), fold_session, after)
        fold.start(fold_session, conn)
    deriver = ChunkDeriver(conn, after, fold)
    commanded = False
    try:
        while not orphaned.is_set():
            finish = finishing.is_set()
            try:
                if not finish:
                    commands.clear()  # set again by the next command line
                elif fold is not None:  # the window is closing: this process writes nothing, so it is done
                    fold.close()
                    return 0
                while fold is not None and inbox is not None and not inbox.empty():
                    fold.command(inbox.get(), conn)
                    commanded = True  # until a frame has gone
                read = deriver.read()
                # Idle, or told something (a device selected): what is left goes at once.
                behind = bool(read) and fold is not None and deriver.behind()
                if fold is not None and fold.send(now=not read or commanded, behind=behind):
                    commanded = False
                if finish and not read:
                    deriver.flush(everything=True)
                    return 0
                deriver.flush()
            except sqlite3.Error as exc:  # disk full, locked too long: the bodies are safe; retry
                log.warning("%s failed (retrying): %s", "folding the live view" if fold is not None
                            else "deriving track chunks", exc)
                deriver.forget()
                commands.wait(1.0)
                continue
            if not read:
                commands.wait(POLL_SECONDS)
        return 3  # the recorder is gone: write nothing more (its successor recovers)
    finally:
        conn.close()


def _watch_stdin(commands: threading.Event, finishing: threading.Event, orphaned: threading.Event,
                 inbox: queue.SimpleQueue[bytes]) -> None:
    # Below Python's buffered stdin: a daemon thread blocked there would abort the exit (`module_process`).
    while line := read_stdin_line():
        if line.strip() == b"finish":
            finishing.set()
            commands.set()
            return
        inbox.put(line)  # for the live fold
        commands.set()
    orphaned.set()
    commands.set()


def _option(argv: list[str], name: str) -> tuple[str | None, list[str]]:
    """The value given to option ``name`` (None if absent), and the arguments without it."""
    if name not in argv:
        return None, argv
    at = argv.index(name)
    return argv[at + 1], argv[:at] + argv[at + 2:]


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="trackmon deriver: %(message)s")
    if "--background" in argv:
        argv = [arg for arg in argv if arg != "--background"]
        if hasattr(os, "nice"):  # Unix
            os.nice(BACKGROUND_NICE)
        if hasattr(os, "SCHED_IDLE"):  # Linux: below nice 19, and any other task preempts it at once
            with suppress(OSError):
                os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    folding, argv = _option(argv, "--fold")
    fold_session = None if folding is None else int(folding)
    if fold_session is not None:
        tune_collector()
    identity, argv = _option(argv, "--file")
    file = None if identity is None else parse_file_id(identity)
    path, after = Path(argv[0]), int(argv[1])
    max_page_count = int(argv[2]) if len(argv) > 2 else None
    commands, finishing, orphaned = threading.Event(), threading.Event(), threading.Event()
    inbox: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    threading.Thread(target=_watch_stdin, args=(commands, finishing, orphaned, inbox), daemon=True).start()
    return run(path, after, max_page_count, commands, finishing, orphaned, fold_session, inbox, file)


def profiled(argv: list[str], stats_path: str) -> int:
    """`main` under cProfile, its statistics written to ``stats_path`` at exit: where the child's
    time goes in situ, for the benchmarks (`gui_backlog.py --profile-deriver`)."""
    import cProfile

    profiler = cProfile.Profile()
    try:
        return profiler.runcall(main, argv)
    finally:
        profiler.dump_stats(stats_path)


if __name__ == "__main__":
    #: Set by benchmarks only: profile this child (see `profiled`).
    stats = os.environ.get("TRACKMON_PROFILE_DERIVER") if "--fold" in sys.argv else None  # the live fold's
    sys.exit(profiled(sys.argv[1:], stats) if stats else main(sys.argv[1:]))
