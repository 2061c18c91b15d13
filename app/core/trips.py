"""Trip figures for a replayed range: distance, moving and stopped time, speeds, stops.

Fed one message at a time (in time order) so replay can keep figures current without rescanning.
A stop is ignition off, or no movement, lasting at least ``min_stop`` seconds. Pure: no Qt, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True, slots=True)
class Stop:
    """Where and when a device stood still."""

    start: float
    end: float
    lat: float
    lon: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(slots=True)
class TripStats:
    """Figures accumulated over the fixes fed so far."""

    min_stop: float = 120.0
    moving_speed_kmh: float = 3.0
    distance_m: float = 0.0
    moving_s: float = 0.0
    stopped_s: float = 0.0
    max_speed_kmh: float = 0.0
    stops: list[Stop] = field(default_factory=list)
    _last: tuple[float, float, float] | None = None  # ts, lat, lon of the previous fix
    _still_since: tuple[float, float, float] | None = None  # where a possible stop began

    @property
    def average_speed_kmh(self) -> float:
        """Distance over moving time (0 before the device moved)."""
        return self.distance_m / self.moving_s * 3.6 if self.moving_s else 0.0

    def add(self, ts: float, lat: float, lon: float, speed_kmh: float | None, ignition: bool | None) -> None:
        """Feed the next usable fix (in time order; earlier ones are ignored)."""
        if self._last is not None and ts <= self._last[0]:
            return
        if speed_kmh is not None:
            self.max_speed_kmh = max(self.max_speed_kmh, speed_kmh)
        if self._last is None:
            self._last = (ts, lat, lon)
            self._still_since = (ts, lat, lon) if ignition is False or (speed_kmh or 0) < self.moving_speed_kmh \
                else None
            return
        last_ts, last_lat, last_lon = self._last
        dt = ts - last_ts
        step = haversine_m(last_lat, last_lon, lat, lon)
        implied = step / dt * 3.6
        moving = ignition is not False and ((speed_kmh if speed_kmh is not None else implied) >= self.moving_speed_kmh)
        if moving:
            self.distance_m += step
            self.moving_s += dt
            self._close_stop(ts)
        else:
            self.stopped_s += dt
            if self._still_since is None:
                self._still_since = (last_ts, last_lat, last_lon)
        self._last = (ts, lat, lon)

    def _close_stop(self, ts: float) -> None:
        if self._still_since is not None:
            start, lat, lon = self._still_since
            if self._last is not None and self._last[0] - start >= self.min_stop:
                self.stops.append(Stop(start, self._last[0], lat, lon))
            self._still_since = None

    def open_stop(self) -> Stop | None:
        """The stop in progress, if it already lasts ``min_stop``."""
        if self._still_since is None or self._last is None:
            return None
        start, lat, lon = self._still_since
        return Stop(start, self._last[0], lat, lon) if self._last[0] - start >= self.min_stop else None
