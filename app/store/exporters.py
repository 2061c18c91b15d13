"""Streaming writers for GPX 1.1, CSV, KML and GeoJSON.

Each writer receives points one at a time (see `app.store.points`) and writes as it goes, so
memory stays flat however large the export. Every string from a device is escaped for the
format (XML text and attributes, CSV quoting, JSON), and characters XML cannot hold at all are
dropped rather than breaking the file.
"""

from __future__ import annotations

import html
import itertools
import math
import operator
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO
from xml.sax.saxutils import escape

import numpy as np
import orjson

from app.core.normalize import flatten
from app.store.export_text import cap, integer_column, iso_time_column, plain, plain_column, rounded_column
from app.store.points import PointBlock, TrackPoint
from app.store.snapshot import read_snapshot

GPX_NS = "http://www.topografix.com/GPX/1/1"
TPX_NS = "http://www.garmin.com/xmlschemas/TrackPointExtension/v2"
TRACKMON_NS = "https://github.com/trackmon/trackmon/gpx/1"  # identifies our own <trk> extension
KML_NS = "http://www.opengis.net/kml/2.2"
FORMATS = ("gpx", "csv", "kml", "geojson")
_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

RawLookup = Callable[[TrackPoint], Any]


_SECONDS: dict[int, str] = {}


def iso_time(ts: float) -> str:
    """ISO 8601 UTC ('2026-01-02T03:04:05Z', with milliseconds when the time has them).

    Called for every exported point, mostly in time order: recent whole seconds are cached."""
    whole = int(ts // 1)
    millis = round((ts - whole) * 1000)
    if millis == 1000:
        whole, millis = whole + 1, 0
    text = _SECONDS.get(whole)
    if text is None:
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        text = _SECONDS[whole] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{text}.{millis:03d}Z" if millis else text + "Z"


def xml_text(value: Any) -> str:
    """Text safe inside an XML element."""
    return escape(_XML_INVALID.sub("", str(value)))


def _num(value: float) -> str:
    """A number as the device sent it, never in exponent notation (see export_text)."""
    return plain(value)


def drawable(p: TrackPoint) -> bool:
    """A position other tools can take as coordinates: both present, finite and in range.

    ``--all-fixes`` lets flagged positions through (0/0, valid=false), but a latitude over 90
    or a longitude over 180 is no coordinate at all: GPX and GeoJSON readers reject the file."""
    lat, lon = p.lat, p.lon
    return (lat is not None and lon is not None and math.isfinite(lat) and math.isfinite(lon)
            and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0)


def drawable_mask(b: PointBlock) -> np.ndarray:
    """`drawable` for every point of a block at once."""
    lat = np.array(b.lat, dtype=np.float64)  # None → nan, which fails every comparison
    lon = np.array(b.lon, dtype=np.float64)
    return (np.abs(lat) <= 90.0) & (np.abs(lon) <= 180.0)


def keep_rows(b: PointBlock, keep: np.ndarray) -> PointBlock | None:
    """``b`` narrowed to the points ``keep`` marks; None when it marks none."""
    kept = int(keep.sum())
    if not kept:
        return None
    return b if kept == len(keep) else take(b, np.flatnonzero(keep))


class ProgressTicker:
    """Progress and cancel for an export, looked at every ``every`` points (a check per block
    would cost more than the block on small ones)."""

    def __init__(self, total: int, progress: Callable[[int, int], None] | None,
                 cancelled: Callable[[], bool] | None, every: int = 5000) -> None:
        self.total, self.progress, self.cancelled, self.every = total, progress, cancelled, every
        self.reported = 0

    def advance(self, done: int) -> None:
        """``done`` points handled so far; raises Cancelled when the user asked to stop."""
        if done - self.reported < self.every:
            return
        self.reported = done
        if self.cancelled is not None and self.cancelled():
            raise Cancelled()
        if self.progress is not None:
            self.progress(done, self.total)


def take(b: PointBlock, rows: np.ndarray) -> PointBlock:
    """The block's points at ``rows`` (in that order)."""
    picked = rows.tolist()
    if not picked:
        return PointBlock._make([[] for _ in b])
    if len(picked) == 1:
        return PointBlock._make([[column[picked[0]]] for column in b])
    get = operator.itemgetter(*picked)
    return PointBlock._make([get(column) for column in b])


def runs(idents: Sequence[str]) -> Iterator[tuple[int, int]]:
    """(start, stop) of each run of one device in a column of idents."""
    if idents.count(idents[0]) == len(idents) if isinstance(idents, list) else len(set(idents)) == 1:
        yield 0, len(idents)
        return
    start = 0
    for _, group in itertools.groupby(idents):
        stop = start + sum(1 for _ in group)
        yield start, stop
        start = stop


class Exporter:
    """Receives points (device by device when ``by_device``) and writes one file."""

    by_device = True
    valid_only_default = True
    #: Formats a whole block at once (`block` overridden): short runs are worth joining for it.
    formats_blocks = False

    def __init__(self, out: TextIO, title: str = "trackmon") -> None:
        self.out = out
        self.title = title
        self.written = 0
        self.skipped = 0

    def begin(self) -> None:
        """Write whatever comes before the first point."""

    def point(self, p: TrackPoint) -> None:
        """Write one point."""
        raise NotImplementedError

    def block(self, b: PointBlock) -> None:
        """Write consecutive points (writers that format a whole block at once override this)."""
        for p in b.points():
            self.point(p)

    def end(self) -> None:
        """Close everything that is open."""


class _PerDevice(Exporter):
    """Tracks device changes in the point stream: `open_device` / `close_device` hooks."""

    def __init__(self, out: TextIO, title: str = "trackmon") -> None:
        super().__init__(out, title)
        self.ident: str | None = None

    def open_device(self, p: TrackPoint) -> None:
        raise NotImplementedError

    def close_device(self) -> None:
        raise NotImplementedError

    def point(self, p: TrackPoint) -> None:
        if not drawable(p):
            self.skipped += 1
            return
        if p.ident != self.ident:
            if self.ident is not None:
                self.close_device()
            self.ident = p.ident
            self.open_device(p)
        self.device_point(p)
        self.written += 1

    def device_point(self, p: TrackPoint) -> None:
        raise NotImplementedError

    def end(self) -> None:
        if self.ident is not None:
            self.close_device()
        self.finish()

    def finish(self) -> None:
        """Write whatever comes after the last device."""


_EXT = "<extensions><gpxtpx:TrackPointExtension>"
_END_EXT = "</gpxtpx:TrackPointExtension></extensions>"


class GpxExporter(_PerDevice):
    """GPX 1.1: one <trk> per device, a new <trkseg> after a gap; speed and course in the Garmin
    TrackPointExtension v2; the device ident in a trackmon extension of <trk>."""

    formats_blocks = True

    def __init__(self, out: TextIO, title: str = "trackmon", gap: float = 300.0) -> None:
        super().__init__(out, title)
        self.gap = gap
        self.last_ts: float | None = None

    def begin(self) -> None:
        self.out.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<gpx version="1.1" creator="trackmon" xmlns="{GPX_NS}" xmlns:gpxtpx="{TPX_NS}" '
            f'xmlns:trackmon="{TRACKMON_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xsi:schemaLocation="{GPX_NS} http://www.topografix.com/GPX/1/1/gpx.xsd">\n'
            f"<metadata><name>{xml_text(cap(self.title))}</name><time>{iso_time(time.time())}</time></metadata>\n")

    def open_device(self, p: TrackPoint) -> None:
        # The ident goes in <src> too: GDAL types GPX extension fields by their content and
        # clamps a 15-digit IMEI in <trackmon:ident> to a 32-bit integer; <src> is a string.
        self.out.write(f"<trk><name>{xml_text(cap(p.name or p.ident))}</name><src>{xml_text(cap(p.ident))}</src>"
                       f"<extensions><trackmon:ident>{xml_text(cap(p.ident))}</trackmon:ident></extensions>\n"
                       "<trkseg>\n")
        self.last_ts = None

    def close_device(self) -> None:
        self.out.write("</trkseg>\n</trk>\n")

    def point(self, p: TrackPoint) -> None:
        self.block(PointBlock._make([[value] for value in p]))

    def block(self, b: PointBlock) -> None:
        """A block's drawable points as <trkpt> lines, formatted column by column and written
        with one join (the points of a device come in blocks of one device)."""
        keep = drawable_mask(b)
        self.skipped += len(keep) - int(keep.sum())
        narrowed = keep_rows(b, keep)
        if narrowed is None:
            return
        b = narrowed
        for start, stop in runs(b.ident):
            part = b if (start, stop) == (0, len(b.ident)) else PointBlock._make([c[start:stop] for c in b])
            if part.ident[0] != self.ident:
                if self.ident is not None:
                    self.close_device()
                self.ident = part.ident[0]
                self.open_device(TrackPoint._make([column[0] for column in part]))
            self._trkpts(part)
            self.written += stop - start

    def _trkpts(self, b: PointBlock) -> None:
        ts = np.asarray(b.ts, dtype=np.float64)
        previous = np.concatenate(([np.nan if self.last_ts is None else self.last_ts], ts[:-1]))
        breaks = np.flatnonzero(ts - previous > self.gap).tolist()  # nan (a new device) compares False
        self.last_ts = float(ts[-1])
        lon = b.lon if 180.0 not in b.lon else [-180.0 if v == 180.0 else v for v in b.lon]  # xsd: lon < 180
        ele = plain_column(b.alt, "<ele>", "</ele>")
        sat = integer_column(b.satellites, "<sat>", "</sat>")
        hdop = plain_column(b.hdop, "<hdop>", "</hdop>")
        # km/h → m/s (millimetres per second are more than any tracker measures); course in [0, 360)
        if None not in b.speed and None not in b.direction:  # the usual case: tags around both at once
            speed = rounded_column(b.speed, 3, scale=3.6, before=_EXT + "<gpxtpx:speed>", after="</gpxtpx:speed>")
            extensions = rounded_column(b.direction, 2, modulo=360.0, before="<gpxtpx:course>",
                                        after="</gpxtpx:course>" + _END_EXT)
        else:
            speed = rounded_column(b.speed, 3, scale=3.6, before="<gpxtpx:speed>", after="</gpxtpx:speed>")
            course = rounded_column(b.direction, 2, modulo=360.0, before="<gpxtpx:course>", after="</gpxtpx:course>")
            extensions = [_EXT + s + c + _END_EXT if s or c else "" for s, c in zip(speed, course, strict=True)]
            speed = [""] * len(speed)
        lines = [f'<trkpt lat="{la}" lon="{lo}">{e}<time>{t}</time>{sa}{h}{sp}{x}</trkpt>\n'
                 for la, lo, e, t, sa, h, sp, x in zip(plain_column(b.lat), plain_column(lon), ele,
                                                       iso_time_column(b.ts), sat, hdop, speed, extensions,
                                                       strict=True)]
        for i in breaks:
            lines[i] = "</trkseg>\n<trkseg>\n" + lines[i]
        self.out.write("".join(lines))

    def finish(self) -> None:
        self.out.write("</gpx>\n")


def balloon_text(text: str) -> str:
    """A device string for a KML ``<description>``: HTML-escaped, then XML-escaped.

    KML clients (Google Earth, Marble, QGIS's balloon) render ``<description>`` as HTML, so a
    device called ``<img src=x onerror=...>`` would become markup after the XML parser has
    undone one level of escaping. Escaping for HTML first leaves ``&lt;img ...&gt;`` after the
    XML parse, which an HTML renderer shows as the literal characters. (CDATA would not help:
    it only spares the XML escaping, the HTML is still rendered.) The same strings go to
    ``ExtendedData`` unescaped for data tools (GDAL reads them as fields), and the style's
    balloon shows only the description, not those values."""
    return xml_text(html.escape(cap(text), quote=True))


class KmlExporter(_PerDevice):
    """KML 2.2: a Placemark per device, a LineString for its track, or a Point when the device
    has a single fix (a one-point LineString is not drawn)."""

    def begin(self) -> None:
        self.out.write(
            f'<?xml version="1.0" encoding="UTF-8"?>\n<kml xmlns="{KML_NS}">\n<Document>\n'
            f"<name>{xml_text(cap(self.title))}</name>\n"
            '<Style id="track"><LineStyle><color>ffe5881e</color><width>3</width></LineStyle>'
            "<BalloonStyle><text>$[description]</text></BalloonStyle></Style>\n")
        self.first: str | None = None
        self.count = 0

    def open_device(self, p: TrackPoint) -> None:
        name = p.name or p.ident
        description = f"ident {p.ident}" + (f"\nname {p.name}" if p.name else "")
        self.out.write(f"<Placemark><name>{xml_text(cap(name))}</name>"
                       f"<description>{balloon_text(description)}</description>"
                       f"<TimeSpan><begin>{iso_time(p.ts)}</begin></TimeSpan><styleUrl>#track</styleUrl>"
                       "<ExtendedData>"
                       f'<Data name="ident"><value>{xml_text(cap(p.ident))}</value></Data>'
                       f'<Data name="device_name"><value>{xml_text(cap(p.name))}</value></Data>'
                       "</ExtendedData>")
        self.first, self.count = None, 0

    def close_device(self) -> None:
        if self.count == 1:
            self.out.write(f"<Point><coordinates>{self.first}</coordinates></Point></Placemark>\n")
        else:
            self.out.write("</coordinates></LineString></Placemark>\n")

    def device_point(self, p: TrackPoint) -> None:
        alt = "" if p.alt is None else f",{_num(p.alt)}"
        position = f"{_num(p.lon)},{_num(p.lat)}{alt}"
        self.count += 1
        if self.count == 1:  # held back: a Point or the start of a LineString
            self.first = position
            return
        if self.count == 2:
            self.out.write(f"<LineString><tessellate>1</tessellate><coordinates>\n{self.first}\n")
        self.out.write(position + "\n")

    def finish(self) -> None:
        self.out.write("</Document>\n</kml>\n")


class GeoJsonExporter(_PerDevice):
    """A FeatureCollection: a LineString per device (a Point when the device has one fix: RFC 7946
    wants two positions in a LineString), plus optionally a Point per message."""

    def __init__(self, out: TextIO, title: str = "trackmon", points: bool = False) -> None:
        super().__init__(out, title)
        self.points = points
        self.features = 0
        self.coords: Any = None
        self.first = ""
        self.device: dict[str, Any] = {}

    def _feature(self, text: str) -> None:
        self.out.write(("," if self.features else "") + "\n" + text)
        self.features += 1

    def begin(self) -> None:
        self.out.write('{"type":"FeatureCollection","name":' + orjson.dumps(cap(self.title)).decode()
                       + ',"features":[')

    def open_device(self, p: TrackPoint) -> None:
        # Coordinates wait in a spooled file (memory up to 4 MB, then disk) while point features,
        # if asked for, are written straight through. Idents stay JSON strings, which GDAL
        # types as String (a 15-digit IMEI as a number would be clamped to a 32-bit integer).
        self.coords = tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024, mode="w+")  # noqa: SIM115 (closed in close_device)
        self.device = {"ident": cap(p.ident), "name": cap(p.name), "start": iso_time(p.ts), "points": 0}

    def device_point(self, p: TrackPoint) -> None:
        position = [p.lon, p.lat] if p.alt is None else [p.lon, p.lat, p.alt]
        encoded = orjson.dumps(position).decode()
        if self.device["points"] == 0:
            self.first = encoded
        self.coords.write(("," if self.device["points"] else "") + encoded)
        self.device["points"] += 1
        self.device["end"] = iso_time(p.ts)
        if self.points:
            properties = {"ident": cap(p.ident), "name": cap(p.name), "time": iso_time(p.ts), "speed_kmh": p.speed,
                          "direction": p.direction, "satellites": p.satellites, "hdop": p.hdop,
                          "valid": p.valid, "flags": p.flags}
            self._feature('{"type":"Feature","geometry":{"type":"Point","coordinates":' + encoded
                          + '},"properties":' + orjson.dumps(properties).decode() + "}")

    def close_device(self) -> None:
        if self.device["points"] == 1:
            self._feature('{"type":"Feature","geometry":{"type":"Point","coordinates":' + self.first)
        else:
            self.coords.seek(0)
            self._feature('{"type":"Feature","geometry":{"type":"LineString","coordinates":[')
            while block := self.coords.read(1 << 16):
                self.out.write(block)
            self.out.write("]")
        self.out.write('},"properties":' + orjson.dumps(self.device).decode() + "}")
        self.coords.close()

    def finish(self) -> None:
        self.out.write("\n]}\n")


class Cancelled(Exception):
    """The user cancelled an export; the partial file should be removed."""


def collect_param_keys(conn: Any, f: Any) -> list[str]:
    """Every parameter key the filtered messages carry beyond the fixed CSV columns, sorted."""
    from app.store.csv_export import collect_param_keys as collect
    return collect(conn, f)


def make_exporter(conn: Any, fmt: str, out: TextIO, *, title: str = "trackmon", params: list[str] | None = None,
                  points: bool = False, gap: float = 300.0, csv_profile: str = "trackmon",
                  raw_text: bool = False) -> Exporter:
    """The text writer for ``fmt`` (one of `FORMATS`) on ``out``."""
    from app.store.points import RawCache
    if fmt == "gpx":
        return GpxExporter(out, title, gap=gap)
    if fmt == "kml":
        return KmlExporter(out, title)
    if fmt == "geojson":
        return GeoJsonExporter(out, title, points=points)
    if fmt == "csv":
        from app.store.csv_export import CsvExporter
        from app.store.message_names import NameCache

        # Each row reads its message's own name; without parameters few batches need to stay decoded.
        return CsvExporter(out, title, params=params, raw=RawCache(conn, 16 if params else 4).raw,
                           profile=csv_profile, names=NameCache(conn).names, raw_text=raw_text)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def run_export(conn: Any, fmt: str, f: Any, out: TextIO, *, title: str = "trackmon", params: list[str] | None = None,
               points: bool = False, gap: float = 300.0, where: Callable[[dict[str, Any]], bool] | None = None,
               progress: Callable[[int, int], None] | None = None,
               cancelled: Callable[[], bool] | None = None, csv_profile: str = "trackmon",
               raw_text: bool = False) -> Exporter:
    """Write the filtered points of a session in ``fmt``; returns the writer with its counts.

    ``where`` (see app.core.filters) keeps only messages whose parameters match it.
    ``csv_profile`` and ``raw_text``: see `app.store.csv_export`.

    ``progress(done, total)`` is called every few thousand points; ``cancelled()`` is polled
    as often and raises `Cancelled` when it returns True.
    """
    exporter = make_exporter(conn, fmt, out, title=title, params=params, points=points, gap=gap,
                             csv_profile=csv_profile, raw_text=raw_text)
    return drive(conn, exporter, f, where=where, progress=progress, cancelled=cancelled)


def drive(conn: Any, writer: Any, f: Any, *, where: Callable[[dict[str, Any]], bool] | None = None,
          progress: Callable[[int, int], None] | None = None, cancelled: Callable[[], bool] | None = None) -> Any:
    """Feed the filtered points to ``writer`` (``begin``, ``block`` per block, ``end``; device by
    device when its ``by_device``), with progress and cancel as `run_export` describes."""
    from app.store.points import count_points, iter_blocks
    with read_snapshot(conn):  # the count, the points and their raw messages: one view of the file
        total = count_points(conn, f)
        writer.begin()
        done = 0
        ticker = ProgressTicker(total, progress, cancelled)
        keep_where = where_filter(conn, where)
        for block in iter_blocks(conn, f, by_device=writer.by_device, join_short=writer.formats_blocks):
            n = len(block.ts)
            if keep_where is not None:
                block = keep_where(block)
            if len(block.ts):
                writer.block(block)
            done += n
            ticker.advance(done)
    writer.end()
    if progress is not None:
        progress(done, done)
    return writer


def where_filter(conn: Any, where: Callable[[dict[str, Any]], bool] | None
                 ) -> Callable[[PointBlock], PointBlock] | None:
    """A block → the block's points whose message matches ``where`` (None: no filter)."""
    if where is None:
        return None
    from app.store.points import RawCache
    cache = RawCache(conn)

    def keep(block: PointBlock) -> PointBlock:
        rows = [i for i, p in enumerate(block.points())
                if where(flatten(raw) if isinstance(raw := cache.raw(p), dict) else {})]
        return block if len(rows) == len(block.ts) else take(block, np.array(rows, dtype=np.int64))

    return keep
