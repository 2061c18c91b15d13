"""Pull devices' stored messages from flespi into the recording: an engineer can look at a
tracker's data before any stream or tunnel exists, or fill a gap the stream left.

Documented (and where) / assumed:

* ``GET /gw/devices/{selector}/messages`` with ``data={"from": .., "to": .., "count": ..}`` (Unix
  seconds) returns stored messages; there is no limit/offset: page by time — take the last
  message's ``timestamp`` as the next ``from`` (flespi's API guide, "Pagination" →
  "Message/log/interval endpoints"; flespi-io-js ``src/configs.json`` puts ``data`` in the query).
  ``count`` limits the total across the devices selected, so devices are pulled one at a time.
* that ``from`` and ``to`` are inclusive and the answer is in ascending ``timestamp`` order is
  assumed; messages repeated at a page boundary are recognised and skipped either way.
* device items (``GET /gw/devices/{selector}?fields=id,name,configuration``) hold the tracker's
  ident in ``configuration.ident`` (same guide, "Selectors" example
  ``configuration.ident=352625066004561``). A stored message normally carries ``ident``; one that
  does not gets the device's ident so it can be recorded (assumed rare).
* the largest ``count`` flespi accepts is not documented; `PAGE` is a modest choice.

Recording goes through the recorder like any batch: into the live session (``record_batch``,
each page its own committed batch) or into a new session, all or nothing
(``Recorder.record_pulled``). Either way a message the recording already holds — delivered by
the stream, or pulled before — is stored once (``core/message_key`` + ``store/seen``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.core.normalize import normalize_batch
from app.server.flespi_api import FlespiClient, FlespiError
from app.store.recorder import BatchResult, Recorder

#: Messages asked per request.
PAGE = 1000
#: A page full of one single timestamp is asked again this many times larger at most.
GROW_LIMIT = 16


@dataclass(frozen=True)
class Device:
    """A flespi device to pull: its id, name and ident."""

    id: int
    name: str = ""
    ident: str = ""

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Device:
        configuration = item.get("configuration") if isinstance(item.get("configuration"), dict) else {}
        return cls(int(item["id"]), str(item.get("name") or ""), str(configuration.get("ident") or ""))

    def label(self) -> str:
        return f"{self.name or 'device'} ({self.ident or self.id})"


@dataclass
class PullProgress:
    """Where a pull is: device i of n, messages so far, the newest time reached."""

    device: int
    devices: int
    messages: int
    reached: float
    t_from: float
    t_to: float

    @property
    def fraction(self) -> float:
        """0..1 over all devices, by time within the current one."""
        span = max(self.t_to - self.t_from, 1e-9)
        within = min(max((self.reached - self.t_from) / span, 0.0), 1.0)
        return min((self.device + within) / max(self.devices, 1), 1.0)


@dataclass
class PullSummary:
    """What a pull recorded."""

    session_id: int | None
    new: int = 0
    duplicates: int = 0
    pages: int = 0
    devices: list[str] = field(default_factory=list)
    into_new: bool = False

    def text(self) -> str:
        if self.into_new and self.session_id is None:
            if self.duplicates:
                return (f"nothing new from {len(self.devices)} device(s): all {self.duplicates:,} messages of the "
                        "range are already in the recording; no session was made")
            return f"flespi holds no messages of {len(self.devices)} device(s) in that range; no session was made"
        where = f"session {self.session_id}" if self.session_id is not None else "the live session"
        return (f"{self.new:,} messages recorded into {where} from {len(self.devices)} device(s); "
                f"{self.duplicates:,} were already in the recording and were not stored again")


async def resolve_devices(client: FlespiClient, selectors: list[str]) -> list[Device]:
    """The devices the selectors name (ids, ``configuration.ident=...``, expressions), in order,
    each once; raises `FlespiError` when a selector names none."""
    found: dict[int, Device] = {}
    for selector in selectors:
        items = await client.items("devices", selector, ("id", "name", "configuration"))
        if not items:
            raise FlespiError(f"flespi has no device matching {selector!r}")
        for item in items:
            if isinstance(item.get("id"), int):
                found.setdefault(int(item["id"]), Device.from_item(item))
    return list(found.values())


def _timestamp(message: dict[str, Any]) -> float | None:
    value = message.get("timestamp")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


async def device_pages(client: FlespiClient, device: Device, t_from: float, t_to: float, *,
                       page: int = PAGE) -> AsyncIterator[list[dict[str, Any]]]:
    """The device's stored messages between ``t_from`` and ``t_to``, page by page, each message
    once, in the order flespi gives them."""
    cursor, size = t_from, page
    at_cursor: set[bytes] = set()  # messages stamped `cursor` already given
    while True:
        items = await client.call("GET", f"/gw/devices/{device.id}/messages",
                                  data={"from": cursor, "to": t_to, "count": size})
        items = [m for m in items if isinstance(m, dict)]
        if not items:
            return
        keys = [orjson.dumps(m) for m in items]  # as flespi sent them, before any ident is filled in
        stamps = [_timestamp(m) for m in items]
        fresh = [m for m, key, stamp in zip(items, keys, stamps, strict=True)
                 if not (stamp == cursor and key in at_cursor)]
        if device.ident:
            fresh = [m if "ident" in m else {**m, "ident": device.ident} for m in fresh]
        if fresh:
            yield fresh
        if len(items) < size:
            return
        last = max((t for t in stamps if t is not None), default=None)
        if last is None:
            raise FlespiError(f"{device.label()}: flespi returned messages without a timestamp; cannot page on")
        if last == cursor:  # a whole page of one instant: ask for more at once
            if size >= page * GROW_LIMIT:
                raise FlespiError(f"{device.label()}: more than {size:,} messages share the time {last}")
            at_cursor |= set(keys)
            size *= 2
            continue
        at_cursor = {key for key, stamp in zip(keys, stamps, strict=True) if stamp == last}
        cursor, size = last, page


async def read_ahead(pages: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[list[dict[str, Any]]]:
    """The same pages, the next one already being fetched while the caller records this one."""
    iterator = aiter(pages)
    pending: asyncio.Future = asyncio.ensure_future(anext(iterator))
    try:
        while True:
            try:
                page = await pending
            except StopAsyncIteration:
                return
            pending = asyncio.ensure_future(anext(iterator))
            yield page
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        await iterator.aclose()


async def _all_pages(client: FlespiClient, devices: list[Device], t_from: float, t_to: float,
                     summary: PullSummary, progress: Callable[[PullProgress], None] | None,
                     page: int) -> AsyncIterator[list[dict[str, Any]]]:
    total = 0
    for index, device in enumerate(devices):
        summary.devices.append(device.label())
        async for raws in device_pages(client, device, t_from, t_to, page=page):
            total += len(raws)
            summary.pages += 1
            yield raws
            if progress is not None:
                reached = max((t for t in map(_timestamp, raws) if t is not None), default=t_from)
                progress(PullProgress(index, len(devices), total, reached, t_from, t_to))
        if progress is not None:  # this device's range is done
            progress(PullProgress(index, len(devices), total, t_to, t_from, t_to))


async def pull(client: FlespiClient, recorder: Recorder, devices: list[Device], t_from: float, t_to: float, *,
               session_name: str | None = None, progress: Callable[[PullProgress], None] | None = None,
               on_batch: Callable[[BatchResult, float], None] | None = None, page: int = PAGE) -> PullSummary:
    """Pull ``devices``' messages between ``t_from`` and ``t_to`` (Unix seconds).

    With ``session_name`` the messages go into a new session, all or nothing (cancelled or
    failed: no session is left). Without it they go into the recorder's current session, page
    by page, and ``on_batch`` gets each committed result (the window shows them live)."""
    if t_to < t_from:
        raise ValueError("the end of the time range is before its start")
    summary = PullSummary(None)
    # Closed here, in this task, whatever happens: a generator left to the garbage collector
    # would have to finish its clean-up (cancelling the page being fetched) outside any task.
    async with contextlib.aclosing(read_ahead(_all_pages(client, devices, t_from, t_to, summary, progress,
                                                         page))) as pages:
        if session_name is not None:
            tally = await recorder.record_pulled(session_name, pages)
            summary.session_id = tally.session_id if tally.kept else None
            summary.new, summary.duplicates = tally.new, tally.duplicates
            summary.into_new = True
            return summary
        async for raws in pages:
            body = orjson.dumps(raws)
            now = time.time()
            started = time.perf_counter()
            messages = normalize_batch(raws, now, body)
            result = await recorder.record_batch(received_at=now, peer="flespi-pull", wire_bytes=len(body),
                                                 body=body, messages=messages,
                                                 process_ms=(time.perf_counter() - started) * 1000)
            summary.new += result.new
            summary.duplicates += result.duplicates
            if on_batch is not None:
                on_batch(result, now)
            await asyncio.sleep(0)  # let live batches in between pages
    summary.session_id = recorder.session_id
    return summary
