"""GeoPackage and GeoParquet exports: the session's fixes as typed tables for GIS and dataframes.

What their users expect:

* **GeoPackage** (QGIS, ogr2ogr, ArcGIS) — through pyogrio, which bundles GDAL. Two layers in
  EPSG:4326: ``points``, one Point per fix with its attributes (``ident`` and ``name`` TEXT, so a
  15-digit IMEI stays a string; ``time`` a UTC DATETIME; speed, course, altitude, satellites,
  HDOP, valid, flags), and ``tracks``, one LineString per device and segment (a new segment after
  a gap, as in GPX; a very long segment is continued in another line that starts where the last
  one ended, so memory stays bounded). A segment with a single fix is in ``points`` only: a
  line needs two positions.
* **GeoParquet** (DuckDB, pandas/GeoPandas, polars) — through pyarrow. The ``points`` table with
  the geometry as WKB in ``geometry`` and the ``geo`` file metadata of GeoParquet 1.1 (encoding,
  geometry type, bounding box; no ``crs`` key, which the specification defines as OGC:CRS84 —
  longitude, latitude on WGS 84). Times are ``timestamp[ms, tz=UTC]``, idents strings.

Both are written in batches as the points stream in (memory flat for any session), only fixes
with coordinates in range, and device strings go in as data: no markup, no formula guard (no
spreadsheet reads these files). Both libraries are optional (`pip install 'trackmon[geo]'`);
`missing_library` says what to install.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.store.exporters import ProgressTicker, drawable_mask, keep_rows
from app.store.points import PointBlock

#: Format name → file suffix.
GEO_FORMATS = {"gpkg": ".gpkg", "geoparquet": ".parquet"}
INSTALL_HINT = "pip install 'trackmon[geo]'"
_LIBRARY = {"gpkg": (("pyogrio", "pyarrow"), "GeoPackage"), "geoparquet": (("pyarrow",), "GeoParquet")}

#: Points per write (a GDAL append / a Parquet row group).
BATCH = 65_536
#: Vertices of one track line before it is continued in the next one.
MAX_LINE = 100_000
#: Vertices of all open track lines together before they are continued in new ones.
OPEN_VERTICES = 1_000_000

POINT_FIELDS = ("ident", "name", "time", "server_time", "altitude_m", "speed_kmh", "course_deg", "satellites",
                "hdop", "valid", "flags")
TRACK_FIELDS = ("ident", "name", "segment", "start_time", "end_time", "points")


def missing_library(fmt: str) -> str | None:
    """Why ``fmt`` cannot be written here (its library is not installed), or None."""
    modules, label = _LIBRARY[fmt]
    absent = [module for module in modules if importlib.util.find_spec(module) is None]
    if absent:
        return f"{label} export needs {' and '.join(absent)}: {INSTALL_HINT}"
    return None


def epoch_ms(ts: Any) -> np.ndarray:
    """Epoch seconds (None → NaT) → ``datetime64[ms]``, milliseconds rounded as the text exports do."""
    seconds = np.array(ts, dtype=np.float64)
    missing = np.isnan(seconds)
    whole = np.floor(np.where(missing, 0.0, seconds))
    millis = whole.astype(np.int64) * 1000 + np.rint((np.where(missing, 0.0, seconds) - whole) * 1000).astype(np.int64)
    out = millis.astype("datetime64[ms]")
    out[missing] = np.datetime64("NaT")
    return out


def point_wkb(lon: np.ndarray, lat: np.ndarray) -> bytes:
    """Little-endian WKB Points (21 bytes each), back to back."""
    records = np.empty(len(lon), dtype=[("order", "u1"), ("type", "<u4"), ("x", "<f8"), ("y", "<f8")])
    records["order"], records["type"], records["x"], records["y"] = 1, 1, lon, lat
    return records.tobytes()


def line_wkb(lon: np.ndarray, lat: np.ndarray) -> bytes:
    """A little-endian WKB LineString."""
    return struct.pack("<BII", 1, 2, len(lon)) + np.column_stack((lon, lat)).astype("<f8").tobytes()


@dataclass
class PointColumns:
    """A block's exportable fixes as typed arrays (NaN / NaT / a mask where a value is missing)."""

    lon: np.ndarray
    lat: np.ndarray
    ts: np.ndarray
    values: dict[str, np.ndarray]
    masks: dict[str, np.ndarray | None] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.lon)


def point_columns(b: PointBlock, names: Callable[[int], list[str]]) -> PointColumns:
    """The columns of `POINT_FIELDS` for a block (already filtered to drawable fixes)."""
    names_of = {batch: names(batch) for batch in set(b.batch_id)}
    satellites = np.array(b.satellites, dtype=np.float64)
    valid = np.array([v is True for v in b.valid])
    return PointColumns(
        lon=np.array(b.lon, dtype=np.float64), lat=np.array(b.lat, dtype=np.float64),
        ts=np.array(b.ts, dtype=np.float64),
        values={"ident": np.array(b.ident, dtype=object),
                "name": np.array([names_of[batch][idx] for batch, idx in zip(b.batch_id, b.idx, strict=True)],
                                 dtype=object),
                "time": epoch_ms(b.ts), "server_time": epoch_ms(b.server_ts),
                "altitude_m": np.array(b.alt, dtype=np.float64), "speed_kmh": np.array(b.speed, dtype=np.float64),
                "course_deg": np.array(b.direction, dtype=np.float64),
                "satellites": np.nan_to_num(satellites).astype(np.int32), "hdop": np.array(b.hdop, dtype=np.float64),
                "valid": valid, "flags": np.array(b.flags, dtype=np.int32)},
        masks={"satellites": np.isnan(satellites), "valid": np.array([v is None for v in b.valid])})


@dataclass
class GeoCounts:
    """What a GeoPackage/GeoParquet export wrote (named as the text writers' counts)."""

    written: int = 0
    skipped: int = 0
    tracks: int = 0


def _schema(pa: Any) -> Any:
    utc = pa.timestamp("ms", tz="UTC")
    return pa.schema([
        ("ident", pa.string()), ("name", pa.string()), ("time", utc), ("server_time", utc),
        ("altitude_m", pa.float64()), ("speed_kmh", pa.float64()), ("course_deg", pa.float64()),
        ("satellites", pa.int32()), ("hdop", pa.float64()), ("valid", pa.bool_()), ("flags", pa.int32()),
        ("geometry", pa.binary())])


def _track_schema(pa: Any) -> Any:
    utc = pa.timestamp("ms", tz="UTC")
    return pa.schema([("ident", pa.string()), ("name", pa.string()), ("segment", pa.int32()),
                      ("start_time", utc), ("end_time", utc), ("points", pa.int32()), ("geometry", pa.binary())])


def _binary(pa: Any, blobs: list[bytes] | bytes, size: int = 0) -> Any:
    """A pyarrow binary array: equal-sized blobs back to back (``size`` each), or a list."""
    if isinstance(blobs, bytes):
        n = len(blobs) // size
        offsets = np.arange(0, size * (n + 1), size, dtype=np.int32)
        return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(blobs)])
    return pa.array(blobs, type=pa.binary())


def _record_batch(pa: Any, schema: Any, held: list[PointColumns]) -> Any:
    arrays = []
    for name in POINT_FIELDS:
        values = np.concatenate([c.values[name] for c in held])
        kind = schema.field(name).type
        if values.dtype.kind in "fM":
            arrays.append(pa.array(values, type=kind, from_pandas=True))  # NaN / NaT → null
        else:
            mask = np.concatenate([c.masks[name] for c in held]) if name in held[0].masks else None
            arrays.append(pa.array(values, type=kind, mask=mask))
    wkb = point_wkb(np.concatenate([c.lon for c in held]), np.concatenate([c.lat for c in held]))
    arrays.append(_binary(pa, wkb, 21))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class _Segment:
    """The open track line of one device."""

    def __init__(self, ident: str, name: str, number: int) -> None:
        self.ident, self.name, self.number = ident, name, number
        self.lon: list[np.ndarray] = []
        self.lat: list[np.ndarray] = []
        self.first = self.last = 0.0
        self.size = 0

    def add(self, lon: np.ndarray, lat: np.ndarray, ts: np.ndarray) -> None:
        if not self.size:
            self.first = float(ts[0])
        self.lon.append(lon)
        self.lat.append(lat)
        self.last = float(ts[-1])
        self.size += len(lon)


class TrackLines:
    """Builds the ``tracks`` layer from points in time order: an open line per device, closed at
    a gap; finished lines are spooled to an Arrow stream on disk until the points are written.

    Memory: open lines hold at most `OPEN_VERTICES` vertices in all; past that every open line
    is ended and continued in a new one from its last vertex (the drawing stays unbroken)."""

    def __init__(self, pa: Any, gap: float) -> None:
        self.pa = pa
        self.gap = gap
        self.schema = _track_schema(pa)
        self.open: dict[str, _Segment] = {}
        self.open_vertices = 0
        self.numbers: dict[str, int] = {}
        self.finished: list[tuple[bytes, _Segment]] = []
        self.spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.sink = pa.ipc.new_stream(self.spool, self.schema)
        self.lines = 0

    def add(self, c: PointColumns) -> None:
        """Extend each device's open line with the block's points (in time order)."""
        rows: dict[str, list[int]] = {}
        for i, ident in enumerate(c.values["ident"].tolist()):
            rows.setdefault(ident, []).append(i)
        for ident, picked in rows.items():
            at = np.array(picked)
            self._extend(ident, c.values["name"][at], c.lon[at], c.lat[at], c.ts[at])
        if self.open_vertices >= OPEN_VERTICES:
            for ident in list(self.open):
                self._close(ident, continued=True)

    def _extend(self, ident: str, names: np.ndarray, lon: np.ndarray, lat: np.ndarray, ts: np.ndarray) -> None:
        segment = self.open.get(ident)
        steps = np.diff(np.concatenate(([np.nan if segment is None else segment.last], ts)))
        breaks = set(np.flatnonzero(steps > self.gap).tolist())  # NaN (no open line) compares False
        if segment is None:
            breaks.add(0)
        cuts = [*sorted(breaks | {0}), len(ts)]
        for start, stop in itertools.pairwise(cuts):
            if start in breaks:
                self._close(ident)
                number = self.numbers[ident] = self.numbers.get(ident, 0) + 1
                self.open[ident] = _Segment(ident, names[start], number)
            at = start
            while at < stop:
                segment = self.open[ident]
                if segment.size >= MAX_LINE:
                    self._close(ident, continued=True)
                    continue
                end = min(stop, at + MAX_LINE - segment.size)
                segment.add(lon[at:end], lat[at:end], ts[at:end])
                segment.name = names[end - 1] or segment.name
                self.open_vertices += end - at
                at = end

    def _close(self, ident: str, continued: bool = False) -> None:
        segment = self.open.pop(ident, None)
        if segment is None:
            return
        self.open_vertices -= segment.size
        lon, lat = np.concatenate(segment.lon), np.concatenate(segment.lat)
        if len(lon) >= 2:  # a single fix is no line: it is in the points layer
            self.finished.append((line_wkb(lon, lat), segment))
            if len(self.finished) >= 1000:
                self._spool()
        if continued:  # the next line starts where this one ended
            follow = self.open[ident] = _Segment(ident, segment.name, segment.number)
            follow.add(lon[-1:], lat[-1:], np.array([segment.last]))
            self.open_vertices += 1

    def _spool(self) -> None:
        finished, self.finished = self.finished, []
        if not finished:
            return
        pa, segments = self.pa, [segment for _, segment in finished]
        self.sink.write_batch(pa.RecordBatch.from_arrays([
            pa.array([s.ident for s in segments], type=pa.string()), pa.array([s.name for s in segments], pa.string()),
            pa.array([s.number for s in segments], type=pa.int32()),
            pa.array(epoch_ms([s.first for s in segments]), type=self.schema.field("start_time").type),
            pa.array(epoch_ms([s.last for s in segments]), type=self.schema.field("end_time").type),
            pa.array([s.size for s in segments], type=pa.int32()),
            _binary(pa, [wkb for wkb, _ in finished])], schema=self.schema))
        self.lines += len(finished)

    def reader(self) -> Any:
        """Every finished line, as a stream of record batches read back from the spool."""
        for ident in list(self.open):
            self._close(ident)
        self._spool()
        self.sink.close()
        self.spool.seek(0)
        return self.pa.ipc.open_stream(self.spool)

    def close(self) -> None:
        self.spool.close()


def write_geo(conn: Any, fmt: str, f: Any, path: Path, *, title: str = "trackmon", gap: float = 300.0,
              where: Callable[[dict[str, Any]], bool] | None = None,
              progress: Callable[[int, int], None] | None = None,
              cancelled: Callable[[], bool] | None = None) -> GeoCounts:
    """Write the filtered points of a session to ``path`` as a GeoPackage (``gpkg``) or GeoParquet
    (``geoparquet``) file; raises RuntimeError if the library is missing, `Cancelled` when
    cancelled (the caller deletes the partial file: see `export_file`)."""
    from app.store.exporters import where_filter
    from app.store.message_names import NameCache
    from app.store.points import count_points, iter_blocks
    from app.store.snapshot import read_snapshot

    missing = missing_library(fmt)
    if missing:
        raise RuntimeError(missing)
    import pyarrow as pa
    counts = GeoCounts()
    schema = _schema(pa)
    names = NameCache(conn).names
    tracks = TrackLines(pa, gap) if fmt == "gpkg" else None
    bbox = [np.inf, np.inf, -np.inf, -np.inf]

    failure: list[BaseException] = []

    def batches() -> Any:
        """`_batches` remembering its exception: GDAL reports one from the stream as its own error."""
        try:
            yield from _batches()
        except BaseException as exc:
            failure.append(exc)
            raise

    def _batches() -> Any:
        """Record batches of `BATCH` points in time order (pulled by the writer)."""
        held: list[PointColumns] = []
        held_size = done = 0
        ticker = ProgressTicker(total, progress, cancelled)
        keep_where = where_filter(conn, where)
        for block in iter_blocks(conn, f, join_short=True):
            n = len(block.ts)
            done += n
            if keep_where is not None:
                block = keep_where(block)
            keep = drawable_mask(block)
            kept = int(keep.sum())
            counts.skipped += len(keep) - kept
            narrowed = keep_rows(block, keep)
            if narrowed is not None:
                c = point_columns(narrowed, names)
                counts.written += kept
                bbox[:] = [min(bbox[0], float(c.lon.min())), min(bbox[1], float(c.lat.min())),
                           max(bbox[2], float(c.lon.max())), max(bbox[3], float(c.lat.max()))]
                if tracks is not None:
                    tracks.add(c)
                held.append(c)
                held_size += kept
                if held_size >= BATCH:
                    yield _record_batch(pa, schema, held)
                    held, held_size = [], 0
            ticker.advance(done)
        if held:
            yield _record_batch(pa, schema, held)

    try:
        with read_snapshot(conn):
            total = count_points(conn, f)
            if fmt == "gpkg":
                _write_gpkg(pa, schema, batches(), tracks, path, title)  # type: ignore[arg-type]
                counts.tracks = tracks.lines  # type: ignore[union-attr]
            else:
                _write_parquet(pa, schema, batches(), path, bbox, counts)
    except Exception as exc:
        if failure and failure[0] is not exc:  # the cancel or the failure itself, not GDAL's report of it
            raise failure[0] from None
        raise
    finally:
        if tracks is not None:
            tracks.close()
    if progress is not None:
        progress(total, total)
    return counts


def _write_gpkg(pa: Any, schema: Any, batches: Any, tracks: TrackLines, path: Path, title: str) -> None:
    """Points streamed into GDAL's Arrow writer in one call (GDAL ≥ 3.8 writes Arrow batches
    natively; appending batch by batch in separate calls rebuilt the spatial index each time),
    then the tracks spooled meanwhile."""
    import pyogrio
    options = {"driver": "GPKG", "geometry_name": "geometry", "crs": "EPSG:4326"}
    pyogrio.write_arrow(pa.RecordBatchReader.from_batches(schema, batches), str(path), layer="points",
                        geometry_type="Point", layer_options={"DESCRIPTION": f"{title}: one point per fix"},
                        **options)
    pyogrio.write_arrow(tracks.reader(), str(path), layer="tracks", geometry_type="LineString", append=True,
                        layer_options={"DESCRIPTION": f"{title}: one line per device and segment"}, **options)


def _write_parquet(pa: Any, schema: Any, batches: Any, path: Path, bbox: list[float], counts: GeoCounts) -> None:
    import pyarrow.parquet as pq
    writer = pq.ParquetWriter(str(path), schema, compression="zstd")
    try:
        for batch in batches:
            writer.write_batch(batch)
        column: dict[str, Any] = {"encoding": "WKB", "geometry_types": ["Point"]}
        if counts.written:
            column["bbox"] = bbox
        writer.add_key_value_metadata({"geo": json.dumps(
            {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": column}})})
    finally:
        writer.close()
