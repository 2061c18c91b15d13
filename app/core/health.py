"""Tracker health checks, per device, fed one message at a time (live, in replay, offline).

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
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from typing import Any

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
_MISSING = object()
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


@dataclass(slots=True)
class Finding:
    """How often a check fired and the latest offending messages (ts, ref, detail)."""

    count: int = 0
    latest: deque = field(default_factory=lambda: deque(maxlen=20))


class DeviceHealth:
    """All checks for one device."""

    __slots__ = (
        "bad",
        "bad_since",
        "count",
        "findings",
        "first_ts",
        "histogram",
        "key_events",
        "last_ts",
        "latency_max",
        "latency_n",
        "latency_sum",
        "p25",
        "p75",
        "prev_fix",
        "prev_keys",
        "prev_ts",
        "recent",
        "share_bits",
        "stuck_since",
        "thresholds",
        "transit_n",
        "transit_sum",
        "unchanged",
        "usual",
    )

    def __init__(self, thresholds: HealthThresholds) -> None:
        self.thresholds = thresholds
        self.count = 0
        self.first_ts = self.last_ts = self.prev_ts = None  # type: ignore[assignment]
        self.prev_fix: tuple[float, float, float] | None = None
        self.prev_keys: Any = None
        self.histogram = [0] * (len(INTERVAL_BINS) + 1)
        self.recent: deque[float] = deque(maxlen=255)
        self.usual: float | None = None
        self.p25 = self.p75 = None  # type: ignore[assignment]
        self.latency_sum = self.latency_max = 0.0
        self.latency_n = 0
        self.transit_sum = 0.0
        self.transit_n = 0
        self.findings: dict[str, Finding] = {}
        self.unchanged: dict[str, Any] | None = None
        self.stuck_since: float | None = None
        self.key_events: dict[str, int] = {}  # parameter → times it appeared or disappeared
        self.share_bits: deque[int] = deque(maxlen=max(1, thresholds.window_messages))  # per message: _SHARE_BITS
        self.bad = dict.fromkeys(_SHARE_BITS, 0)  # messages in share_bits with each fix problem
        self.bad_since: dict[str, float | None] = dict.fromkeys(_SHARE_BITS)  # device time the share went high

    def _hit(self, check: str, ts: float, ref: Any, detail: str = "") -> None:
        finding = self.findings.get(check)
        if finding is None:
            finding = self.findings[check] = Finding(latest=deque(maxlen=self.thresholds.keep_refs))
        finding.count += 1
        finding.latest.append((ts, ref, detail))

    def add(self, m: Message, received_at: float, ref: Any = None) -> None:
        """Check one message (in arrival order)."""
        th = self.thresholds
        ts = m.ts
        params = m.params
        self.count += 1
        if self.first_ts is None:
            self.first_ts = self.last_ts = ts
        # -- time -------------------------------------------------------------------------------
        prev = self.prev_ts
        if prev is not None:
            interval = ts - prev
            if interval < 0:
                self._hit("out_of_order", ts, ref, f"{-interval:.1f} s before the previous message")
            elif interval == 0:
                self._hit("duplicate_time", ts, ref)
            else:
                self.histogram[bisect_right(INTERVAL_BINS, interval)] += 1
                self.recent.append(interval)
                usual = self.usual
                if usual is None or self.count & 63 == 2:
                    self._estimate()
                    usual = self.usual
                if interval > th.gap_min_s and usual is not None and interval > th.gap_factor * usual:
                    self._hit("gap", ts, ref, f"{interval:.0f} s without messages (usually {usual:.0f} s)")
        self.prev_ts = ts
        if ts > self.last_ts:
            self.last_ts = ts
        if ts > received_at + th.future_s:
            self._hit("future_time", ts, ref, f"{ts - received_at:.0f} s ahead of arrival")
        elif ts < received_at - th.past_s:
            self._hit("past_time", ts, ref, f"{(received_at - ts) / 86400:.0f} days old on arrival")
        server_ts = m.server_ts
        if server_ts is not None:
            latency = server_ts - ts
            self.latency_sum += latency
            self.latency_n += 1
            if latency > self.latency_max:
                self.latency_max = latency
            if latency > th.latency_s:
                self._hit("latency", ts, ref, f"reached flespi {latency:.0f} s after the device time")
            self.transit_sum += received_at - server_ts
            self.transit_n += 1
        # -- position ---------------------------------------------------------------------------
        bits = 0
        if m.flags & UNUSABLE_FIX:
            self._hit("invalid_fix", ts, ref)
            bits = 1
        else:
            lat, lon = m.lat, m.lon
            previous = self.prev_fix
            if previous is not None and ts > previous[0]:
                dy = (lat - previous[1]) * 110_574.0
                dx = (lon - previous[2]) * 111_320.0 * math.cos(math.radians(lat))
                speed = math.sqrt(dx * dx + dy * dy) / (ts - previous[0]) * 3.6
                if speed > th.jump_kmh:
                    self._hit("jump", ts, ref, f"{speed:.0f} km/h implied")
            self.prev_fix = (ts, lat, lon)  # type: ignore[assignment]
        satellites = m.satellites
        if satellites is not None and satellites < th.min_satellites:
            self._hit("few_satellites", ts, ref, f"{satellites:.0f} satellites")
            bits |= 2
        hdop = m.hdop
        if hdop is not None and hdop > th.max_hdop:
            self._hit("high_hdop", ts, ref, f"HDOP {hdop:g}")
            bits |= 4
        window = self.share_bits
        if bits or len(window) < window.maxlen or window[0]:  # type: ignore[operator]
            self._share(bits)
        else:  # the usual case, inline: a good fix replaces a good fix, no share changes
            window.append(0)
        # -- parameters ---------------------------------------------------------------------------
        keys = params.keys()
        previous_keys = self.prev_keys
        if previous_keys is None:
            self.prev_keys = set(keys)
        elif len(keys) != len(previous_keys) or keys != previous_keys:
            appeared, gone = keys - previous_keys, previous_keys - keys
            events = self.key_events
            for key in appeared | gone:
                if key in events or len(events) < MAX_TRACKED_KEYS:  # a device inventing names cannot grow it
                    events[key] = events.get(key, 0) + 1
            parts = ([f"+{k}" for k in sorted(appeared)] + [f"-{k}" for k in sorted(gone)])[:6]
            self._hit("params_changed", ts, ref, " ".join(parts))
            self.prev_keys = set(keys)
        unchanged = self.unchanged
        if unchanged is None:
            self.unchanged = {k: v for k, v in params.items() if not k.startswith(NOT_SENSORS)
                              and type(v) in (int, float, bool)}
            self.stuck_since = ts
        elif unchanged:
            for key in [k for k, v in unchanged.items() if params.get(k, _MISSING) != v]:
                del unchanged[key]

    def _share(self, bits: int) -> None:
        """Slide the window of recent fix problems by one message; note when a share went high."""
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
            self._mark_shares()

    def _mark_shares(self) -> None:
        th = self.thresholds
        n = len(self.share_bits)
        enough = n >= min(th.window_messages, 5)
        since = self.bad_since
        for check, count in self.bad.items():
            high = enough and count >= th.bad_share * n and count > 0
            if not high:
                since[check] = None
            elif since[check] is None:
                since[check] = self.last_ts

    def retune(self, thresholds: HealthThresholds) -> None:
        """Judge by new thresholds from now on: counts stay; windows resize (keeping the latest
        messages), and a fix problem's persistence is timed again from the latest message."""
        self.thresholds = thresholds
        bits = list(self.share_bits)[-max(1, thresholds.window_messages):]
        self.share_bits = deque(bits, maxlen=max(1, thresholds.window_messages))
        self.bad = {check: sum(1 for b in bits if b & bit) for check, bit in _SHARE_BITS.items()}
        self.bad_since = dict.fromkeys(_SHARE_BITS)
        self._mark_shares()
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

    def _estimate(self) -> None:
        ordered = sorted(self.recent)
        if ordered:
            n = len(ordered)
            self.usual, self.p25, self.p75 = ordered[n // 2], ordered[n // 4], ordered[(3 * n) // 4]

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
        span = (self.last_ts - self.first_ts) if self.count else 0.0
        return {
            "messages": self.count,
            "first_ts": self.first_ts, "last_ts": self.last_ts,
            "rate_per_min": self.count / span * 60 if span > 0 else None,
            "interval": {"median_s": self.usual, "p25_s": self.p25, "p75_s": self.p75,
                         "histogram": dict(zip([f"<={b:g}s" for b in INTERVAL_BINS] + [">86400s"], self.histogram,
                                               strict=True))},
            "latency": {"device_to_server_mean_s": self.latency_sum / self.latency_n if self.latency_n else None,
                        "device_to_server_max_s": self.latency_max if self.latency_n else None,
                        "server_to_receive_mean_s": self.transit_sum / self.transit_n if self.transit_n else None},
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


class HealthMonitor:
    """Health of every device, fed by batches."""

    def __init__(self, thresholds: HealthThresholds | None = None) -> None:
        self.thresholds = thresholds or HealthThresholds()
        self.devices: dict[str, DeviceHealth] = {}

    def add(self, m: Message, received_at: float, ref: Any = None) -> None:
        """Check one message."""
        device = self.devices.get(m.ident)
        if device is None:
            device = self.devices[m.ident] = DeviceHealth(self.thresholds)
        device.add(m, received_at, ref)

    def set_thresholds(self, thresholds: HealthThresholds) -> None:
        """Judge every device by ``thresholds`` from now on (see `DeviceHealth.retune`)."""
        self.thresholds = thresholds
        for device in self.devices.values():
            device.retune(thresholds)

    def clear(self) -> None:
        self.devices.clear()
