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

Speed: most of a GPX file is runs of plain ``<trkpt lat=".." lon="..">`` elements whose children
are text-only elements without attributes (``<ele>``, ``<time>``, Garmin's extension values).
`fast_feed` finds such runs with one regular expression over the decoded text and hands the
XML parser a single placeholder element per run instead of every point, so the parser (and the
code that follows its events) keeps every structural rule above — tracks, segments, names,
routes, waypoints, anything unusual — while the common points cost a regex match each. A point
that is not plain (attributes in its children, entities, CDATA, a comment anywhere after the
start, another encoding than UTF-8) simply goes to the parser: both paths build the message
with the same `_message` from (lat, lon, leaf elements).
"""

from __future__ import annotations

import codecs
import re
import secrets
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from app.store.import_summary import ImportError_, ImportSummary
from app.store.import_time import parse_time

_POINTS = {"trkpt": "track", "rtept": "route", "wpt": "waypoint"}
_TEXT_KEYS = frozenset({"name", "cmt", "desc", "src", "sym", "type", "fix", "link", "text"})


_LOCAL: dict[str, str] = {}

#: The start tag of a plain track point: ``lat`` then ``lon``, nothing else.
_PLAIN_START = re.compile(r'<trkpt\s+lat="([^"<&]*)"\s+lon="([^"<&]*)"\s*>')
_END = "</trkpt>"
#: A leaf element of a plain point's body: its local name and its text.
_LEAF = re.compile(r"<((?:[\w.-]+:)?([\w.-]+))>([^<]*)</\1>")
#: Text read (and decoded) per step of the fast feed.
FEED_BLOCK = 1 << 22
_RUN = "trackmon-plain-run"


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
        runs: dict[int, list[tuple[str, str, str]]] = {}
        key = secrets.token_hex(8)  # a placeholder in the file itself is not one of ours
        try:
            for event, element in _events(self.path, runs, key):
                if inner:  # the hot path: the children of a point
                    inner += 1 if event == "start" else -1
                    if inner:
                        continue
                tag = _local(element.tag)
                if event == "start":
                    if tag in _POINTS:
                        inner = 1
                        continue
                    if tag == _RUN and element.get("key") == key:
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
                run = tag == _RUN and element.get("key") == key
                if kind is None and not run:
                    stack.pop()
                parent = stack[-1] if stack else None
                if run and parent is not None:
                    if not ident:  # the first point: every header element of the track is read
                        ident = own_ident or self._device(name, owner, count)
                    for lat, lon, body in runs.pop(int(element.get("n", "-1"))):
                        yield self._message(lat, lon, _leaves(body), ident, name, "track")
                    parent.remove(element)
                elif kind is not None and parent is not None:
                    if kind == "waypoint":
                        point_name = _child_text(element, "name")
                        device = self._unique(point_name or f"{self.path.stem}-waypoint")
                        yield self._message(element.get("lat", ""), element.get("lon", ""), _element_leaves(element),
                                            device, point_name, kind)
                    else:
                        if not ident:  # the first point: every header element of the track is read
                            ident = own_ident or self._device(name, owner, count)
                        yield self._message(element.get("lat", ""), element.get("lon", ""), _element_leaves(element),
                                            ident, name, kind)
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

    def _message(self, lat_text: str, lon_text: str, leaves: Iterable[tuple[str, str]], ident: str, name: str,
                 kind: str) -> dict[str, Any]:
        """A point's message from its ``lat``/``lon`` attributes and its leaf elements (local name,
        stripped text; in document order, empty ones left out)."""
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
        lat, lon = _number(lat_text), _number(lon_text)
        if lat is None or lon is None:
            summary.no_position += 1
        message["position.latitude"] = lat
        message["position.longitude"] = lon
        timed = False
        for key, text in leaves:
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


def _element_leaves(element: ElementTree.Element) -> Iterator[tuple[str, str]]:
    """A parsed point's leaf elements: local name and stripped text, empty ones left out."""
    for child in element.iter():
        if child is element or len(child):
            continue
        text = (child.text or "").strip()
        if text:
            yield _local(child.tag), text


def _plain_body(body: str) -> bool:
    """True when a point's body is text and attribute-less tags only: no entity or character
    reference (``&``), no quote (so no attribute), no empty-element tag, no nested point
    (comments, CDATA and processing instructions switch the fast path off for the whole rest)."""
    return "&" not in body and '"' not in body and "'" not in body and "/>" not in body and "<trkpt" not in body


def _leaves(body: str) -> list[tuple[str, str]]:
    """`_element_leaves` of a plain point's body text (no entities, no attributes to resolve)."""
    return [(local, text) for _, local, raw in _LEAF.findall(body) if (text := raw.strip())]


def _declared_encoding(head: bytes) -> str:
    """The encoding an XML declaration names ('utf-8' when none: XML's default)."""
    match = re.match(rb"(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)", head)
    return match.group(1).decode("ascii").lower() if match else "utf-8"


def _events(path: Path, runs: dict[int, list[tuple[str, str, str]]], key: str
            ) -> Iterator[tuple[str, ElementTree.Element]]:
    """The parser's start/end events for ``path``, runs of plain track points replaced by one
    ``<trackmon-plain-run key=… n=…/>`` each (their text in ``runs[n]``: lat, lon, body)."""
    parser = ElementTree.XMLPullParser(events=("start", "end"))
    with open(path, "rb") as handle:
        block = handle.read(FEED_BLOCK)
        if _declared_encoding(block) not in ("utf-8", "utf8"):  # the parser decodes other encodings
            while block:
                parser.feed(block)
                yield from parser.read_events()
                block = handle.read(FEED_BLOCK)
            parser.close()
            yield from parser.read_events()
            return
        decoder = codecs.getincrementaldecoder("utf-8-sig")()
        text, plain, number, first = "", True, 0, True
        while True:
            final = not block
            try:
                text += decoder.decode(block, final)
            except UnicodeDecodeError as exc:
                raise ElementTree.ParseError(f"not UTF-8 ({exc.reason} at byte {exc.start} of a block)") from None
            if "\r" in text:  # XML's end-of-line handling, done before the text is matched
                held_cr = text.endswith("\r") and not final
                text = text.replace("\r\n", "\n").replace("\r", "\n") if not held_cr else \
                    text[:-1].replace("\r\n", "\n").replace("\r", "\n") + "\r"
            if plain:
                declaration_end = text.find("?>") + 2 if first and text.lstrip().startswith("<?xml") else 0
                # A comment, CDATA section, DOCTYPE or processing instruction could hold text that
                # looks like a point: from there on the parser reads everything.
                plain = "<!" not in text and "<?" not in text[declaration_end:]
                first = False
            if final:
                limit = len(text)
            else:
                last_open, last_close = text.rfind("<trkpt"), text.rfind("</trkpt>")
                limit = last_open if last_open > last_close else text.rfind("<")
                limit = max(limit, 0)
            pieces: list[str] = []
            position = 0
            if plain:
                run: list[tuple[str, str, str]] = []
                find = text.find
                for match in _PLAIN_START.finditer(text, 0, limit):
                    start, body_start = match.span()
                    end = find(_END, body_start, limit)
                    if end < 0:
                        break
                    body = text[body_start:end]
                    if not _plain_body(body):
                        continue  # left in the text the parser reads
                    gap = text[position:start]
                    if run and (not gap or gap.isspace()):
                        run.append((match[1], match[2], body))
                    else:
                        if run:
                            runs[number] = run
                            pieces.append(f'<{_RUN} key="{key}" n="{number}"/>')
                            number += 1
                        pieces.append(gap)
                        run = [(match[1], match[2], body)]
                    position = end + len(_END)
                if run:
                    runs[number] = run
                    pieces.append(f'<{_RUN} key="{key}" n="{number}"/>')
                    number += 1
            pieces.append(text[position:limit])
            text = text[limit:]
            parser.feed("".join(pieces))
            yield from parser.read_events()
            if final:
                break
            block = handle.read(FEED_BLOCK)
    parser.close()
    yield from parser.read_events()


def _child_text(element: ElementTree.Element, tag: str) -> str:
    for child in element:
        if _local(child.tag) == tag:
            return child.text or ""
    return ""
