"""Track chunks derived from committed batches by a process of its own, so both cores work.

``trackmon record`` acknowledges a batch once its raw body is committed (`Recorder.record_keyed`):
the fix, the flags and the per-device track chunks are derived here, afterwards, from the
committed bodies — exactly what start-up recovery does, on the second core instead of the
listener's. Readers never wait for it: exports, replay and session lists read the chunks up to
``sessions.indexed_batch`` and the raw batches after it (``store/snapshot.py``).

The child polls the file for batches newer than the last it has seen and commits chunks every
`FLUSH_SECONDS` or `FLUSH_MESSAGES` per session, each with a compare-and-set of the session's
chunk mark (`track_rows.complete_chunks`). Its parent (`DeriverProcess`) tells it to finish (write
everything, exit 0) when the recorder closes. If the parent dies, the child's stdin reaches EOF
and it exits *without writing*: the next recorder's recovery derives the rest, and the
compare-and-set makes sure no batch is chunked twice even if they overlap.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from app.store.module_process import read_stdin_line, start_module
from app.store.schema import connect
from app.store.track_rows import FLUSH_MESSAGES, FLUSH_SECONDS, IMPORTING, Derived, complete_chunks

log = logging.getLogger(__name__)

#: How long the child sleeps when no batch is waiting.
POLL_SECONDS = 0.02
#: Batches read per query (~1,000 messages each).
READ_BATCHES = 32
#: How long a finishing child may take before it is killed (its work is redone on next open).
FINISH_SECONDS = 60.0


# -- the parent's side ------------------------------------------------------------------------
class DeriverProcess:
    """The child deriving ``path``'s batches after ``after`` (those before are chunked)."""

    def __init__(self, path: Path, after: int, max_page_count: int | None = None) -> None:
        args = [str(path), str(after)] + ([str(max_page_count)] if max_page_count else [])
        self._child = start_module("app.store.deriver", *args, stdin=subprocess.PIPE)

    @property
    def pid(self) -> int:
        return self._child.pid

    def running(self) -> bool:
        return self._child.poll() is None

    def exit_status(self) -> str:
        """How the child ended, in words (a signal or an exit code)."""
        code = self._child.returncode
        return "still running" if code is None else f"signal {-code}" if code < 0 else f"exit code {code}"

    def finish(self) -> bool:
        """Have every batch derived and chunked, then the child gone. False if it failed or
        took longer than `FINISH_SECONDS` (then it is killed; recovery redoes its work)."""
        child = self._child
        try:
            assert child.stdin is not None
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
            with suppress(OSError):
                child.stdin.close()  # EOF: the child exits without a write
        try:
            child.wait(5.0)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# -- the child's side -------------------------------------------------------------------------
@dataclass(slots=True)
class _Session:
    """One session's batches derived and not yet written."""

    expected: int  # its chunk mark as last written (or read)
    names: dict[str, str] = field(default_factory=dict)
    derived: Derived = field(default_factory=Derived)
    since: float = field(default_factory=time.monotonic)


class ChunkDeriver:
    """The child's work: derive batches after ``after`` as they are committed, write chunks."""

    def __init__(self, conn: sqlite3.Connection, after: int) -> None:
        self.conn = conn
        self.last = after  # the newest batch looked at
        self.sessions: dict[int, _Session] = {}

    def read(self) -> int:
        """Derive the next batches (in memory); how many were read."""
        rows = self.conn.execute(
            "SELECT b.id, b.session_id, b.received_at, b.body, s.indexed_batch FROM batches b "
            "JOIN sessions s ON s.id = b.session_id WHERE b.id > ? ORDER BY b.id LIMIT ?",
            (self.last, READ_BATCHES)).fetchall()
        for batch_id, session_id, received_at, body, indexed in rows:
            self.last = batch_id
            if indexed == IMPORTING or batch_id <= indexed:  # the recorder chunks it (an import) or did
                continue
            session = self.sessions.get(session_id)
            if session is None:
                session = self.sessions[session_id] = _Session(indexed)
            session.derived.add(batch_id, received_at, body)
        return len(rows)

    def flush(self, everything: bool = False) -> None:
        """Write the chunks of every session that is due (or all)."""
        now = time.monotonic()
        for session_id, session in list(self.sessions.items()):
            derived = session.derived
            if not derived.last:
                continue
            if not (everything or derived.count >= FLUSH_MESSAGES or now - session.since >= FLUSH_SECONDS):
                continue
            session.names.update(derived.names)
            if complete_chunks(self.conn, session_id, derived, session.names, session.expected):
                session.expected = derived.last
                session.derived = Derived()
                session.since = now
            else:  # the session was removed, or another writer chunked it: theirs stands
                del self.sessions[session_id]

    def forget(self) -> None:
        """After a failed write: start again from the oldest mark not yet written."""
        pending = [s.expected for s in self.sessions.values() if s.derived.last]
        if pending:
            self.last = min(self.last, min(pending))
        self.sessions.clear()


def run(path: Path, after: int, max_page_count: int | None, commands: threading.Event,
        finishing: threading.Event, orphaned: threading.Event) -> int:
    """The child's loop; returns its exit status."""
    conn = connect(path, create=False)
    if max_page_count:
        conn.execute(f"PRAGMA max_page_count = {int(max_page_count)}")
    deriver = ChunkDeriver(conn, after)
    try:
        while not orphaned.is_set():
            finish = finishing.is_set()
            try:
                read = deriver.read()
                if finish and not read:
                    deriver.flush(everything=True)
                    return 0
                deriver.flush()
            except sqlite3.Error as exc:  # disk full, locked too long: the bodies are safe; retry
                log.warning("deriving track chunks failed (retrying): %s", exc)
                deriver.forget()
                commands.wait(1.0)
                continue
            if not read:
                commands.wait(POLL_SECONDS)
        return 3  # the recorder is gone: write nothing more (its successor recovers)
    finally:
        conn.close()


def _watch_stdin(commands: threading.Event, finishing: threading.Event, orphaned: threading.Event) -> None:
    # Below Python's buffered stdin: a daemon thread blocked there would abort the exit (`module_process`).
    while line := read_stdin_line():
        if line.strip() == b"finish":
            finishing.set()
            commands.set()
            return
    orphaned.set()
    commands.set()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="trackmon deriver: %(message)s")
    path, after = Path(argv[0]), int(argv[1])
    max_page_count = int(argv[2]) if len(argv) > 2 else None
    commands, finishing, orphaned = threading.Event(), threading.Event(), threading.Event()
    threading.Thread(target=_watch_stdin, args=(commands, finishing, orphaned), daemon=True).start()
    return run(path, after, max_page_count, commands, finishing, orphaned)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
