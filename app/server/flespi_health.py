"""The stream's health as flespi sees it: enabled, connected, queue backlog, recent delivery
errors — so "nothing arrives" has an answer on one screen. Fetching and polite polling only;
the window and `trackmon flespi status` show it.

Documented (and where) / assumed:

* ``GET /gw/streams/{id}`` returns the stream item; ``enabled``, ``queue_ttl`` are its
  configuration fields and ``queue_size``, ``connected`` its state fields (flespi KB "How to
  control account limitations", table of ``flespi/state/gw/streams`` properties). That the REST
  item carries the state fields too is assumed; a missing field shows as unknown.
* ``GET /gw/streams/{id}/logs`` with ``data={"count": N, "reverse": true}`` gives the newest log
  records (flespi's API guide, "Logs"). Each batch the stream handles is logged with ``read``,
  ``skipped``, ``accepted`` and ``rejected`` counts and ``ack_latency`` (KB "Stream — forwarding
  data"); records may carry ``error_text``, ``reason``, ``ident``, ``device_id``, ``event_code``
  (flespi Toolbox ``src/config.js`` stream log columns, ``LogsListItem.vue``). What counts as a
  delivery error here — ``error_text``, ``rejected > 0``, or an HTTP ``response_code`` of 400
  or more — is our reading of those fields, not a documented rule; event codes are not
  interpreted (their meanings come from the server at run time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.server.flespi_api import FlespiClient, FlespiError
from app.server.flespi_stream import find_stream, http_protocol_id

log = logging.getLogger(__name__)

#: Seconds between polls while all is well, and the longest wait after repeated failures.
POLL_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 300.0
LOG_RECORDS = 50


@dataclass(frozen=True)
class DeliveryError:
    """One log record that says a batch did not get through."""

    at: float
    text: str


@dataclass(frozen=True)
class StreamHealth:
    """One look at the stream from flespi's side."""

    stream_id: int
    name: str
    checked_at: float
    enabled: bool | None = None
    connected: bool | None = None
    queue_size: int | None = None  # messages (or bytes; flespi's unit is not documented) waiting
    last_accepted: float | None = None  # newest log record with accepted messages
    errors: list[DeliveryError] = field(default_factory=list)  # newest first

    @property
    def level(self) -> str:
        """'ok', 'warning' (disabled, backlog) or 'error' (errors newer than the last delivery)."""
        if self.enabled is False:
            return "warning"
        if self.errors and (self.last_accepted is None or self.errors[0].at > self.last_accepted):
            return "error"
        if self.queue_size:
            return "warning"
        return "ok"

    def state_words(self) -> list[str]:
        """enabled / connected / queue, as short words."""
        words = [{True: "enabled", False: "DISABLED", None: "enabled ?"}[self.enabled]]
        if self.connected is not None:
            words.append("connected" if self.connected else "not connected")
        words.append("queue ?" if self.queue_size is None else f"queue {self.queue_size:,}")
        return words

    def summary(self) -> str:
        """One line: the state, the backlog, the newest error."""
        parts = [f"flespi stream {self.name!r} ({self.stream_id})", *self.state_words()]
        if self.errors and self.level == "error":
            parts.append(f"last error: {self.errors[0].text}")
        elif self.last_accepted is not None:
            parts.append(f"last delivery {time.strftime('%H:%M:%S', time.gmtime(self.last_accepted))} UTC")
        return " · ".join(parts)

    def grouped_errors(self) -> list[tuple[str, int, float]]:
        """The recent errors by text: (text, how many, newest time), newest first — a refused
        batch is re-sent over and over and would otherwise fill the list with one line."""
        groups: dict[str, tuple[int, float]] = {}
        for error in self.errors:
            count, newest = groups.get(error.text, (0, error.at))
            groups[error.text] = (count + 1, max(newest, error.at))
        return sorted(((t, c, at) for t, (c, at) in groups.items()), key=lambda g: g[2], reverse=True)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def delivery_error(record: dict[str, Any]) -> DeliveryError | None:
    """The error a log record reports, or None (see the module docstring for the reading)."""
    at = _number(record.get("timestamp")) or 0.0
    text = record.get("error_text")
    if isinstance(text, str) and text:
        return DeliveryError(at, text[:300])
    rejected = _number(record.get("rejected"))
    code = _number(record.get("response_code"))
    if rejected or (code is not None and code >= 400):
        bits = []
        if rejected:
            bits.append(f"{int(rejected)} messages rejected")
        if code is not None:
            bits.append(f"HTTP {int(code)}")
        reason = record.get("reason")
        if isinstance(reason, str) and reason:
            bits.append(reason[:200])
        return DeliveryError(at, ", ".join(bits))
    return None


def read_health(stream: dict[str, Any], records: list[dict[str, Any]], now: float | None = None) -> StreamHealth:
    """A `StreamHealth` from the stream item and its log records (any order)."""
    errors, accepted = [], None
    for record in records:
        if not isinstance(record, dict):
            continue
        error = delivery_error(record)
        if error is not None:
            errors.append(error)
        elif _number(record.get("accepted")):
            at = _number(record.get("timestamp"))
            if at is not None and (accepted is None or at > accepted):
                accepted = at
    errors.sort(key=lambda e: e.at, reverse=True)
    enabled, connected = stream.get("enabled"), stream.get("connected")
    queue = stream.get("queue_size")
    return StreamHealth(int(stream.get("id", 0)), str(stream.get("name", "")), time.time() if now is None else now,
                        enabled if isinstance(enabled, bool) else None,
                        connected if isinstance(connected, bool) else None,
                        int(queue) if isinstance(queue, int | float) and not isinstance(queue, bool) else None,
                        accepted, errors[:30])


async def fetch_health(client: FlespiClient, stream_id: int) -> StreamHealth:
    """The stream's newest log records, then its item: read in this order, the backlog is never
    older than the deliveries logged (a batch delivered between the two reads shows as delivered
    and gone, not as delivered and still queued)."""
    records = await client.call("GET", f"/gw/streams/{int(stream_id)}/logs",
                                data={"count": LOG_RECORDS, "reverse": True})
    items = await client.items("streams", str(int(stream_id)))
    if not items:
        raise FlespiError(f"flespi has no stream {stream_id} (deleted?)")
    return read_health(items[0], records)


async def locate_stream(client: FlespiClient, name: str) -> int:
    """The id of the http stream called ``name``."""
    stream, _ = await find_stream(client, name, await http_protocol_id(client))
    if stream is None:
        raise FlespiError(f"flespi has no http stream named {name!r}; set one up first")
    return int(stream["id"])


class HealthPoller:
    """Polls one stream's health on the running loop: every `POLL_SECONDS` while answers come,
    doubling the wait after each failure up to `MAX_BACKOFF_SECONDS`. Calls ``on_health`` or
    ``on_error`` (plain data) on the loop; never blocks it."""

    def __init__(self, token: str, api: str, stream: int | str, on_health: Callable[[StreamHealth], None],
                 on_error: Callable[[str], None], *, interval: float = POLL_SECONDS,
                 max_backoff: float = MAX_BACKOFF_SECONDS) -> None:
        self.token, self.api, self.stream = token, api, stream
        self.on_health, self.on_error = on_health, on_error
        self.interval, self.max_backoff = interval, max_backoff
        self.failures = 0
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Begin polling (the first poll at once)."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="flespi-health")

    def poll_now(self) -> None:
        """Poll at once instead of waiting for the next turn."""
        self._wake.set()

    def cancel(self) -> None:
        """Stop polling without waiting (the task ends at its next await)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        """Stop polling and wait for the task to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def next_wait(self) -> float:
        """Seconds until the next poll: the interval, doubled per failure in a row, capped."""
        return min(self.interval * (2 ** self.failures), self.max_backoff) if self.failures else self.interval

    async def _run(self) -> None:
        stream_id: int | None = self.stream if isinstance(self.stream, int) else None
        async with FlespiClient(self.token, self.api, timeout=20) as client:
            while True:
                try:
                    if stream_id is None:
                        stream_id = await locate_stream(client, str(self.stream))
                    health = await fetch_health(client, stream_id)
                except FlespiError as exc:
                    self.failures += 1
                    self.on_error(str(exc))
                else:
                    self.failures = 0
                    self.on_health(health)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.next_wait())
