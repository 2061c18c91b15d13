"""Live fleet state: what each device last said, how often it talks, where it has been.

Batches are applied as they are committed; views pull "what changed since the last frame" on
their own timer, so the screen never works per message. Pure Python: no Qt, no I/O.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from app.core.health import HealthMonitor, HealthThresholds
from app.core.normalize import UNUSABLE_FIX, Message

#: Parameters shown as table columns when a device sends them.
NAME_KEY = "device.name"
IGNITION_KEY = "engine.ignition.status"
POWER_KEY = "external.powersource.voltage"
BATTERY_KEYS = ("battery.level", "battery.voltage")
#: Log entries a fleet keeps for the next frame beyond its log window before trimming them (each
#: trim frees about this many: a millisecond or two, never a whole window at once).
NEW_LOG_SLACK = 2_000


@dataclass(frozen=True, slots=True)
class StatusThresholds:
    """Seconds since the last message after which a device counts as stale, then offline."""

    stale_after: float = 60.0
    offline_after: float = 600.0

    def status(self, age: float) -> str:
        """'online', 'stale' or 'offline' for a device last heard ``age`` seconds ago."""
        if age < self.stale_after:
            return "online"
        return "stale" if age < self.offline_after else "offline"


@dataclass(slots=True)
class DeviceState:
    """Everything the views show about one device."""

    ident: str
    first_seen: float
    last_seen: float
    count: int = 0
    flagged: int = 0
    name: str = ""
    latest: Message | None = None  # newest by device time
    previous: Message | None = None  # the one before ``latest``
    fix: Message | None = None  # newest message with a usable position
    trail: deque[tuple[float, float]] = field(default_factory=deque)
    trail_total: int = 0  # positions ever appended; lets a view send only the new ones
    arrivals: deque[tuple[float, int]] = field(default_factory=deque)  # (receive time, messages)
    arrived: int = 0  # messages in ``arrivals``
    arrivals_total: int = 0  # entries ever appended to ``arrivals`` (a view sends only the new ones)
    latest_at: tuple[int | None, int] | None = None  # where ``latest`` is stored (batch, index), when known

    def note_arrival(self, received_at: float, count: int) -> None:
        """Count ``count`` messages received at ``received_at`` towards the rate."""
        self.arrivals.append((received_at, count))
        self.arrived += count
        self.arrivals_total += 1

    def note_arrivals(self, entries: list[tuple[float, int]]) -> None:
        """`note_arrival` for each (receive time, messages) of ``entries``, oldest first: a
        mirror takes a frame's worth of them per device (a backlog: one per batch)."""
        if entries:
            self.arrivals.extend(entries)
            self.arrived += sum([count for _, count in entries])
            self.arrivals_total += len(entries)

    def rate_per_min(self, now: float, window: float = 60.0) -> float:
        """Messages per minute received over the last ``window`` seconds."""
        arrivals = self.arrivals
        while arrivals and arrivals[0][0] < now - window:
            self.arrived -= arrivals.popleft()[1]
        return self.arrived * 60.0 / window

    def param(self, key: str) -> Any:
        """A parameter of the latest message, or None."""
        return None if self.latest is None else self.latest.params.get(key)


@dataclass(slots=True, eq=False)
class LogEntry:
    """One message as the log shows it; ``seq`` orders all messages seen by this fleet. Not to
    be changed once made; compared by identity (one per message seen, made in bulk: a frozen
    dataclass took four times as long to create)."""

    seq: int
    received_at: float
    message: Message
    batch_id: int | None = None  # where the raw JSON is stored, with ``index``
    index: int = 0


class Fleet:
    """Applies batches; remembers which devices changed for the next frame."""

    def __init__(self, *, trail_length: int = 200, log_size: int = 20_000,
                 health: HealthThresholds | None = None) -> None:
        self.devices: dict[str, DeviceState] = {}
        self.health = HealthMonitor(health)  # findings refer to LogEntry objects
        self.trail_length = trail_length
        self.log: deque[LogEntry] = deque(maxlen=log_size)
        self.total = 0
        self._seq = itertools.count(1)
        self._changed: dict[str, None] = {}  # insertion-ordered set
        self._new_log: list[LogEntry] = []

    def apply(self, messages: list[Message], received_at: float, batch_id: int | None = None, *,
              indexes: list[int] | None = None, seen_at: float | None = None) -> None:
        """Fold one batch into the state. Messages older than a device's latest become history
        (counted and logged) without moving the device back in time.

        ``indexes`` gives each message's position in its stored batch (default: its position in
        ``messages``); ``seen_at`` is the clock statuses are measured on (default: receive time —
        replay passes device time, since its clock is the recording's)."""
        devices = self.devices
        changed = self._changed
        seq = self._seq
        positions = indexes if indexes is not None else range(len(messages))
        entries = [LogEntry(next(seq), received_at, m, batch_id, i) for i, m in zip(positions, messages, strict=True)]
        if seen_at is None:
            seen_at = received_at
        # Per device, not per message: a backlog brings several messages per device per batch,
        # and only the newest of them becomes the device's state.
        groups = _by_device(messages, entries)
        self.health.add_runs(groups, received_at)
        trail_length = self.trail_length
        for ident, (group, _) in groups.items():
            state = devices.get(ident)
            if state is None:
                state = devices[ident] = DeviceState(ident, seen_at, seen_at, trail=deque(maxlen=trail_length))
            if len(group) == 1:  # the rule with a large fleet (a live stream, a backlog): the same, unrolled
                m = group[0]
                latest = state.latest
                if latest is None or m.ts >= latest.ts:
                    state.previous, state.latest = latest, m
                    named = m.params.get(NAME_KEY)
                    if named is not None:
                        state.name = str(named)
                    if not m.flags & UNUSABLE_FIX:  # Message.has_fix
                        state.fix = m
                        state.trail.append((m.lat, m.lon))  # type: ignore[arg-type]
                        state.trail_total += 1
                if m.flags:
                    state.flagged += 1
                state.count += 1
                state.last_seen = seen_at
                state.note_arrival(seen_at, 1)
                changed[ident] = None
                continue
            latest, previous, fix, name = state.latest, state.previous, state.fix, None
            flagged = 0
            trail: list[tuple[float, float]] = []
            for m in group:
                if m.flags:
                    flagged += 1
                if latest is None or m.ts >= latest.ts:
                    previous, latest = latest, m
                    named = m.params.get(NAME_KEY)
                    if named is not None:
                        name = named
                    if m.has_fix:
                        fix = m
                        trail.append((m.lat, m.lon))  # type: ignore[arg-type]
            state.latest, state.previous, state.fix = latest, previous, fix
            if name is not None:
                state.name = str(name)
            if trail:
                state.trail.extend(trail)
                state.trail_total += len(trail)
            state.count += len(group)
            state.flagged += flagged
            state.last_seen = seen_at
            state.note_arrival(seen_at, len(group))
            changed[ident] = None
        self.total += len(messages)
        self.log.extend(entries)
        new_log = self._new_log
        new_log.extend(entries)
        # Nobody takes this fleet's changes while the views show another (a replay): only the
        # newest log window can ever show, so no more than that (and a little) is kept for them.
        if len(new_log) > self.log.maxlen + NEW_LOG_SLACK:  # type: ignore[operator]
            del new_log[:len(new_log) - self.log.maxlen]  # type: ignore[operator]

    def take_changes(self) -> tuple[list[str], list[LogEntry]]:
        """Devices changed and log entries added since the previous call (for one frame)."""
        changed, self._changed = list(self._changed), {}
        entries, self._new_log = self._new_log, []
        if len(entries) > self.log.maxlen:  # type: ignore[operator]
            entries = entries[-self.log.maxlen:]  # type: ignore[operator]
        return changed, entries

    def seed(self, latest: LogEntry, previous: Message | None, fix: Message | None,
             trail: list[tuple[float, float]], seen_at: float) -> None:
        """Put a device in a given state at once (replay seeking to an instant)."""
        m = latest.message
        state = self.devices[m.ident] = DeviceState(m.ident, seen_at, seen_at, count=1, flagged=int(bool(m.flags)),
                                                    trail=deque(trail, maxlen=self.trail_length))
        state.latest, state.previous, state.fix = m, previous, fix
        state.trail_total = len(trail)
        name = m.params.get(NAME_KEY)
        if name is not None:
            state.name = str(name)
        entry = LogEntry(next(self._seq), latest.received_at, m, latest.batch_id, latest.index)
        self.log.append(entry)
        self._new_log.append(entry)
        self._changed[m.ident] = None
        self.total += 1

    def mark_all_changed(self) -> None:
        """Report every device and the whole log window as new (a view was emptied)."""
        self._changed.update(dict.fromkeys(self.devices))
        self._new_log = list(self.log)

    def set_trail_length(self, length: int) -> None:
        """Change how many positions each trail keeps (existing trails are trimmed)."""
        self.trail_length = length
        for state in self.devices.values():
            state.trail = deque(state.trail, maxlen=length)

    def clear(self) -> list[Any]:
        """Forget everything (a new session, a replay seek). Returns what the fleet held — a
        session's worth of objects, tens of ms to free — for a caller that would rather free it
        later (the window: `ui/slow_release`); dropping the list frees it at once."""
        held: list[Any] = [*self.devices.values(), *self.log, *self.health.clear(), *self._new_log]
        self.devices.clear()
        self.log.clear()
        self.total = 0
        self._changed.clear()
        self._new_log.clear()
        return held


def _by_device(messages: list[Message], entries: list[LogEntry]) -> dict[str, tuple[list[Message], list[LogEntry]]]:
    """Messages and their log entries grouped by device, each group in arrival order, devices in
    order of first arrival."""
    groups: dict[str, tuple[list[Message], list[LogEntry]]] = {}
    for m, entry in zip(messages, entries, strict=True):
        group = groups.get(m.ident)
        if group is None:
            groups[m.ident] = ([m], [entry])
        else:
            group[0].append(m)
            group[1].append(entry)
    return groups


def changed_params(latest: Message, previous: Message | None) -> dict[str, str]:
    """Which parameters differ from the previous message: key → 'added', 'removed', 'changed'."""
    if previous is None:
        return {}
    old, new = previous.params, latest.params
    out = {key: "added" for key in new.keys() - old.keys()}
    out.update({key: "removed" for key in old.keys() - new.keys()})
    out.update({key: "changed" for key in new.keys() & old.keys() if new[key] != old[key]})
    return out
