"""The structure of a large JSON array, found without building a single Python object.

A 64 MiB body cannot go through one ``orjson.loads``: that call holds the GIL for hundreds of
milliseconds, and a hostile body (20 million tiny elements, a million nested brackets) makes it
build gigabytes. This scan walks the raw bytes a chunk at a time with numpy (C loops, GIL held
for about a millisecond per chunk) and answers what the listener must know *before* parsing:

* how deep the nesting goes (refused past the limit, so nothing deep is ever built);
* where each top-level element starts and ends, so the array can be parsed in short slices
  with orjson, each slice checked to hold exactly the elements the scan counted;
* how many elements there are and how many are objects (refused past the limits, cheaply).

The scan knows which bytes are inside strings: an escaped backslash or quote (``\\\\``, ``\\"``)
is blanked first, after which every remaining ``"`` opens or closes a string. It does not
validate JSON — orjson does that on every slice — it only finds the structure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

#: Bytes scanned per numpy pass: ~1-2 ms of GIL per pass on the reference machine.
CHUNK = 1 << 20

_QUOTE, _COMMA = ord('"'), ord(",")
_OPEN_ARRAY, _CLOSE_ARRAY, _OPEN_OBJECT, _CLOSE_OBJECT = map(ord, "[]{}")
_WHITESPACE = b" \t\r\n"
_NOT_WHITESPACE = re.compile(rb"[^ \t\r\n]")  # searched in place: no copy of a 64 MiB body


class ScanError(ValueError):
    """The body breaks a limit or is structurally not one JSON array.

    ``kind`` is ``"too_deep"``, ``"too_many"`` or ``"invalid"``.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class ArrayLayout:
    """Where the elements of a top-level JSON array are in its body.

    Element ``i`` is ``body[starts[i]:ends[i]]`` (possibly with surrounding whitespace);
    ``ends[i]`` is the comma after it, or the closing bracket for the last one.
    """

    starts: list[int]
    ends: list[int]
    objects: int
    max_depth: int

    @property
    def count(self) -> int:
        """Number of top-level elements."""
        return len(self.starts)

    def slices(self, target_bytes: int) -> Iterator[tuple[int, int, int, int]]:
        """Runs of whole elements of about ``target_bytes`` each:
        ``(first element, last element + 1, byte start, byte end)``."""
        count = len(self.starts)
        first = 0
        while first < count:
            start = self.starts[first]
            last = first
            while last + 1 < count and self.ends[last] - start < target_bytes:
                last += 1
            yield first, last + 1, start, self.ends[last]
            first = last + 1


def first_byte(body: bytes | bytearray) -> int | None:
    """The first byte that is not JSON whitespace, or None for an empty/blank body."""
    found = _NOT_WHITESPACE.search(body)
    return body[found.start()] if found else None


def scan_array(body: bytes | bytearray, *, max_depth: int, max_elements: int, chunk: int = CHUNK) -> ArrayLayout:
    """Find the top-level elements of ``body``, which must be one JSON array (or, with no
    elements reported, one JSON object: its depth and balance are checked all the same).

    Raises ScanError as soon as the nesting passes ``max_depth`` or the element count passes
    ``max_elements`` (the rest of the body is not looked at), or when the bytes cannot be one
    array/object (unbalanced brackets, anything but whitespace after the closing bracket, an
    unterminated string). The caller is the listener's worker thread; see the module docstring.
    """
    found = _NOT_WHITESPACE.search(body)
    lead = found.start() if found else len(body)
    if lead >= len(body) or body[lead] not in (_OPEN_ARRAY, _OPEN_OBJECT):
        raise ScanError("invalid", "the body is not a JSON array or object")
    closer = _CLOSE_ARRAY if body[lead] == _OPEN_ARRAY else _CLOSE_OBJECT
    separators: list[int] = []
    objects = 0
    depth = 0  # nesting depth before the current chunk
    in_string = False
    escaped = False  # the chunk before ended in an unpaired backslash inside a string
    deepest = 0
    end: int | None = None
    view = memoryview(body)
    for offset in range(lead, len(body), chunk):
        if end is not None:  # the array closed in an earlier chunk: only whitespace may follow
            _only_whitespace(view[offset:offset + chunk])
            continue
        piece = bytes(view[offset:offset + chunk])
        if escaped:  # the first byte is escaped: whatever it is, it is string content
            piece = b"_" + piece[1:]
        # Blank escape pairs (same length, so offsets stay true); what is left of a quote is real.
        piece = piece.replace(b"\\\\", b"__").replace(b'\\"', b"__")
        escaped = piece.endswith(b"\\")
        data = np.frombuffer(piece, dtype=np.uint8)
        quotes = data == _QUOTE
        parity = np.cumsum(quotes, dtype=np.int32)
        outside = (parity & 1) == (1 if in_string else 0)  # for non-quote bytes: not in a string
        in_string = bool((int(parity[-1]) + in_string) & 1)
        opens = ((data == _OPEN_ARRAY) | (data == _OPEN_OBJECT)) & outside
        closes = ((data == _CLOSE_ARRAY) | (data == _CLOSE_OBJECT)) & outside
        levels = np.cumsum(opens.astype(np.int8) - closes.astype(np.int8), dtype=np.int32)
        levels += depth
        top = int(levels.max())
        if top > max_depth:
            raise ScanError("too_deep", f"nesting deeper than {max_depth} levels")
        deepest = max(deepest, top)
        closed = np.flatnonzero(levels <= 0)
        if closed.size:
            stop = int(closed[0])
            if levels[stop] < 0 or not closes[stop] or data[stop] != closer:
                raise ScanError("invalid", "unbalanced brackets")
            end = offset + stop
            _only_whitespace(piece[stop + 1:])
            cut = stop
        else:
            cut = len(piece)
        commas = np.flatnonzero((data[:cut] == _COMMA) & outside[:cut] & (levels[:cut] == 1))
        separators.extend((commas + offset).tolist())
        objects += int(np.count_nonzero((data[:cut] == _OPEN_OBJECT) & opens[:cut] & (levels[:cut] == 2)))
        if len(separators) >= max_elements:
            what = "messages in one batch" if closer == _CLOSE_ARRAY else "keys in the top-level object"
            raise ScanError("too_many", f"more than {max_elements} {what}")
        depth = int(levels[-1])
    if end is None or in_string:
        raise ScanError("invalid", "the array is not closed")
    if closer == _CLOSE_OBJECT:
        return ArrayLayout([], [], 0, deepest)
    starts = [lead + 1, *(s + 1 for s in separators)]
    ends = [*separators, end]
    if not separators and not _NOT_WHITESPACE.search(body, lead + 1, end):
        starts, ends = [], []  # []
    return ArrayLayout(starts, ends, objects, deepest)


def _only_whitespace(rest: bytes | memoryview) -> None:
    if _NOT_WHITESPACE.search(rest):
        raise ScanError("invalid", "unexpected data after the closing bracket")
