"""From the bytes of a POST to the messages it carries, with every limit enforced.

Two paths, one result:

* **inline** — an uncompressed body up to ``Limits.inline_bytes`` (a flespi batch of 1,000
  messages is ~600 KB): one ``orjson.loads`` and one `normalize_batch`, on the event loop, as
  fast as before any of the limits existed;
* **in slices** — anything larger or compressed runs in a worker thread: decompression in
  64 KiB steps (bounded output, several gzip members, nothing after the last), a structural
  scan of the raw bytes (`jsonscan`) that refuses too deep or too many before anything is
  built, then orjson and normalization one slice of whole elements at a time, giving up the GIL
  between slices so the event loop keeps answering.

A large body that is an object rather than an array (one message, or messages wrapped for
``--messages-path``) is scanned the same way, then parsed in one orjson call in the worker:
that holds the GIL ~8 ms per MiB. flespi always sends arrays; wrapped senders are rare.

Every refusal is a `Refused` with a specific status and code.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from app.core.jsonscan import ScanError, first_byte, scan_array
from app.core.normalize import Message, normalize, normalize_batch
from app.core.payload import PayloadShapeError, locate_messages
from app.core.raw_json import message_array
from app.server.limits import Limits
from app.server.refusal import Refused

#: Compressed input handed to zlib per call: keeps ``unused_data`` copies small with many members.
INFLATE_STEP = 64 * 1024
#: Messages normalized per step when the messages come from one parsed document.
NORMALIZE_STEP = 2_000
COMPRESSED = frozenset({"gzip", "x-gzip", "deflate"})


@dataclass(frozen=True, slots=True)
class Batch:
    """What a body carried: its messages and the JSON array to record (the body itself when
    it is an array, so a re-sent batch has the same digest)."""

    messages: list[Message]
    stored: bytes | bytearray
    body_bytes: int


def runs_inline(wire_bytes: int, encoding: str, limits: Limits) -> bool:
    """Whether a body this size and encoding is parsed on the event loop (see module doc)."""
    return wire_bytes <= limits.inline_bytes and encoding.strip().lower() not in COMPRESSED


def read_batch(wire: bytes | bytearray, encoding: str, received_at: float, limits: Limits, max_body: int,
               messages_path: str = "", pause: Callable[[], None] | None = None) -> Batch:
    """Decode, parse, check and normalize one body; raises Refused.

    ``pause`` is called between slices (the worker passes a GIL hand-over)."""
    pause = pause or _no_pause
    body = decode(wire, encoding, max_body, limits.max_gzip_members)
    if len(body) <= limits.inline_bytes:
        return _read_whole(body, received_at, limits, messages_path)
    return _read_sliced(body, received_at, limits, messages_path, pause)


def yield_gil() -> None:
    """Let another thread (the event loop) take the GIL now, not at the next switch interval."""
    time.sleep(0)


def _no_pause() -> None:
    return None


# -- decoding ---------------------------------------------------------------------------------
def decode(wire: bytes | bytearray, encoding: str, limit: int, max_members: int) -> bytes | bytearray:
    """Undo gzip/deflate, never producing more than ``limit`` bytes (a zip bomb gets 413).

    gzip may hold several members (RFC 1952), at most ``max_members``; anything after the last
    one is refused, as is anything after a deflate stream."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return wire
    if "gzip" in encoding:
        return _inflate(wire, 16 + zlib.MAX_WBITS, encoding, limit, max_members)
    try:  # "deflate" is zlib-wrapped per the RFC; some senders use raw deflate
        return _inflate(wire, zlib.MAX_WBITS, encoding, limit, 1)
    except Refused as wrapped:
        if wrapped.code != "bad_body":
            raise
        try:
            return _inflate(wire, -zlib.MAX_WBITS, encoding, limit, 1)
        except Refused:
            raise wrapped from None


def _inflate(wire: bytes | bytearray, wbits: int, encoding: str, limit: int, max_members: int) -> bytes | bytearray:
    """Decompress ``wire`` in INFLATE_STEP pieces, one decompressor per gzip member, into a
    growing buffer (joining 64 MiB of pieces at the end would hold the GIL ~100 ms)."""
    out = bytearray()
    size = 0
    members = 1
    decoder = zlib.decompressobj(wbits)
    view = memoryview(wire)
    offset = 0
    pending: bytes | memoryview = b""
    while True:
        if not pending:
            if offset >= len(wire):
                break
            pending = view[offset:offset + INFLATE_STEP]
            offset += len(pending)
        try:
            chunk = decoder.decompress(pending, limit - size + 1)
        except zlib.error as exc:
            raise Refused(400, "bad_body", f"cannot decode {encoding} body: {exc}", wire, len(wire)) from None
        size += len(chunk)
        if size > limit:
            raise Refused(413, "too_large", f"body exceeds the limit of {limit} bytes after decompression",
                          chunk, len(wire))
        out += chunk
        if not decoder.eof:
            pending = decoder.unconsumed_tail
            continue
        rest = decoder.unused_data  # what follows the end of this stream
        while len(rest) < 2 and offset < len(wire):
            rest += bytes(view[offset:offset + INFLATE_STEP])
            offset = min(offset + INFLATE_STEP, len(wire))
        if not rest:
            break
        if wbits <= zlib.MAX_WBITS or not rest.startswith(b"\x1f\x8b"):
            raise Refused(400, "bad_body", f"data after the end of the {encoding} stream", wire, len(wire))
        members += 1
        if members > max_members:
            raise Refused(400, "bad_body", f"more than {max_members} gzip members", wire, len(wire))
        decoder = zlib.decompressobj(wbits)
        pending = rest
    if not decoder.eof:
        raise Refused(400, "bad_body", f"{encoding} body is truncated", wire, len(wire))
    return out


# -- parsing ----------------------------------------------------------------------------------
def _read_whole(body: bytes | bytearray, received_at: float, limits: Limits, messages_path: str) -> Batch:
    """The inline path: one orjson call, checks on the result, one normalization pass.

    This is the ingest hot path, so the batch is walked once: the object count serves both the
    refusal of non-object arrays and `normalize_batch`'s proof that a batch is flat (every '{'
    opens a message: no nested objects), which with no '[' after the outer one also proves the
    depth is 2. Only batches that are not proven flat are walked for depth."""
    document = _loads(body)
    raws = _locate(document, messages_path, body)
    if len(raws) > limits.max_messages:
        raise Refused(413, "too_many_messages", f"more than {limits.max_messages} messages in one batch",
                      body, len(body))
    objects = sum(1 for raw in raws if type(raw) is dict)
    _check_objects(len(raws), objects, body)
    is_array = type(document) is list
    flat = is_array and objects == len(raws) and body.count(b"{") == objects
    if not (flat and body.find(b"[", body.find(b"[") + 1) == -1):
        _check_depth(document, limits.max_depth, body)
    messages = [normalize(raw, received_at, flat) for raw in raws]  # = normalize_batch, proof done above
    return Batch(messages, body if is_array else _as_received(body, messages_path, raws), len(body))


def _read_sliced(body: bytes | bytearray, received_at: float, limits: Limits, messages_path: str,
                 pause: Callable[[], None]) -> Batch:
    """The worker path: scan the structure first, then parse and normalize in slices."""
    lead = first_byte(body)
    if lead not in (ord("["), ord("{")):  # blank, or one huge scalar: refused as the inline path would
        _locate(_loads(body), messages_path, body)  # raises: a scalar never holds messages
        raise Refused(422, "unprocessable", "expected a JSON array of messages or an object", body, len(body))
    try:
        layout = scan_array(body, max_depth=limits.max_depth, max_elements=limits.max_messages)
    except ScanError as exc:
        raise _scan_refusal(exc, body) from None
    pause()
    if lead == ord("{"):  # one message, or messages wrapped in an object (--messages-path)
        document = _loads(body)
        pause()
        raws = _locate(document, messages_path, body)
        _check_elements(raws, limits, body)
        messages: list[Message] = []
        for start in range(0, len(raws), NORMALIZE_STEP):
            messages.extend(normalize_batch(raws[start:start + NORMALIZE_STEP], received_at))
            pause()
        return Batch(messages, _as_received(body, messages_path, raws), len(body))
    _check_objects(layout.count, layout.objects, body)
    messages = []
    for first, last, start, end in layout.slices(limits.slice_bytes):
        part = body[start:end]
        raws = _loads(b"[" + part + b"]", body)
        if len(raws) != last - first:  # an empty element: "[1,,2]" or "[1,]"
            raise Refused(400, "invalid_json", "invalid JSON: an empty array element", body, len(body))
        messages.extend(normalize_batch(raws, received_at, part))
        pause()
    return Batch(messages, body, len(body))


def _as_received(body: bytes | bytearray, messages_path: str, raws: list[Any]) -> bytes:
    """The array to store for an object body: its messages' bytes as sent, so that the stored
    batch shows exactly what the device sent (re-serialising turns 49.10 into 49.1)."""
    exact = message_array(body, messages_path, len(raws))
    return exact if exact is not None else orjson.dumps(raws)


def _loads(text: bytes, body: bytes | None = None) -> Any:
    body = text if body is None else body
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):  # orjson's own bound (1,024) when max_depth is set above it
            raise Refused(422, "too_deep", "nesting deeper than orjson's 1024 levels", body, len(body)) from None
        detail = "empty body" if not text.strip() else f"invalid JSON: {exc}"
        raise Refused(400, "invalid_json", detail, body, len(body)) from None


def _locate(document: Any, messages_path: str, body: bytes) -> list[Any]:
    try:
        return locate_messages(document, messages_path)
    except PayloadShapeError as exc:
        raise Refused(422, "unprocessable", str(exc), body, len(body)) from None


def _check_elements(raws: list[Any], limits: Limits, body: bytes) -> int:
    """Refuse too many messages or an array of non-objects; returns how many are objects."""
    if len(raws) > limits.max_messages:
        raise Refused(413, "too_many_messages", f"more than {limits.max_messages} messages in one batch",
                      body, len(body))
    objects = sum(1 for raw in raws if type(raw) is dict)
    _check_objects(len(raws), objects, body)
    return objects


def _check_objects(count: int, objects: int, body: bytes) -> None:
    """A stray non-object is kept (flagged, like any odd message); a batch that is mostly not
    objects is not a message stream and would cost a flagged message per element."""
    if count - objects > objects:
        raise Refused(422, "not_messages", f"{count - objects} of {count} array elements are not JSON "
                                           "objects; messages are objects", body, len(body))


def _check_depth(document: Any, limit: int, body: bytes) -> None:
    """Refuse nesting deeper than ``limit`` (an array holding objects is depth 2); iterative."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        for child in (node.values() if type(node) is dict else node):
            kind = type(child)
            if kind is dict or kind is list:
                if depth + 1 > limit:
                    raise Refused(422, "too_deep", f"nesting deeper than {limit} levels", body, len(body))
                stack.append((child, depth + 1))


def _scan_refusal(exc: ScanError, body: bytes) -> Refused:
    if exc.kind == "too_deep":
        return Refused(422, "too_deep", str(exc), body, len(body))
    if exc.kind == "too_many":
        return Refused(413, "too_many_messages", str(exc), body, len(body))
    return Refused(400, "invalid_json", f"invalid JSON: {exc}", body, len(body))
