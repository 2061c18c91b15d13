"""GPX 1.0 / 1.1 → flespi-style messages, streamed with bounded memory.

What a user expects from a GPX file from any tool (Garmin, Strava, OsmAnd, gpsbabel...):

* every ``<trk>`` is a device; tracks that share a name stay apart (``Ride``, ``Ride (2)``), a
  track written by trackmon keeps its device ident (``<trackmon:ident>``);
* every ``<rte>`` is a device too (its points in order, flagged by nothing but ``gpx.kind``);
* every ``<wpt>`` is its own device with one point (exports write it as a point);
* values beyond the fix — heart rate, cadence, temperature, power from Garmin's
  TrackPointExtension or any other extension, and ``<name>``, ``<sym>``, ``<desc>``... — are
  kept as ``gpx.<element>`` parameters;
* a point without a usable ``<time>`` is kept and flagged ``no_timestamp`` (see the summary).

Only the element being read and its ancestors are in memory: each point is removed from its
parent once read.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.store.import_summary import ImportError_, ImportSummary
from app.store.import_time import parse_time

_POINTS = {"trkpt": "track", "rtept": "route", "wpt": "waypoint"}
_TEXT_KEYS = frozenset({"name", "cmt", "desc", "src", "sym", "type", "fix", "link", "text"})


_LOCAL: dict[str, str] = {}


def _local(tag: str) -> str:
    """An element's name without its namespace (cached: a file has a few dozen distinct tags)."""
    local = _LOCAL.get(tag)
    if local is None:
        if len(_LOCAL) > 10_000:
            _LOCAL.clear()
        local = _LOCAL[tag] = tag.rsplit("}", 1)[-1]
    return local


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value - value == 0.0 else None  # no NaN or infinity


class GpxReader:
    """Reads one GPX file into messages, counting what it finds in ``summary``."""

    def __init__(self, path: Path, summary: ImportSummary) -> None:
        self.path = path
        self.summary = summary
        self.idents: dict[str, int] = {}  # ident → how many devices asked for it (same-named tracks)

    def _unique(self, base: str) -> str:
        count = self.idents.get(base, 0) + 1
        self.idents[base] = count
        if count == 1:
            return base
        ident = f"{base} ({count})"
        while ident in self.idents:
            count += 1
            ident = f"{base} ({count})"
        self.idents[ident] = 1
        return ident

    def messages(self) -> Iterator[dict[str, Any]]:
        """Every point of the file as a message, in file order."""
        summary = self.summary
        stack: list[ElementTree.Element] = []
        owner = ""  # "trk", "rte" or "" (waypoints)
        ident = name = ""
        own_ident = ""
        count = 0
        inner = 0  # how deep inside a point's element we are (its children are read at its end)
        try:
            for event, element in ElementTree.iterparse(self.path, events=("start", "end")):
                if inner:  # the hot path: the children of a point
                    inner += 1 if event == "start" else -1
                    if inner:
                        continue
                tag = _local(element.tag)
                if event == "start":
                    if tag in _POINTS:
                        inner = 1
                        continue
                    if not stack and tag != "gpx":
                        raise ImportError_(f"{self.path.name} is XML but not GPX (its root is <{tag}>)")
                    stack.append(element)
                    if tag in ("trk", "rte") and len(stack) == 2:
                        owner, ident, name, own_ident = tag, "", "", ""
                        count += 1
                        if tag == "trk":
                            summary.tracks += 1
                        else:
                            summary.routes += 1
                    continue
                kind = _POINTS.get(tag)
                if kind is None:
                    stack.pop()
                parent = stack[-1] if stack else None
                if kind is not None and parent is not None:
                    if kind == "waypoint":
                        point_name = _child_text(element, "name")
                        device = self._unique(point_name or f"{self.path.stem}-waypoint")
                        yield self._message(element, device, point_name, kind)
                    else:
                        if not ident:  # the first point: every header element of the track is read
                            ident = own_ident or self._device(name, owner, count)
                        yield self._message(element, ident, name, kind)
                    parent.remove(element)  # memory stays bounded however long the track
                elif tag == "name" and parent is not None and _local(parent.tag) in ("trk", "rte"):
                    name = element.text or ""
                elif tag == "ident" and len(stack) >= 3 and _local(stack[-2].tag) == "trk":
                    own_ident = (element.text or "").strip()  # trackmon's <trk> extension
                elif tag in ("trk", "rte") and len(stack) == 1:
                    owner = ""
                    stack[0].remove(element)
                elif len(stack) == 1 and tag not in ("metadata", "extensions"):
                    summary.not_imported[f"<{tag}> element"] += 1
        except ElementTree.ParseError as exc:
            raise ImportError_(f"{self.path.name} is not valid GPX/XML: {exc}") from None

    def _device(self, name: str, owner: str, count: int) -> str:
        base = name or f"{self.path.stem}-{'route-' if owner == 'rte' else ''}{count}"
        ident = self._unique(base)
        if ident != base:
            self.summary.renamed.append((base, ident))
        return ident

    def _message(self, element: ElementTree.Element, ident: str, name: str, kind: str) -> dict[str, Any]:
        summary = self.summary
        message: dict[str, Any] = {"ident": ident}
        if name:
            message["device.name"] = name
        if kind == "track":
            summary.track_points += 1
        else:
            message["gpx.kind"] = kind
            if kind == "route":
                summary.route_points += 1
            else:
                summary.waypoints += 1
        lat, lon = _number(element.get("lat", "")), _number(element.get("lon", ""))
        if lat is None or lon is None:
            summary.no_position += 1
        message["position.latitude"] = lat
        message["position.longitude"] = lon
        timed = False
        for child in element.iter():
            if child is element or len(child):
                continue
            text = (child.text or "").strip()
            if not text:
                continue
            key = _local(child.tag)
            if key == "time":
                if "timestamp" in message or timed:
                    continue
                ts = parse_time(text)
                if ts is None:
                    summary.unreadable_time += 1
                    message["gpx.time"] = text
                else:
                    if ts.leap:  # type: ignore[attr-defined]
                        summary.leap_seconds += 1
                    message["timestamp"] = float(ts)
                timed = True
                continue
            if key in _TEXT_KEYS:
                message.setdefault(f"gpx.{key}", text)
                continue
            number = _number(text)
            if key == "ele" and number is not None:
                message.setdefault("position.altitude", number)
            elif key == "sat" and number is not None:
                message.setdefault("position.satellites", int(number))
            elif key == "hdop" and number is not None:
                message.setdefault("position.hdop", number)
            elif key in ("course", "bearing") and number is not None:
                message.setdefault("position.direction", number)
            elif key == "speed" and number is not None:  # m/s in GPX 1.0 and in Garmin's extension
                message.setdefault("position.speed", round(number * 3.6, 6))
            else:
                message.setdefault(f"gpx.{key}", text if number is None else number)
        if not timed:
            summary.untimed += 1
        return message


def _child_text(element: ElementTree.Element, tag: str) -> str:
    for child in element:
        if _local(child.tag) == tag:
            return child.text or ""
    return ""
