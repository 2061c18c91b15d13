"""Turn GPX and CSV files into sessions, so tracks from elsewhere replay and export like any
recording. Each point becomes a flespi-style message and goes through the recorder.

An import keeps every point of the file, in its own new session; it is all or nothing (a file
that fails half-way leaves no session behind, and a session being imported is never "the most
recent session"); the same file (by content) imported again into the same recording is refused
and said so. What was imported and what was not comes back as an `ImportSummary`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import xxhash

from app.store import import_process
from app.store.import_csv import csv_messages
from app.store.import_gpx import GpxReader
from app.store.import_summary import ImportError_, ImportSummary
from app.store.recorder import AlreadyImported, Recorder

__all__ = ["BATCH", "ImportError_", "ImportSummary", "file_batches", "file_digest", "import_file", "import_with"]

#: Messages per recorder job: large enough to amortise the hand-over, small enough for live
#: batches to be recorded in between.
BATCH = 5000


def file_digest(path: Path) -> bytes:
    """Identity of a file's content (xxh3-128, read in 1 MiB blocks)."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.digest()


def file_messages(path: Path, summary: ImportSummary) -> Iterator[dict[str, Any]]:
    """The file's points as flespi-style messages (.gpx or .csv)."""
    suffix = path.suffix.lower()
    if suffix == ".gpx":
        return GpxReader(path, summary).messages()
    if suffix == ".csv":
        return csv_messages(path, summary)
    raise ImportError_(f"{path.name}: import reads .gpx and .csv files")


def file_batches(path: Path, summary: ImportSummary | None = None, child_from: int | None = None,
                 ) -> Iterator[list[dict[str, Any]]]:
    """The file's points in batches of `BATCH` messages: parsed in a second process for a file of
    ``child_from`` bytes or more (default `import_process.MIN_BYTES`; parsing and recording then
    use both cores), here for a smaller one."""
    summary = summary or ImportSummary(file=path.name)
    child_from = import_process.MIN_BYTES if child_from is None else child_from
    if path.suffix.lower() in (".gpx", ".csv") and path.stat().st_size >= child_from:
        yield from import_process.parsed_batches(path, summary, BATCH)
        return
    messages = file_messages(path, summary)
    batch: list[dict[str, Any]] = []
    for message in messages:
        batch.append(message)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def import_with(recorder: Recorder, path: Path, name: str = "", child_from: int | None = None) -> ImportSummary:
    """Import ``path`` into a new session through an open recorder; returns what was imported.
    ``child_from``: see `file_batches` (the window parses every file in a child process)."""
    summary = ImportSummary(file=path.name)
    file_messages(path, summary)  # raises at once for an unknown suffix
    digest = file_digest(path)
    try:
        session, count = recorder.import_session(name or f"import {path.name}",
                                                 file_batches(path, summary, child_from), digest)
    except AlreadyImported as exc:
        raise ImportError_(f"{path.name} was already imported into this recording (session {exc.session_id}); "
                           "the same file is imported once") from None
    if count == 0:
        recorder.delete_session(session)
        raise ImportError_(f"{path.name} holds no track points, route points or waypoints")
    summary.session_id = session
    return summary


def import_file(db: Path, path: Path, name: str = "") -> ImportSummary:
    """Import ``path`` (.gpx or .csv) into a new session of ``db``; returns what was imported."""
    recorder = Recorder(db)
    try:
        return import_with(recorder, path, name)
    finally:
        recorder.close()
