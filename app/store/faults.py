"""What can go wrong with a recording file while recording, said in words a user can act on.

The recorder never acknowledges data it did not commit to the file at its path. When it cannot
(the disk is full, the file was deleted, moved or replaced, it became read-only, writes fail),
it raises `RecordingUnavailable` (the listener answers 503, so the stream re-sends) and keeps the
reason as a `Problem` for the window and ``/status``.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

FileId = tuple[int, int]


class RecordingUnavailable(RuntimeError):
    """Nothing can be recorded right now; the message says why."""


class FileReplaced(RuntimeError):
    """A change meant for one recording file was refused: another file is at its path now."""


@dataclass(frozen=True, slots=True)
class Problem:
    """Why the recorder refuses data, and since when (Unix time); whether a write failed (a full
    disk, failing or refused writes: only a batch written shows it is over) rather than the
    file's opening (nothing at the path, not a recording, another file there)."""

    text: str
    since: float
    write_failed: bool = False


def file_id(path: Path | str) -> FileId | None:
    """(device, inode) of whatever is at ``path`` now (following symlinks), None if nothing is.

    Costs one stat (~1 µs): cheap enough to ask before and after every batch."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def file_id_text(file: FileId) -> str:
    """A file's identity as text, for a child process's command line or job: ``device:inode``
    (JSON could not carry the 128-bit inode numbers some file systems have)."""
    return f"{file[0]}:{file[1]}"


def parse_file_id(text: str) -> FileId:
    """The identity `file_id_text` wrote; ValueError if it is not one."""
    device, inode = text.split(":")
    return int(device), int(inode)


def gone(path: Path) -> str:
    """The problem when nothing is at the recording's path any more."""
    return (f"the recording file {path} was deleted or moved away; nothing is recorded (the stream is "
            "answered 503 and keeps its data) until a recording file is back at that path: restore or "
            "move it back, or create an empty file there to start a new recording")


#: OS errors that say the disk did not take a write (not a process or lock that could not be had).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG})


def write_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the file could not be written (a full disk, failing writes, a read-only
    file), rather than that it could not be opened as a recording."""
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        return code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY)
    return isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS


def describe(exc: BaseException, path: Path) -> str:
    """A failed write as a problem a user can act on."""
    if isinstance(exc, RecordingUnavailable):
        return str(exc)
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        if code == sqlite3.SQLITE_FULL:
            return f"the disk is full (or the recording reached its size limit): cannot write {path} ({exc})"
        if code == sqlite3.SQLITE_READONLY:
            return f"the recording file {path} is read-only ({exc})"
        if code == sqlite3.SQLITE_IOERR:
            return f"cannot write the recording file {path}: {exc}"
        if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
            return f"{path} is not a usable trackmon recording ({exc}); it is left untouched"
        if code == sqlite3.SQLITE_CANTOPEN:
            return f"cannot open the recording file {path} ({exc})"
    if isinstance(exc, OSError):
        return f"cannot write the recording file {path}: {exc.strerror or exc}"
    return f"cannot record into {path}: {exc}"


def set_aside(path: Path, expected: FileId | None) -> Path | None:
    """Rename ``path`` out of the way if it is still the file ``expected`` (a -wal or -shm left
    by a recording file that was deleted or replaced: opening another database beside them would
    apply the old file's pages to it). Returns the new name, or None if nothing was moved.

    Kept, not deleted: should the old file have been moved elsewhere, its -wal may hold what a
    checkpoint could not copy into it yet."""
    if expected is None or file_id(path) != expected:
        return None
    target = path.with_name(f"{path.name}.orphan-{time.strftime('%Y%m%dT%H%M%S')}-{expected[1]}")
    try:
        os.rename(path, target)
    except OSError:
        return None
    return target
