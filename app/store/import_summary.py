"""What an import took from a file and what it did not, in numbers and in words."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


class ImportError_(ValueError):
    """The file cannot be imported; the message says why (and where). Nothing was kept."""


@dataclass(slots=True)
class ImportSummary:
    """Counts kept while a file is read; ``lines()`` is what the CLI prints and the window shows."""

    file: str = ""
    session_id: int = 0
    tracks: int = 0
    routes: int = 0
    track_points: int = 0
    route_points: int = 0
    waypoints: int = 0
    rows: int = 0  # CSV rows
    untimed: int = 0  # kept, flagged no_timestamp, given the import time
    unreadable_time: int = 0  # kept, flagged no_timestamp; the text is in gpx.time / time_text
    leap_seconds: int = 0  # read as the next second (Unix time has none)
    no_position: int = 0  # kept, flagged no_position
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (name, ident) for same-named tracks
    not_imported: Counter[str] = field(default_factory=Counter)  # what was left out, and how often

    @property
    def points(self) -> int:
        """Every message the import recorded."""
        return self.track_points + self.route_points + self.waypoints + self.rows

    def lines(self) -> list[str]:
        """The summary in a few plain lines."""
        parts = []
        if self.tracks or self.track_points:
            parts.append(f"{self.track_points:,} track points in {self.tracks} track(s)")
        if self.routes or self.route_points:
            parts.append(f"{self.route_points:,} route points in {self.routes} route(s)")
        if self.waypoints:
            parts.append(f"{self.waypoints:,} waypoint(s)")
        if self.rows:
            parts.append(f"{self.rows:,} rows")
        out = [f"imported {', '.join(parts) or 'nothing'} from {self.file} into session {self.session_id}"]
        untimed = self.untimed + self.unreadable_time
        if untimed:
            out.append(f"  {untimed:,} point(s) without a usable time ({self.unreadable_time:,} unreadable): kept, "
                       "flagged no_timestamp, dated at the import")
        if self.leap_seconds:
            out.append(f"  {self.leap_seconds:,} time(s) with a leap second (:60), read as the next second")
        if self.no_position:
            out.append(f"  {self.no_position:,} point(s) without a position: kept, flagged no_position")
        for name, ident in self.renamed[:10]:
            out.append(f"  another track is also named {name!r}: kept apart as device {ident!r}")
        if len(self.renamed) > 10:
            out.append(f"  … and {len(self.renamed) - 10} more same-named tracks kept apart")
        for what, count in sorted(self.not_imported.items()):
            out.append(f"  not imported: {count:,} × {what}")
        return out

    def text(self) -> str:
        """``lines()`` as one string."""
        return "\n".join(self.lines())
