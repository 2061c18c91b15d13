"""Tracker health checks, per device, fed one message at a time (live, in replay, offline).

What an engineer bringing up a tracker needs to see at a glance: how regularly it reports,
how late its data arrives, whether its clock and fixes can be trusted, whether parameters come
and go or never change. Every finding keeps references to the latest offending messages so a
view can jump to them. Pure: no Qt, no I/O; cheap enough to run on every message.
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

#: Interval histogram bin edges in seconds (the last bin is open-ended).
INTERVAL_BINS: tuple[float, ...] = (0.5, 1, 2, 3, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800,
                                    3600, 7200, 21600, 86400)
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


@dataclass(slots=True)
class Finding:
    """How often a check fired and the latest offending messages (ts, ref, detail)."""

    count: int = 0
    latest: deque = field(default_factory=lambda: deque(maxlen=20))


class DeviceHealth:
    """All checks for one device."""

    __slots__ = (
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
        if m.flags & UNUSABLE_FIX:
            self._hit("invalid_fix", ts, ref)
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
        hdop = m.hdop
        if hdop is not None and hdop > th.max_hdop:
            self._hit("high_hdop", ts, ref, f"HDOP {hdop:g}")
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
        """The most severe check that fired: (severity, check id), or (0, '')."""
        best = (0, "")
        for check in self.counts():
            severity = CHECKS[check][1]
            if severity > best[0]:
                best = (severity, check)
        return best

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

    def clear(self) -> None:
        self.devices.clear()
