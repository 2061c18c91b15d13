"""The recently recorded messages, to recognise messages that are re-sent.

Bounded: the last ``limit`` keyed messages recorded into the file (every session, imports
excluded), about 90 bytes of memory each, evicted a whole batch at a time. A message re-sent
after it has left the window is recorded again unless its whole batch is re-sent byte for byte
(batch digests cover the whole file).

Per message the hot path costs one `time_key` (a hash of ident and times); only a message whose
time key is already known has its content compared (`content_key`), with the earlier message read
back from its stored batch when needed. Nothing extra is stored in the file: on open the window
is rebuilt from the newest track chunks, which hold ident, times and flags of every message.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from app.core.message_key import content_key, row_time_key, time_keys
from app.core.normalize import Message, normalize_batch
from app.store.codec import decompress_body

#: Messages remembered. With one stream only its own unacknowledged batch can be re-sent, so
#: this has to cover what *other* streams record before a retry arrives: 250,000 messages is
#: over four minutes at 1,000 msg/s, for ~22 MB.
WINDOW = 250_000

#: (batch id, index in its stored body) → content key of that stored message.
StoredContent = Callable[[int, int], bytes | None]


@dataclass(slots=True)
class _Distinct:
    """Content keys of the different messages that share one time key, oldest first."""

    keys: set[bytes | None] = field(default_factory=set)
    order: deque[tuple[int, bytes | None]] = field(default_factory=deque)

    def add(self, batch_id: int, key: bytes | None) -> None:
        self.keys.add(key)
        self.order.append((batch_id, key))

    def evict_through(self, batch_id: int) -> None:
        while self.order and self.order[0][0] <= batch_id:
            self.keys.discard(self.order.popleft()[1])


@dataclass(slots=True)
class Verdict:
    """Which messages of a batch were recorded before, and what was learnt deciding it."""

    keys: list[int | None]  # time keys, one per message of the batch
    duplicates: list[int] = field(default_factory=list)  # their indexes
    contents: dict[int, bytes | None] = field(default_factory=dict)  # content keys computed, by index


class SeenMessages:
    """Time keys of the last ``limit`` recorded messages, with their batch."""

    def __init__(self, limit: int = WINDOW) -> None:
        self.limit = limit
        self._where: dict[int, int] = {}  # time key → batch of the latest message with it
        self._distinct: dict[int, _Distinct] = {}  # time keys shared by different messages
        self._batches: deque[tuple[int, list[int | None]]] = deque()
        self._by_id: dict[int, list[int | None]] = {}
        self._positions: dict[int, dict[int | None, int]] = {}  # batch → time key → first index, on demand
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def check(self, messages: list[Message], stored: StoredContent) -> Verdict:
        """Find the messages already recorded: in the window, or earlier in this batch."""
        return self.check_keys(time_keys(messages), lambda index: content_key(messages[index]), stored)

    def check_keys(self, keys: list[int | None], content_of: Callable[[int], bytes | None],
                   stored: StoredContent) -> Verdict:
        """`check` for a batch known by its messages' time keys; ``content_of(index)`` gives a
        message's content key, asked only for a message whose time key was seen before."""
        verdict = Verdict(keys)
        present = [k for k in keys if k is not None]
        if self._where.keys().isdisjoint(present) and len(set(present)) == len(present):
            return verdict  # the usual case, answered at C speed
        contents = verdict.contents
        here: dict[int, list[int]] = {}  # time key → indexes of new messages in this batch

        def content(index: int) -> bytes | None:
            if index not in contents:
                contents[index] = content_of(index)
            return contents[index]

        for index, key in enumerate(keys):
            if key is None:
                continue
            batch_id = self._where.get(key)
            earlier = here.get(key)
            if batch_id is None and earlier is None:
                here[key] = [index]
                continue
            mine = content(index)
            duplicate = False
            if mine is not None and batch_id is not None:
                duplicate = mine in self._distinct_for(key, batch_id, stored).keys
            if mine is not None and not duplicate and earlier:
                duplicate = any(content(other) == mine for other in earlier)
            if duplicate:
                verdict.duplicates.append(index)
            else:
                here.setdefault(key, []).append(index)
        return verdict

    def _distinct_for(self, key: int, batch_id: int, stored: StoredContent) -> _Distinct:
        """The content keys recorded under ``key``; for a key seen once so far, read back."""
        distinct = self._distinct.get(key)
        if distinct is None:
            distinct = self._distinct[key] = _Distinct()
            distinct.add(batch_id, stored(batch_id, self._position(batch_id, key)))  # a committed fact
        return distinct

    def _position(self, batch_id: int, key: int) -> int:
        """Index of the first message with ``key`` in a remembered batch: a dict built once per
        batch when first needed (a list search per message made a re-sent 40,000-message batch
        take 11 s)."""
        positions = self._positions.get(batch_id)
        if positions is None:
            positions = self._positions[batch_id] = {}
            for index, known in enumerate(self._by_id[batch_id]):
                positions.setdefault(known, index)
        return positions[key]

    def add(self, batch_id: int, keys: list[int | None], contents: dict[int, bytes | None],
            stored: StoredContent) -> None:
        """Remember a committed batch: ``keys`` of the messages in its stored body, in order;
        ``contents`` the content keys already known, by index in that body."""
        where, distinct_of = self._where, self._distinct
        present = [k for k in keys if k is not None]
        if where.keys().isdisjoint(present) and len(set(present)) == len(present):
            where.update(dict.fromkeys(present, batch_id))  # the usual case
        else:
            def content(index: int) -> bytes | None:
                return contents[index] if index in contents else stored(batch_id, index)

            seen_here: dict[int, int] = {}
            for index, key in enumerate(keys):
                if key is None:
                    continue
                distinct = distinct_of.get(key)
                if distinct is None and key in seen_here:  # a second message of that key in this batch
                    distinct = distinct_of[key] = _Distinct()
                    distinct.add(batch_id, content(seen_here[key]))
                elif distinct is None and key in where:  # the key of a message of an earlier batch
                    distinct = self._distinct_for(key, where[key], stored)
                if distinct is not None:
                    distinct.add(batch_id, content(index))
                seen_here.setdefault(key, index)
                where[key] = batch_id
        self._batches.append((batch_id, keys))
        self._by_id[batch_id] = keys
        self._count += len(present)
        while self._count > self.limit and len(self._batches) > 1:
            self._evict()

    def _evict(self) -> None:
        batch_id, keys = self._batches.popleft()
        del self._by_id[batch_id]
        self._positions.pop(batch_id, None)
        where, distinct_of = self._where, self._distinct
        for key in keys:
            if key is None:
                continue
            self._count -= 1
            if where.get(key) == batch_id:
                del where[key]
                distinct_of.pop(key, None)
            elif key in distinct_of:
                distinct_of[key].evict_through(batch_id)

    @classmethod
    def load(cls, conn: sqlite3.Connection, stored: StoredContent, limit: int = WINDOW) -> SeenMessages:
        """The window as the file holds it: the messages of the newest track chunks (all batches
        are chunked when the recorder opens a file), imported batches left out."""
        rows: dict[int, dict[int, int | None]] = {}
        total = 0
        # Batches not chunked yet (a deriver process is behind, or chunks wait for their flush)
        # are the newest: keyed from their bodies first.
        for batch_id, received_at, body in conn.execute(
                "SELECT b.id, b.received_at, b.body FROM batches b JOIN sessions s ON s.id = b.session_id "
                "WHERE s.indexed_batch >= 0 AND b.id > s.indexed_batch AND b.peer != 'import' ORDER BY b.id DESC"):
            if total >= limit:
                break
            raw = decompress_body(body)
            keys = time_keys(normalize_batch(orjson.loads(raw), received_at, raw))
            if keys:
                rows[batch_id] = dict(enumerate(keys))
                total += len(keys)
        # Imported sessions are left out before counting: a large import must not push the live
        # messages out of the window that a restart rebuilds.
        for ident, packed in conn.execute(
                "SELECT ident, rows FROM tracks WHERE session_id NOT IN "
                "(SELECT DISTINCT session_id FROM batches WHERE peer = 'import') ORDER BY id DESC"):
            if total >= limit:
                break
            for row in orjson.loads(packed):
                rows.setdefault(row[0], {})[row[1]] = row_time_key(ident, row[2], row[3], row[12])
                total += 1
        window = cls(limit)
        if rows:
            imported = {batch_id for (batch_id,) in conn.execute(
                "SELECT id FROM batches WHERE id >= ? AND peer = 'import'", (min(rows),))}
            for batch_id in sorted(rows.keys() - imported):
                by_index = rows[batch_id]
                keys = [by_index.get(index) for index in range(max(by_index) + 1)]
                window.add(batch_id, keys, {}, stored)
        return window
