"""Tracker health checks, per device, fed in arrival order (live, in replay, offline): a batch
at a time, run device by device, with the same findings as one message at a time.

What an engineer bringing up a tracker needs to see at a glance: how regularly it reports,
how late its data arrives, whether its clock and fixes can be trusted, whether parameters come
and go or never change. Every finding keeps references to the latest offending messages so a
view can jump to them. Pure: no Qt, no I/O; cheap enough to run on every message.

Every occurrence is counted, but a device is only *warned about* when a problem is persistent or
material, so that a real problem stands out in a fleet: a fix problem (invalid, few satellites,
high HDOP) when it affects a share of the recent messages for a while; an event (a jump, a clock
or ordering problem, a gap, late delivery) when it happens repeatedly within a window; the
informational checks never. `HealthThresholds` holds every number, in words a user can read
(`describe`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from math import cos, sqrt
from typing import Any

import numpy as np

from app.core.normalize import UNUSABLE_FIX, Message

INFO, WARN, ERROR = 1, 2, 3
SEVERITY_NAMES = {0: "ok", INFO: "info", WARN: "warning", ERROR: "error"}

#: check id → (label, severity)
CHECKS: dict[str, tuple[str, int]] = {
    "future_time": ("Timestamps in the future", ERROR),
    "jump": ("Position jumps", ERROR),
    "out_of_order": ("Out-of-order timestamps", WARN),
    "duplicate_time": ("Duplicate timestamps", WARN),
    "past_time": ("Timestamps far in the past", WARN),
    "invalid_fix": ("Invalid fixes", WARN),
    "few_satellites": ("Few satellites", WARN),
    "high_hdop": ("High HDOP", WARN),
    "gap": ("Reporting gaps", WARN),
    "latency": ("Late delivery", WARN),
    "params_changed": ("Parameters appearing / disappearing", INFO),
    "stuck": ("Values that never change", INFO),
}

#: How a check earns a warning: by the share of recent messages it affects ("share"), by how
#: often it happens within a time window ("events"), or never: shown, not warned about ("info").
RULES: dict[str, str] = {
    "invalid_fix": "share", "few_satellites": "share", "high_hdop": "share",
    "future_time": "events", "jump": "events", "out_of_order": "events", "duplicate_time": "events",
    "past_time": "events", "gap": "events", "latency": "events",
    "params_changed": "info", "stuck": "info",
}
_SHARE_BITS = {"invalid_fix": 1, "few_satellites": 2, "high_hdop": 4}

#: Interval histogram bin edges in seconds (the last bin is open-ended): about four per doubling
#: from 0.1 s to a day, in round numbers, so that a tracker's usual interval and its spread read
#: as several bars, not one.
INTERVAL_BINS: tuple[float, ...] = (
    0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 10, 12, 15, 20, 25, 30, 40, 50,
    60, 75, 90, 120, 150, 180, 240, 300, 420, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 10800, 21600, 43200,
    86400)
_BIN_EDGES = np.array(INTERVAL_BINS)
#: How many of the latest intervals the usual interval (and its spread) is the median of.
RECENT_INTERVALS = 255
#: Intervals a device holds before they are counted into the histogram: a numpy pass per ~250
#: costs as little as larger ones, and keeps a device's list at ~16 KB (fleets of thousands).
_BIN_EVERY = 512
_MISSING = object()
_RADIANS = math.pi / 180.0  # what math.radians multiplies by: the same jumps to the last bit
#: Parameters that are constant by nature, never reported as stuck.
NOT_SENSORS = ("ident", "timestamp", "server.timestamp", "device.", "channel.", "protocol.", "peer", "position.valid")
#: Parameters whose appearing/disappearing is counted per device; names past this are not tracked.
MAX_TRACKED_KEYS = 1000


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """When a check fires. Defaults suit vehicle trackers reporting every few seconds to minutes."""

    future_s: float = 60.0  # device time ahead of receive time
    past_s: float = 30 * 86400.0  # device time this far behind receive time
    min_satellites: float = 4
    max_hdop: float = 5.0
    jump_kmh: float = 300.0
    gap_factor: float = 5.0  # a gap is this many usual intervals...
    gap_min_s: float = 60.0  # ...and at least this long
    latency_s: float = 60.0  # server.timestamp - timestamp
    stuck_messages: int = 100  # unchanged for this many messages...
    stuck_seconds: float = 1800.0  # ...spanning at least this much device time
    keep_refs: int = 20  # latest offending messages kept per check
    # When a check becomes a warning (see RULES):
    bad_share: float = 0.25  # a fix problem in at least this share of...
    window_messages: int = 20  # ...the device's latest this many messages...
    persist_s: float = 60.0  # ...for at least this long (device time)
    events: int = 2  # an event check this many times...
    events_window_s: float = 600.0  # ...within this much device time

    def describe(self) -> list[str]:
        """The warning rules in words, as a user reads them in the Health tab."""
        return [
            f"Fix problems (invalid fix, fewer than {self.min_satellites:g} satellites, HDOP above "
            f"{self.max_hdop:g}): a warning when they affect {self.bad_share:.0%} or more of the last "
            f"{self.window_messages} messages for {self.persist_s:g} s or longer.",
            f"Jumps (over {self.jump_kmh:g} km/h implied), clock, order, gap and delivery problems: a warning "
            f"when one happens {self.events} times or more within {self.events_window_s / 60:g} minutes.",
            "Parameters appearing or disappearing and values that never change: shown, never a warning.",
        ]


def _initial_state(thresholds: HealthThresholds) -> tuple[float, ...]:
    """A device's running state before its first message (see `DeviceHealth._state`). No previous
    message: a NaN time (no interval); no previous fix: a fix "after" every message (no jump)."""
    return (0, math.nan, -math.inf,  # messages, previous time, latest time
            0.0, 0.0, min(0.0, thresholds.latency_s), 0.0, 0,  # latency sum, max, low, transit sum, untimed
            math.inf, 0.0, 0.0,  # previous fix: time, lat, lon
            0,  # good fixes in a row last added to share_bits (all of it, once >= its size)
            0)  # the next message count to estimate the usual interval at


#: Columns of `_StateTable`, in `DeviceHealth._state` order.
(_COUNT, _PREV_TS, _LAST_TS, _LATENCY_SUM, _LATENCY_MAX, _LATENCY_LOW, _TRANSIT_SUM, _UNTIMED, _FIX_TS, _FIX_LAT,
 _FIX_LON, _CLEAN, _DUE) = range(13)


class _StateTable:
    """Devices' running states (`DeviceHealth._state`) as rows of one float array, so that a batch
    from many devices is checked a column at a time over all of them (`_check_columns`): a thousand
    devices with one message each per batch is the window's everyday backlog. Counts are whole
    numbers well below 2**53, exact as floats, and read back as ints."""

    __slots__ = ("rows", "used")

    def __init__(self) -> None:
        self.rows = np.empty((8, 13))
        self.used = 0

    def add(self, state: tuple[float, ...]) -> int:
        """A row for a new device, holding ``state``; its index."""
        if self.used == len(self.rows):
            grown = np.empty((2 * len(self.rows), 13))
            grown[:self.used] = self.rows
            self.rows = grown
        slot = self.used
        self.rows[slot] = state
        self.used += 1
        return slot

    def get(self, slot: int) -> tuple[Any, ...]:
        row = self.rows[slot].tolist()
        row[_COUNT] = int(row[_COUNT])
        row[_UNTIMED] = int(row[_UNTIMED])
        row[_CLEAN] = int(row[_CLEAN])
        row[_DUE] = int(row[_DUE])
        return tuple(row)


@dataclass(slots=True)
class Finding:
    """How often a check fired and the latest offending messages (ts, ref, detail)."""

    count: int = 0
    latest: deque = field(default_factory=lambda: deque(maxlen=20))


class DeviceHealth:
    """All checks for one device."""

    __slots__ = (
        "_binned",
        "_counts",
        "_in_table",
        "_intervals",
        "_key_order",
        "_keys",
        "_limits",
        "_row",
        "_table",
        "_tuple",
        "bad",
        "bad_since",
        "findings",
        "first_ts",
        "key_events",
        "p25",
        "p75",
        "share_bits",
        "stuck_since",
        "thresholds",
        "unchanged",
        "usual",
    )

    def __init__(self, thresholds: HealthThresholds, table: _StateTable | None = None) -> None:
        """``table``: where the state lives while batches are checked column-wise (only a
        `HealthMonitor`'s devices are)."""
        self.thresholds = thresholds
        self._limits = _limits(thresholds)
        # The running state (see `_state`), packed in a tuple while this device checks its own
        # runs (unpacking one tuple is what makes a run of one message affordable), or in its row
        # of the table its monitor shares among devices, while batches from many devices are
        # checked a column at a time (`_check_columns`). It moves only when the way changes.
        self._tuple: tuple[Any, ...] = _initial_state(thresholds)
        self._table = table  # the monitor's, shared by its devices
        self._row = -1  # none yet
        self._in_table = False
        # The previous message's parameter names, as a set and in their order (apart from the
        # packed state, which holds only numbers: no work for the cyclic collector).
        self._keys: set[str] | None = None
        self._key_order: list[str] | None = None
        self.first_ts: float | None = None
        self._counts = [0] * (len(INTERVAL_BINS) + 1)  # the histogram, up to ``_binned``
        # Positive intervals: the ones not yet in the histogram, after at least the latest
        # RECENT_INTERVALS that are (what the usual interval is judged from).
        self._intervals: list[float] = []
        self._binned = 0
        self.usual: float | None = None
        self.p25 = self.p75 = None  # type: ignore[assignment]
        self.findings: dict[str, Finding] = {}
        self.unchanged: dict[str, Any] | None = None
        self.stuck_since: float | None = None
        self.key_events: dict[str, int] = {}  # parameter → times it appeared or disappeared
        self.share_bits: deque[int] = deque(maxlen=max(1, thresholds.window_messages))  # per message: _SHARE_BITS
        self.bad = dict.fromkeys(_SHARE_BITS, 0)  # messages in share_bits with each fix problem
        self.bad_since: dict[str, float | None] = dict.fromkeys(_SHARE_BITS)  # device time the share went high

    def __getstate__(self) -> dict[str, Any]:
        """Pickled on its own (the selected device's report, sent to the window): the running
        state as a tuple, without its monitor's table."""
        state = {name: getattr(self, name) for name in self.__slots__ if hasattr(self, name)}
        state.update(_tuple=self._state, _table=None, _row=-1, _in_table=False)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    @property
    def _state(self) -> tuple[Any, ...]:
        """The running state: messages, previous time, latest time, latency sum, max and the
        least worth a look, transit sum, untimed messages, previous fix (time, lat, lon), good
        fixes in a row last added to ``share_bits``, the next message count to estimate the usual
        interval at."""
        return self._table.get(self._row) if self._in_table else self._tuple  # type: ignore[union-attr]

    @_state.setter
    def _state(self, state: tuple[Any, ...]) -> None:
        if self._in_table:
            self._table.rows[self._row] = state  # type: ignore[union-attr]
        else:
            self._tuple = state

    def _to_table(self) -> int:
        """Move the running state into the shared table (for `_check_columns`); its row."""
        assert self._table is not None, "only a monitor's devices are checked column-wise"
        if self._row < 0:
            self._row = self._table.add(self._tuple)
        else:
            self._table.rows[self._row] = self._tuple
        self._in_table = True
        return self._row

    @property
    def count(self) -> int:
        """Messages checked."""
        return self._state[0]

    @property
    def last_ts(self) -> float | None:
        """The latest device time seen (None before the first message)."""
        return self._state[2] if self._state[0] else None

    def _hit(self, check: str, ts: float, ref: Any, detail: str = "") -> None:
        finding = self.findings.get(check)
        if finding is None:
            finding = self.findings[check] = Finding(latest=deque(maxlen=self.thresholds.keep_refs))
        finding.count += 1
        finding.latest.append((ts, ref, detail))

    def add(self, m: Message, received_at: float, ref: Any = None) -> None:
        """Check one message (in arrival order)."""
        self.add_run([m], received_at, [ref])

    def add_run(self, messages: list[Message], received_at: float, refs: list[Any]) -> None:
        """Check a non-empty run of this device's messages received together (in arrival order),
        with ``refs[i]`` kept for ``messages[i]``'s findings. The same findings as adding them one
        by one; the running state stays in locals for the run, which is what makes a backlog
        affordable."""
        future_s, past_s, gap_min, gap_factor, latency_limit, jump_kmh, jump_squared, min_satellites, max_hdop = (
            self._limits)
        (count, prev_ts, last_ts, latency_sum, latency_max, latency_low, transit_sum, untimed,
         fix_ts, fix_lat, fix_lon, clean, due) = (
            self._table.get(self._row) if self._in_table else self._tuple)  # type: ignore[union-attr]
        self._in_table = False
        prev_keys, key_order = self._keys, self._key_order
        future_limit = received_at + future_s
        past_limit = received_at - past_s
        hit = self._hit
        intervals = self._intervals
        window = self.share_bits
        window_size = window.maxlen
        usual = self.usual
        unchanged = self.unchanged
        if unchanged is None:  # the first message ever
            unchanged = self._first(messages[0])
        for m, ref in zip(messages, refs):  # noqa: B905 (as long by contract; strict costs a call per run)
            ts = m.ts
            count += 1
            # -- time -----------------------------------------------------------------------------
            interval = ts - prev_ts
            if interval > 0:
                intervals.append(interval)
                if count >= due:  # once in 64 messages (or until an interval is known): estimate again
                    if count & 63 == 2 or usual is None:
                        usual = self._estimate()
                    due = count + ((1 - count) & 63) + 1 if usual is not None else 0  # the next count & 63 == 2
                if interval > gap_min and usual is not None and interval > gap_factor * usual:
                    hit("gap", ts, ref, f"{interval:.0f} s without messages (usually {usual:.0f} s)")
            elif interval < 0:
                hit("out_of_order", ts, ref, f"{-interval:.1f} s before the previous message")
            elif interval == 0:
                hit("duplicate_time", ts, ref)
            prev_ts = ts
            if ts > last_ts:
                last_ts = ts
            if not past_limit <= ts <= future_limit:
                if ts > future_limit:
                    hit("future_time", ts, ref, f"{ts - received_at:.0f} s ahead of arrival")
                else:
                    hit("past_time", ts, ref, f"{(received_at - ts) / 86400:.0f} days old on arrival")
            server_ts = m.server_ts
            if server_ts is None:
                untimed += 1
            else:
                latency = server_ts - ts
                latency_sum += latency
                if latency > latency_low:
                    if latency > latency_max:
                        latency_max = latency
                        latency_low = min(latency_max, latency_limit)
                    if latency > latency_limit:
                        hit("latency", ts, ref, f"reached flespi {latency:.0f} s after the device time")
                transit_sum += received_at - server_ts
            # -- position -----------------------------------------------------------------------
            if m.flags & UNUSABLE_FIX:
                hit("invalid_fix", ts, ref)
                bits = 1
            else:
                bits = 0
                lat = m.lat
                lon = m.lon
                elapsed = ts - fix_ts
                if elapsed > 0:
                    dy = (lat - fix_lat) * 110_574.0
                    dx = (lon - fix_lon) * 111_320.0
                    # Without the cosine a distance is never shorter: below this bound there is
                    # surely no jump; above it, judged exactly.
                    if dx * dx + dy * dy >= jump_squared * elapsed * elapsed:
                        speed = _speed_kmh(dx, dy, lat, elapsed)
                        if speed > jump_kmh:
                            hit("jump", ts, ref, f"{speed:.0f} km/h implied")
                fix_ts, fix_lat, fix_lon = ts, lat, lon
            satellites = m.satellites
            if satellites is not None and satellites < min_satellites:
                hit("few_satellites", ts, ref, f"{satellites:.0f} satellites")
                bits |= 2
            hdop = m.hdop
            if hdop is not None and hdop > max_hdop:
                hit("high_hdop", ts, ref, f"HDOP {hdop:g}")
                bits |= 4
            if bits:
                clean = 0
                self._share(bits, last_ts)
            elif clean < window_size:  # otherwise the window is all good fixes: nothing changes
                clean += 1
                if len(window) < window_size or window[0]:  # type: ignore[operator]
                    self._share(0, last_ts)
                else:
                    window.append(0)
            # -- parameters ---------------------------------------------------------------------
            order = [*m.params]
            if order != key_order:  # the same names in the same order (the usual case) cannot differ
                prev_keys, key_order = self._names(m.params, prev_keys, ts, ref), order
            if unchanged:
                _keep_unchanged(unchanged, m.params)
        self._tuple = (count, prev_ts, last_ts, latency_sum, latency_max, latency_low, transit_sum, untimed,
                       fix_ts, fix_lat, fix_lon, clean, due)
        self._keys, self._key_order = prev_keys, key_order
        if len(intervals) > _BIN_EVERY:
            self._bin()

    @property
    def histogram(self) -> list[int]:
        """Positive intervals between consecutive messages per `INTERVAL_BINS` bin."""
        self._bin()
        return self._counts

    def _bin(self) -> None:
        """Count the intervals noted since the last call into the histogram: hundreds at a time
        in numpy rather than a bisection per message."""
        intervals = self._intervals
        fresh = intervals[self._binned:]
        if fresh:
            bins = np.searchsorted(_BIN_EDGES, fresh, side="right")  # = bisect_right, NaN last
            for index, n in enumerate(np.bincount(bins, minlength=len(self._counts)).tolist()):
                self._counts[index] += n
            del intervals[:-RECENT_INTERVALS]
            self._binned = len(intervals)

    def _first(self, first: Message) -> dict[str, Any]:
        """Start from a device's first message ever: the values that could turn out stuck."""
        self.first_ts = self.stuck_since = first.ts
        self.unchanged = {k: v for k, v in first.params.items() if not k.startswith(NOT_SENSORS)
                          and type(v) in (int, float, bool) and v == v}  # NaN: never unchanged
        return self.unchanged

    def _names(self, params: dict[str, Any], previous_keys: set[str] | None, ts: float, ref: Any) -> set[str]:
        """A message whose parameter names are not the previous one's in the same order: what
        appeared or went is noted; its names, for the next message."""
        keys = params.keys()
        if previous_keys is not None and keys != previous_keys:
            self._keys_changed(keys, previous_keys, ts, ref)
        return set(keys)

    def _keys_changed(self, keys: Any, previous_keys: set[str], ts: float, ref: Any) -> None:
        appeared, gone = keys - previous_keys, previous_keys - keys
        events = self.key_events
        for key in appeared | gone:
            if key in events or len(events) < MAX_TRACKED_KEYS:  # a device inventing names cannot grow it
                events[key] = events.get(key, 0) + 1
        parts = ([f"+{k}" for k in sorted(appeared)] + [f"-{k}" for k in sorted(gone)])[:6]
        self._hit("params_changed", ts, ref, " ".join(parts))

    def _share(self, bits: int, last_ts: float) -> None:
        """Slide the window of recent fix problems by one message; note when a share went high
        (timed from ``last_ts``, the latest device time so far)."""
        window = self.share_bits
        bad = self.bad
        full = len(window) == window.maxlen
        gone = window[0] if full else 0
        if gone:
            for check, bit in _SHARE_BITS.items():
                if gone & bit:
                    bad[check] -= 1
        window.append(bits)
        if bits:
            for check, bit in _SHARE_BITS.items():
                if bits & bit:
                    bad[check] += 1
        if bits or gone or not full:  # otherwise no share changed: nothing to re-judge
            self._mark_shares(last_ts)

    def _mark_shares(self, last_ts: float) -> None:
        th = self.thresholds
        n = len(self.share_bits)
        enough = n >= min(th.window_messages, 5)
        since = self.bad_since
        for check, count in self.bad.items():
            high = enough and count >= th.bad_share * n and count > 0
            if not high:
                since[check] = None
            elif since[check] is None:
                since[check] = last_ts

    def retune(self, thresholds: HealthThresholds) -> None:
        """Judge by new thresholds from now on: counts stay; windows resize (keeping the latest
        messages), and a fix problem's persistence is timed again from the latest message."""
        self.thresholds = thresholds
        self._limits = _limits(thresholds)
        state = list(self._state)
        state[5] = min(state[4], thresholds.latency_s)  # the latency worth a look
        bits = list(self.share_bits)[-max(1, thresholds.window_messages):]
        self.share_bits = deque(bits, maxlen=max(1, thresholds.window_messages))
        state[11] = min(state[11], len(self.share_bits))  # a longer window must fill up first
        self._state = tuple(state)
        self.bad = {check: sum(1 for b in bits if b & bit) for check, bit in _SHARE_BITS.items()}
        self.bad_since = dict.fromkeys(_SHARE_BITS)
        if self.count:
            self._mark_shares(self._state[2])
        for finding in self.findings.values():
            finding.latest = deque(finding.latest, maxlen=thresholds.keep_refs)

    def warning(self, check: str) -> int:
        """The severity this check is warned about with now, or 0 (not persistent or material)."""
        rule = RULES[check]
        th = self.thresholds
        if rule == "share":
            since = self.bad_since[check]
            return CHECKS[check][1] if since is not None and self.last_ts - since >= th.persist_s else 0
        if rule == "events":
            finding = self.findings.get(check)
            if finding is None or finding.count < th.events:
                return 0
            start = self.last_ts - th.events_window_s
            recent = sum(1 for ts, _, _ in finding.latest if ts >= start)
            return CHECKS[check][1] if recent >= min(th.events, th.keep_refs) else 0
        return 0

    def warnings(self) -> dict[str, int]:
        """Checks warned about now → severity, most severe first."""
        found = {check: severity for check in self.counts() if (severity := self.warning(check))}
        return dict(sorted(found.items(), key=lambda kv: (-kv[1], list(CHECKS).index(kv[0]))))

    def _estimate(self) -> float | None:
        """The usual interval (and its spread) from the latest intervals: their median."""
        ordered = sorted(self._intervals[-RECENT_INTERVALS:])
        if ordered:
            n = len(ordered)
            self.usual, self.p25, self.p75 = ordered[n // 2], ordered[n // 4], ordered[(3 * n) // 4]
        return self.usual

    # -- reading --------------------------------------------------------------------------------
    def stuck(self) -> list[str]:
        """Parameters unchanged long enough to look stuck."""
        th = self.thresholds
        if (not self.unchanged or self.count < th.stuck_messages or self.stuck_since is None
                or self.last_ts - self.stuck_since < th.stuck_seconds):
            return []
        return sorted(self.unchanged)

    def counts(self) -> dict[str, int]:
        """Check → how often it fired (stuck values count once each)."""
        out = {check: finding.count for check, finding in self.findings.items() if finding.count}
        stuck = self.stuck()
        if stuck:
            out["stuck"] = len(stuck)
        return out

    def worst(self) -> tuple[int, str]:
        """The most severe warning now (see `warning`): (severity, check id), or (0, '') when
        nothing is persistent or material, even if some checks fired now and then."""
        warned = self.warnings()
        return next(((severity, check) for check, severity in warned.items()), (0, ""))

    def report(self) -> dict[str, Any]:
        """Everything known about this device, JSON-ready."""
        if self.usual is None:
            self._estimate()
        latency_sum, latency_max, _, transit_sum, untimed = self._state[3:8]
        timed = self.count - untimed
        span = (self.last_ts - self.first_ts) if self.count else 0.0
        return {
            "messages": self.count,
            "first_ts": self.first_ts, "last_ts": self.last_ts,
            "rate_per_min": self.count / span * 60 if span > 0 else None,
            "interval": {"median_s": self.usual, "p25_s": self.p25, "p75_s": self.p75,
                         "histogram": dict(zip([f"<={b:g}s" for b in INTERVAL_BINS] + [">86400s"], self.histogram,
                                               strict=True))},
            "latency": {"device_to_server_mean_s": latency_sum / timed if timed else None,
                        "device_to_server_max_s": latency_max if timed else None,
                        "server_to_receive_mean_s": transit_sum / timed if timed else None},
            "findings": {check: {"label": CHECKS[check][0], "severity": SEVERITY_NAMES[CHECKS[check][1]],
                                 "count": count,
                                 "latest": [{"ts": ts, "detail": detail}
                                            for ts, _, detail in (self.findings[check].latest
                                                                  if check in self.findings else [])]}
                         for check, count in self.counts().items()},
            "warnings": {check: SEVERITY_NAMES[severity] for check, severity in self.warnings().items()},
            "stuck": self.stuck(),
            "changing_parameters": dict(sorted(self.key_events.items(), key=lambda kv: -kv[1])[:20]),
            "worst": SEVERITY_NAMES[self.worst()[0]],
        }


def _keep_unchanged(unchanged: dict[str, Any], params: dict[str, Any]) -> None:
    """Forget the values in ``unchanged`` that ``params`` does not repeat (a non-empty dict)."""
    if unchanged.items() <= params.items():  # the rule, answered in C: half the cost of a loop here
        return
    for changed in [k for k, v in unchanged.items() if params.get(k, _MISSING) != v]:
        del unchanged[changed]


def _speed_kmh(dx: float, dy: float, lat: float, elapsed: float) -> float:
    """The speed a move implies: ``dx``, ``dy`` metres east and north as if on the equator (the
    cheap bound both ways of checking use first), corrected for ``lat``, over ``elapsed`` s."""
    dx *= cos(lat * _RADIANS)
    return sqrt(dx * dx + dy * dy) / elapsed * 3.6


@lru_cache(maxsize=16)
def _limits(th: HealthThresholds) -> tuple[float, ...]:
    """The thresholds as `DeviceHealth.add_run` reads them, in one tuple (one per thresholds,
    shared by every device: one less object to fetch per device and batch)."""
    jump_squared = (th.jump_kmh / 3.6) ** 2 * (1 - 1e-9) if th.jump_kmh > 0 else -1.0  # below it, surely no jump
    return (th.future_s, th.past_s, th.gap_min_s, th.gap_factor, th.latency_s, th.jump_kmh, jump_squared,
            float(th.min_satellites), float(th.max_hdop))  # float against float compares fastest


#: A batch is checked column-wise over its devices (`HealthMonitor.add_runs`) when it brings at
#: least this many devices with at most `COLUMNS_RUN` messages each on average (a live stream from
#: a large fleet), and only while this many have a message left; otherwise each device's run is
#: checked on its own (`DeviceHealth.add_run`), where a few devices with long runs are cheaper and
#: numpy's fixed cost per call would outweigh the work.
COLUMNS_FROM = 24
COLUMNS_RUN = 2


class HealthMonitor:
    """Health of every device, fed by batches."""

    def __init__(self, thresholds: HealthThresholds | None = None) -> None:
        self.thresholds = thresholds or HealthThresholds()
        self.devices: dict[str, DeviceHealth] = {}
        self._table = _StateTable()

    def _device(self, ident: str) -> DeviceHealth:
        device = self.devices.get(ident)
        if device is None:
            device = self.devices[ident] = DeviceHealth(self.thresholds, self._table)
        return device

    def add(self, m: Message, received_at: float, ref: Any = None) -> None:
        """Check one message."""
        self._device(m.ident).add(m, received_at, ref)

    def worst(self, ident: str) -> tuple[int, str]:
        """``ident``'s most severe warning now (see `DeviceHealth.worst`), (0, '') if unknown."""
        device = self.devices.get(ident)
        return device.worst() if device is not None else (0, "")

    def add_batch(self, messages: list[Message], received_at: float, refs: list[Any]) -> None:
        """Check a batch received together, ``refs[i]`` kept for ``messages[i]``: the same findings
        as adding the messages one by one, at a fraction of the cost (see `add_runs`)."""
        # One list per device, messages and references interleaved: with a thousand devices in a
        # batch, every container alive at once is one more for the cyclic collector to promote.
        runs: dict[str, list[Any]] = {}
        for m, ref in zip(messages, refs, strict=True):
            run = runs.get(m.ident)
            if run is None:
                runs[m.ident] = [m, ref]
            else:
                run.append(m)
                run.append(ref)
        self.add_runs({ident: (run[::2], run[1::2]) for ident, run in runs.items()}, received_at)

    def add_runs(self, runs: dict[str, tuple[list[Message], list[Any]]], received_at: float) -> None:
        """Check a batch received together, grouped by device already: ident → (its messages in
        arrival order, the reference kept for each). The same findings as one by one. With many
        devices the batch is checked column-wise, the k-th message of every device at once
        (`_check_columns`); a device's messages past the point where few devices are left are
        checked as one run (`DeviceHealth.add_run`)."""
        if len(runs) < COLUMNS_FROM or sum(len(run[0]) for run in runs.values()) > COLUMNS_RUN * len(runs):
            for ident, (messages, refs) in runs.items():
                self._device(ident).add_run(messages, received_at, refs)
            return
        devices = [self._device(ident) for ident in runs]
        groups = list(runs.values())
        k = 0
        while True:
            if k:
                live = [i for i, (messages, _) in enumerate(groups) if len(messages) > k]
                devices = [devices[i] for i in live]
                groups = [groups[i] for i in live]
                if not groups:
                    return
                if len(groups) < COLUMNS_FROM:
                    for device, (messages, refs) in zip(devices, groups, strict=True):
                        device.add_run(messages[k:], received_at, refs[k:])
                    return
            _check_columns(self._table, devices, [g[0][k] for g in groups], [g[1][k] for g in groups],
                           received_at, self.thresholds)
            k += 1

    def add_run(self, ident: str, messages: list[Message], received_at: float, refs: list[Any]) -> None:
        """Check a non-empty run of one device's messages received together."""
        self._device(ident).add_run(messages, received_at, refs)

    def set_thresholds(self, thresholds: HealthThresholds) -> None:
        """Judge every device by ``thresholds`` from now on (see `DeviceHealth.retune`)."""
        self.thresholds = thresholds
        for device in self.devices.values():
            device.retune(thresholds)

    def clear(self) -> list[DeviceHealth]:
        """Forget every device; returns their state, for the caller to free when it suits (see
        `Fleet.clear`)."""
        held = list(self.devices.values())
        self.devices.clear()
        self._table = _StateTable()
        return held


def _check_columns(table: _StateTable, devices: list[DeviceHealth], messages: list[Message], refs: list[Any],
                   received_at: float, thresholds: HealthThresholds) -> None:
    """One message each of several devices (``messages[i]`` is ``devices[i]``'s next), checked as
    `DeviceHealth.add_run` checks one: the same arithmetic, in the same order, a column at a time.
    Only what happens to a few messages — findings, interval estimates, a window of fix problems
    not all clean — goes message by message, and in each device's own order of checks, so findings
    come out exactly as one by one."""
    future_s, past_s, gap_min, gap_factor, latency_limit, jump_kmh, jump_squared, min_satellites, max_hdop = (
        _limits(thresholds))
    window_size = max(1, thresholds.window_messages)  # every device's share_bits.maxlen
    n = len(messages)
    slots = np.fromiter([d._row if d._in_table else d._to_table() for d in devices], np.intp, n)
    state = table.rows[slots]
    ts = np.fromiter([m.ts for m in messages], float, n)
    server_ts = np.array([m.server_ts for m in messages], float)  # None: NaN
    flags = np.fromiter([m.flags for m in messages], np.int64, n)
    lat = np.array([m.lat for m in messages], float)
    lon = np.array([m.lon for m in messages], float)
    satellites = np.array([m.satellites for m in messages], float)
    hdop = np.array([m.hdop for m in messages], float)

    for i in np.flatnonzero(state[:, _COUNT] == 0).tolist():  # a device's first message ever
        devices[i]._first(messages[i])
    count = state[:, _COUNT] + 1
    state[:, _COUNT] = count

    # -- time ---------------------------------------------------------------------------------
    interval = ts - state[:, _PREV_TS]
    later = interval > 0
    due = state[:, _DUE]
    estimate = later & (count >= due)  # see add_run: once in 64 messages, or until an interval is known
    for i, gap in zip(np.flatnonzero(later).tolist(), interval[later].tolist()):  # noqa: B905
        intervals = devices[i]._intervals
        intervals.append(gap)
        if len(intervals) > _BIN_EVERY:
            devices[i]._bin()
    for i in np.flatnonzero(estimate).tolist():
        device, c = devices[i], int(count[i])
        usual = device.usual
        if c & 63 == 2 or usual is None:
            usual = device._estimate()
        due[i] = c + ((1 - c) & 63) + 1 if usual is not None else 0
    hits: list[tuple[int, str, str]] = []  # (message, check, detail)
    for i in np.flatnonzero(later & (interval > gap_min)).tolist():
        usual = devices[i].usual
        gap = float(interval[i])
        if usual is not None and gap > gap_factor * usual:
            hits.append((i, "gap", f"{gap:.0f} s without messages (usually {usual:.0f} s)"))
    for i in np.flatnonzero(interval < 0).tolist():
        hits.append((i, "out_of_order", f"{-float(interval[i]):.1f} s before the previous message"))
    for i in np.flatnonzero(interval == 0).tolist():
        hits.append((i, "duplicate_time", ""))
    state[:, _PREV_TS] = ts
    state[:, _LAST_TS] = np.where(ts > state[:, _LAST_TS], ts, state[:, _LAST_TS])
    future_limit = received_at + future_s
    past_limit = received_at - past_s
    for i in np.flatnonzero(~((past_limit <= ts) & (ts <= future_limit))).tolist():
        t = messages[i].ts
        if t > future_limit:
            hits.append((i, "future_time", f"{t - received_at:.0f} s ahead of arrival"))
        else:
            hits.append((i, "past_time", f"{(received_at - t) / 86400:.0f} days old on arrival"))
    timed = ~np.isnan(server_ts)
    latency = server_ts - ts
    state[:, _UNTIMED] += ~timed
    state[:, _LATENCY_SUM] += np.where(timed, latency, 0.0)
    # The largest latency so far, and the least worth a look (add_run keeps it at min(max, limit)).
    latency_max = np.where(timed & (latency > state[:, _LATENCY_MAX]), latency, state[:, _LATENCY_MAX])
    state[:, _LATENCY_MAX] = latency_max
    state[:, _LATENCY_LOW] = np.minimum(latency_max, latency_limit)
    for i in np.flatnonzero(timed & (latency > latency_limit)).tolist():
        hits.append((i, "latency", f"reached flespi {float(latency[i]):.0f} s after the device time"))
    state[:, _TRANSIT_SUM] += np.where(timed, received_at - server_ts, 0.0)

    # -- position -----------------------------------------------------------------------------
    unusable = (flags & UNUSABLE_FIX) != 0
    usable = ~unusable
    elapsed = ts - state[:, _FIX_TS]
    with np.errstate(invalid="ignore"):
        dy = (lat - state[:, _FIX_LAT]) * 110_574.0
        dx = (lon - state[:, _FIX_LON]) * 111_320.0
        maybe = usable & (elapsed > 0) & (dx * dx + dy * dy >= jump_squared * elapsed * elapsed)
    bits = unusable.astype(np.int64)
    for i in np.flatnonzero(unusable | maybe).tolist():
        if unusable[i]:
            hits.append((i, "invalid_fix", ""))
            continue
        m = messages[i]  # judged exactly as add_run does, in Python floats
        dx = (m.lon - float(state[i, _FIX_LON])) * 111_320.0
        speed = _speed_kmh(dx, (m.lat - float(state[i, _FIX_LAT])) * 110_574.0, m.lat, float(elapsed[i]))
        if speed > jump_kmh:
            hits.append((i, "jump", f"{speed:.0f} km/h implied"))
    state[:, _FIX_TS] = np.where(usable, ts, state[:, _FIX_TS])
    state[:, _FIX_LAT] = np.where(usable, lat, state[:, _FIX_LAT])
    state[:, _FIX_LON] = np.where(usable, lon, state[:, _FIX_LON])
    few = satellites < min_satellites
    for i in np.flatnonzero(few).tolist():
        hits.append((i, "few_satellites", f"{messages[i].satellites:.0f} satellites"))
    high = hdop > max_hdop
    for i in np.flatnonzero(high).tolist():
        hits.append((i, "high_hdop", f"HDOP {messages[i].hdop:g}"))
    bits |= few * 2
    bits |= high * 4
    # Each device has one message here, and its findings were noted check by check in add_run's
    # order: they reach it in that order.
    for i, check, detail in hits:
        devices[i]._hit(check, messages[i].ts, refs[i], detail)
    clean = state[:, _CLEAN]
    sliding = np.flatnonzero((bits != 0) | (clean < window_size))  # otherwise all good fixes: nothing changes
    for i, b, last in zip(sliding.tolist(), bits[sliding].tolist(), state[sliding, _LAST_TS].tolist()):  # noqa: B905
        device = devices[i]
        if b:
            clean[i] = 0
            device._share(b, last)
        else:
            clean[i] += 1
            window = device.share_bits
            if len(window) < window_size or window[0]:
                device._share(0, last)
            else:
                window.append(0)
    table.rows[slots] = state

    # -- parameters ---------------------------------------------------------------------------
    for device, m, ref in zip(devices, messages, refs):  # noqa: B905 (as long by contract)
        params = m.params
        order = [*params]
        if order != device._key_order:
            device._keys, device._key_order = device._names(params, device._keys, m.ts, ref), order
        if device.unchanged:
            _keep_unchanged(device.unchanged, params)
