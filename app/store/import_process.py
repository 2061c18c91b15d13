"""Parse an import file in a second process, so parsing and recording use both cores.

An import is two pipelines sharing one interpreter: parsing the file into messages (GPX/CSV) and
recording them (normalize, compress, insert, in the recorder's writer thread). Both hold the GIL,
so in one process they take turns on one core. Here the child process parses and sends each
batch as JSON over a pipe; this process decodes it and records it. The pipe is the bound on
memory: a child ahead of the recorder blocks on a full pipe.

Frames on the child's standard output: one type byte, a 4-byte big-endian length, the payload.
``B`` a batch (a JSON array of messages), ``S`` the summary (JSON, last), ``E`` an
`ImportError_` message, ``O`` an OSError/UnicodeDecodeError message. The child is killed if
this side stops reading (a failed write, a cancelled import). A thread of this process drains the
pipe into a queue of `QUEUED` batches, so the child is not held up while a batch is recorded.

    python -m app.store.import_process FILE     (what `parsed_batches` runs)
"""

from __future__ import annotations

import queue
import struct
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from app.store.import_summary import ImportError_, ImportSummary
from app.store.module_process import binary_stdout, how_it_ended, last_line, start_module

#: Files smaller than this are parsed in this process: starting a process would cost more.
MIN_BYTES = 2 * 1024 * 1024
#: Batches read from the pipe ahead of the recorder (each ~5,000 messages).
QUEUED = 3
_HEADER = struct.Struct(">cI")


def parsed_batches(path: Path, summary: ImportSummary, batch: int) -> Iterator[list[dict[str, Any]]]:
    """The file's messages in batches of ``batch``, parsed by a child process; ``summary`` is
    filled in when the last batch has been read. Raises `ImportError_` (the file) or OSError."""
    errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed below) a file, not a pipe: it never blocks the child
    child = start_module("app.store.import_process", str(path), str(batch),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
    assert child.stdout is not None
    # A thread drains the pipe into a short queue, so the child keeps parsing while this thread
    # records (a batch is ~1 MB of JSON: the pipe alone would hold the child up at every batch).
    frames: queue.Queue[tuple[bytes, bytes]] = queue.Queue(maxsize=QUEUED)
    stop = threading.Event()
    reader = threading.Thread(target=_drain, args=(child.stdout, frames, stop), name="trackmon-import-pipe",
                              daemon=True)
    reader.start()
    finished = False
    try:
        while True:
            kind, payload = frames.get()
            if kind == b"B":
                yield orjson.loads(payload)
            elif kind == b"S":
                _fill(summary, orjson.loads(payload))
                finished = True
                break
            elif kind == b"E":
                raise ImportError_(payload.decode())
            elif kind == b"O":
                raise OSError(payload.decode())
            else:  # the end of the pipe (or a frame it cannot have sent): the child is gone or goes
                if kind:
                    child.kill()
                child.wait()
                why = last_line(errors)
                raise OSError(how_it_ended("import's parser process", child.returncode) + (f": {why}" if why else ""))
    finally:
        stop.set()
        if not finished:
            child.kill()
        child.wait()
        reader.join()
        if child.stdout is not None:
            child.stdout.close()
        errors.close()


def _drain(stream: BinaryIO, frames: queue.Queue[tuple[bytes, bytes]], stop: threading.Event) -> None:
    """Read frames until the end of the pipe (an empty kind) or until the import stops."""
    while True:
        frame = _read_frame(stream)
        while not stop.is_set():
            try:
                frames.put(frame, timeout=0.1)
                break
            except queue.Full:
                continue
        if stop.is_set() or not frame[0] or frame[0] in (b"S", b"E", b"O"):
            return


def _read_frame(stream: BinaryIO) -> tuple[bytes, bytes]:
    try:
        return _read_whole_frame(stream)
    except (OSError, ValueError):  # the pipe closed under the reader: the end, like any other
        return b"", b""


def _read_whole_frame(stream: BinaryIO) -> tuple[bytes, bytes]:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return b"", b""
    kind, size = _HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        return b"", b""
    return kind, payload


def _fill(summary: ImportSummary, values: dict[str, Any]) -> None:
    for f in fields(summary):
        if f.name in ("file", "session_id") or f.name not in values:
            continue
        value = values[f.name]
        if f.name == "not_imported":
            value = Counter(value)
        elif f.name == "renamed":
            value = [tuple(pair) for pair in value]
        setattr(summary, f.name, value)


def _write_frame(out: BinaryIO, kind: bytes, payload: bytes) -> None:
    out.write(_HEADER.pack(kind, len(payload)))
    out.write(payload)


def main(argv: list[str]) -> int:
    """The child: parse ``argv[0]`` and write frames to standard output."""
    from app.store.import_csv import csv_messages
    from app.store.import_gpx import GpxReader

    path, size = Path(argv[0]), int(argv[1])
    out = binary_stdout()
    summary = ImportSummary(file=path.name)
    try:
        messages = GpxReader(path, summary).messages() if path.suffix.lower() == ".gpx" \
            else csv_messages(path, summary)
        held: list[dict[str, Any]] = []
        for message in messages:
            held.append(message)
            if len(held) >= size:
                _write_frame(out, b"B", orjson.dumps(held))
                held = []
        if held:
            _write_frame(out, b"B", orjson.dumps(held))
        values = {f.name: getattr(summary, f.name) for f in fields(summary)}
        _write_frame(out, b"S", orjson.dumps(values))
        out.flush()
    except BrokenPipeError:  # the importer stopped reading (cancelled, or failed): nothing to say
        return 1
    except ImportError_ as exc:
        _write_frame(out, b"E", str(exc).encode())
    except (OSError, UnicodeDecodeError) as exc:
        _write_frame(out, b"O", str(exc).encode())
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
