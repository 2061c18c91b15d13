"""The bytes of messages exactly as a sender wrote them.

A message is stored as part of its batch's JSON array, and the inspector promises "exactly what
the device sent": ``49.10`` must stay ``49.10`` and key order, spacing and escapes must survive.
Re-serialising parsed values loses all of that, so everything here cuts byte ranges out of the
body as received instead — the message array out of a wrapping object, the messages kept when
a re-sent batch is stored without its duplicates, one message for display.
"""

from __future__ import annotations

import re

import numpy as np
import orjson

from app.core.jsonscan import ScanError, scan_array

_WHITESPACE = b" \t\r\n"
#: Strings (with their escapes), brackets and colons: all a walk to a key path needs to see.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}:]', re.DOTALL)
_UNBOUNDED = 1 << 62


def element_spans(array: bytes | bytearray) -> list[tuple[int, int]]:
    """(start, end) of each element of a JSON array, surrounding whitespace excluded."""
    layout = scan_array(array, max_depth=_UNBOUNDED, max_elements=_UNBOUNDED)
    spans = []
    for start, end in zip(layout.starts, layout.ends, strict=True):
        while start < end and array[start] in _WHITESPACE:
            start += 1
        while end > start and array[end - 1] in _WHITESPACE:
            end -= 1
        spans.append((start, end))
    return spans


def element_bytes(array: bytes | bytearray, index: int) -> bytes:
    """Element ``index`` of a JSON array, byte for byte; IndexError past the end."""
    start, end = element_spans(array)[index]
    return bytes(array[start:end])


def select_elements(array: bytes | bytearray, keep: list[int]) -> bytes:
    """A JSON array of the elements at ``keep`` (in that order), each byte for byte."""
    spans = element_spans(array)
    return b"[" + b",".join(bytes(array[spans[i][0]:spans[i][1]]) for i in keep) + b"]"


def message_array(body: bytes | bytearray, messages_path: str, count: int) -> bytes | None:
    """The messages of an object body as a JSON array made of their bytes as received.

    ``body`` is one JSON object: a single message (no ``messages_path``), or messages wrapped at
    ``messages_path`` (an array, or one object). ``count`` is how many messages the parsed body
    held; None when the bytes found do not hold exactly that many (a duplicate key, where the
    parser keeps the last one), and the caller falls back to re-serialising.
    """
    if not messages_path:
        return b"[" + bytes(body).strip(_WHITESPACE) + b"]"
    span = _value_span(body, messages_path.split("."))
    if span is None:
        return None
    value = bytes(body[span[0]:span[1]])
    array = value if value[:1] == b"[" else b"[" + value + b"]"
    try:
        found = len(element_spans(array))
    except ScanError:
        return None
    return array if found == count else None


def _value_span(body: bytes | bytearray, keys: list[str]) -> tuple[int, int] | None:
    """Byte range of the array or object at the key path ``keys`` inside the top-level object.

    Walks strings, brackets and colons only: numbers and literals never decide where a
    container starts or ends. The first occurrence of each key is taken."""
    depth = 0       # containers open at this point
    matched = 0     # the containers at depths 1..matched are the objects along the path
    armed = False   # the next value is the path's next step
    last_string: bytes | None = None
    start = close_depth = -1
    for token in _TOKEN.finditer(body):
        lead = body[token.start()]
        if lead == 0x22:  # a string: a key, or a value (which disarms)
            last_string = token.group()
            armed = False
        elif lead == 0x3A:  # ':' after a key
            armed = (depth == matched + 1 and matched < len(keys) and last_string is not None
                     and orjson.loads(last_string) == keys[matched])
        elif lead in (0x5B, 0x7B):  # '[' or '{'
            depth += 1
            if armed:
                armed = False
                if matched + 1 == len(keys):
                    start, close_depth = token.start(), depth
                elif lead == 0x7B:
                    matched += 1
                else:
                    return None
        else:  # ']' or '}'
            armed = False
            if depth == close_depth and start >= 0:
                return start, token.end()
            depth -= 1
            matched = min(matched, depth)
    return None


_LAYOUT_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]|[^"\[\]{},:\s]+', re.DOTALL)


def indent_exact(raw: bytes | bytearray, indent: str = "  ") -> str:
    """``raw`` laid out one key per line, every value spelled exactly as in ``raw``.

    Only whitespace between tokens changes: numbers (``49.10``), escapes and key order stay as
    the sender wrote them, which re-serialising parsed JSON would not keep."""
    out: list[str] = []
    level = 0
    tokens = [t.group().decode("utf-8", errors="replace") for t in _LAYOUT_TOKEN.finditer(raw)]
    for position, token in enumerate(tokens):
        following = tokens[position + 1] if position + 1 < len(tokens) else ""
        if token in ("{", "["):
            if following in ("}", "]"):  # an empty container stays on one line
                out.append(token)
                continue
            level += 1
            out.append(token + "\n" + indent * level)
        elif token in ("}", "]"):
            if out and out[-1] in ("{", "["):
                out.append(token)
                continue
            level = max(level - 1, 0)
            out.append("\n" + indent * level + token)
        elif token == ",":
            out.append(",\n" + indent * level)
        elif token == ":":
            out.append(": ")
        else:
            out.append(token)
    return "".join(out)


#: Integer digits (run of digits) from which a number with a 2-digit exponent may pass 1.8e308.
_LONG_DIGITS = 200
_BLOCK = 1 << 15
_ZERO, _TEN, _CASE, _E = np.uint8(ord("0")), np.uint8(10), np.uint8(0x20), np.uint8(ord("e"))


def may_overflow_double(body: bytes | bytearray) -> bool:
    """Whether a number in ``body`` might be too large for a double, which orjson refuses
    ("number is infinity") while a parser that skips values does not look. False is a proof:
    a JSON number overflows only with an exponent of three or more digits after a digit, or
    about 209 integer digits. True may be a false alarm (a string holding "7e123", a long run of
    digits in a string); the caller then parses the body fully. ~0.5 ms per 600 KB."""
    data = np.frombuffer(body, np.uint8)
    # 'e' or 'E' right after a digit: an exponent, or a string that looks like one (rare). In
    # blocks: temporaries the size of the body cost more in page faults than the arithmetic.
    for start in range(0, len(data), _BLOCK):
        block = data[start:start + _BLOCK + 1]
        after_digit = ((block[1:] | _CASE) == _E) & ((block[:-1] - _ZERO) < _TEN)
        if after_digit.any():
            for mark in (np.flatnonzero(after_digit) + start + 1).tolist():
                digits = body[mark + 1:mark + 5].lstrip(b"+-")
                if len(digits) >= 3 and digits[:3].isdigit():
                    return True
    # A run of _LONG_DIGITS digits holds two digits _LONG_DIGITS // 2 apart: test only those.
    step = _LONG_DIGITS // 2
    sampled = (data[::step] - _ZERO) < _TEN
    for pair in np.flatnonzero(sampled[:-1] & sampled[1:]).tolist():
        start = pair * step
        if body[start:start + step + 1].isdigit():
            return True
    return False
