"""Each stored message's own ``device.name``, read from a batch body without parsing it whole.

The CSV export names every row by the message's own ``device.name`` (a device renamed mid-session
shows both names). Parsing every batch with orjson for that one key costs ~4 µs per message —
more than the rest of a CSV row. Most bodies are flat objects without escapes, and for those the
key can be read straight from the bytes; anything else is parsed in full, so the answer is always
what `message_name` would say of the parsed message.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import numpy as np
import orjson

from app.store.codec import decompress_body

_NAME_KEY = b'"device.name"'
#: ``"device.name": "…"`` with a plain string value (the fast path only runs on bodies without
#: backslashes, so a string's content holds no quote and a quoted token followed by a colon is a key).
_NAME = re.compile(rb'"device\.name"\s*:\s*"([^"]*)"')
_LEFT_BRACE, _RIGHT_BRACE, _LEFT_BRACKET, _RIGHT_BRACKET = b"{}[]"


def message_name(raw: Any) -> str:
    """The ``device.name`` a parsed message carries itself (flat or nested), or ''."""
    if not isinstance(raw, dict):
        return ""
    name = raw.get("device.name")
    if name is None:
        device = raw.get("device")
        if isinstance(device, dict):
            name = device.get("name")
    return "" if name is None else str(name)


def _object_starts(body: bytes, count: int) -> np.ndarray | None:
    """Where each of the ``count`` objects of ``body`` starts, if ``body`` is a JSON array of
    flat objects without escapes (else None: the caller parses it).

    No backslash means every ``"`` opens or closes a string; exactly one ``[``/``]`` (the array)
    and ``count`` ``{``/``}`` means no brace or bracket sits in a string or a nested value, and
    every element is an object, so the ``{`` are the messages' starts."""
    if b"\\" in body:
        return None
    data = np.frombuffer(body, dtype=np.uint8)
    starts = np.flatnonzero(data == _LEFT_BRACE)
    if (len(starts) != count or int(np.count_nonzero(data == _RIGHT_BRACE)) != count
            or int(np.count_nonzero(data == _LEFT_BRACKET)) != 1 or int(np.count_nonzero(data == _RIGHT_BRACKET)) != 1):
        return None
    return starts


def _plain_names(body: bytes) -> tuple[np.ndarray, list[str]] | None:
    """Where each ``"device.name"`` key is in a body of flat objects without escapes, and its
    value — None unless every value is a plain string (then the caller parses the body).

    Split at the key in C; each piece starts with the key's value (``:"Truck 1",…``). The
    names are decoded in one call (a JSON string without escapes holds no NUL to join on)."""
    pieces = body.split(_NAME_KEY)
    if len(pieces) == 1:
        return np.empty(0, dtype=np.int64), []
    values = pieces[1:]
    if {piece[:2] for piece in values} != {b':"'}:
        found = [_NAME.match(body, at) for at in _positions(pieces)]
        if None in found:
            return None
        return _positions(pieces), [m.group(1).decode() for m in found]  # type: ignore[union-attr]
    names = b"\x00".join([piece[2:piece.find(b'"', 2)] for piece in values]).decode().split("\x00")
    return _positions(pieces), names


def _positions(pieces: list[bytes]) -> np.ndarray:
    """Offsets of the separators of ``body.split(_NAME_KEY)`` in ``body``."""
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    return np.cumsum(lengths[:-1] + len(_NAME_KEY)) - len(_NAME_KEY)


def batch_names(body: bytes, count: int) -> list[str]:
    """The ``device.name`` of each of the ``count`` messages in ``body`` (a stored JSON array)."""
    if count and _NAME_KEY not in body and b'"device"' not in body:
        return [""] * count
    starts = _object_starts(body, count) if count else None
    if starts is not None:
        found = _plain_names(body)
        if found is not None:
            positions, names = found
            owners = np.searchsorted(starts, positions, side="right") - 1
            result = [""] * count
            for owner, name in zip(owners.tolist(), names, strict=True):
                result[owner] = name  # a repeated key: the last wins, as in orjson
            return result
    return [message_name(message) for message in orjson.loads(body)]


class NameCache:
    """Message names of the last few stored batches (points come in time order, so neighbours
    mostly share a batch)."""

    def __init__(self, conn: sqlite3.Connection, size: int = 8) -> None:
        self.conn = conn
        self.size = size
        self._batches: dict[int, list[str]] = {}

    def names(self, batch_id: int) -> list[str]:
        """Every message's own name in stored batch ``batch_id``, by index."""
        found = self._batches.get(batch_id)
        if found is None:
            body, count = self.conn.execute("SELECT body, count FROM batches WHERE id = ?", (batch_id,)).fetchone()
            found = batch_names(decompress_body(body), count)
            if len(self._batches) >= self.size:
                self._batches.pop(next(iter(self._batches)))
            self._batches[batch_id] = found
        return found
