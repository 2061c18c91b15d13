"""CSV export: one row per message in time order, in one of two column profiles.

* ``trackmon`` (the default): every message, flagged ones included, with trackmon's own column
  names (``trackmon import`` reads them back exactly).
* ``gis``: only messages with a usable position, with the column names gpsbabel's ``unicsv``
  and GDAL/QGIS recognise: unicsv matches header *substrings* (``lat``, ``lon``, ``alt``,
  ``speed`` in m/s, ``cour``, ``sat``, ``hdop``, a ``time`` column named ``iso…`` read as ISO
  8601), so no other column may contain ``time`` or ``date`` (the default's
  ``server_time_utc`` would be taken as the time); and unicsv aborts on a row without a
  position, so there are none.

Both profiles:

* text cells (idents, names, text parameters) are always quoted, numbers never, so GDAL's
  ``AUTODETECT_TYPE=YES`` + ``QUOTED_FIELDS_AS_STRING=YES`` keeps a 15-digit IMEI a string;
  `CsvExporter.csvt` gives the column types for a ``.csvt`` sidecar, which GDAL and QGIS read
  without any option (the CLI and the dialog write it beside the file);
* numbers are never in exponent notation (see ``export_text``);
* a text cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR at the
  start) gets a leading ``'`` (OWASP's guidance), unless ``raw_text`` asks for the strings
  exactly as sent (for scripts, not spreadsheets);
* ``name`` is each message's own ``device.name`` (empty when the message has none).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import orjson

from app.core.normalize import UNUSABLE_FIX, flatten
from app.store.export_text import (
    cap,
    integer_column,
    iso_time_column,
    plain,
    plain_column,
    rounded,
    rounded_column,
    spreadsheet_text,
)
from app.store.exporters import Exporter, drawable, drawable_mask, iso_time, keep_rows
from app.store.message_names import message_name
from app.store.points import PointBlock, TrackPoint

RawLookup = Callable[[TrackPoint], Any]

CSV_COLUMNS = ("ident", "name", "time_utc", "server_time_utc", "latitude", "longitude", "altitude",
               "speed_kmh", "direction", "satellites", "hdop", "valid", "flags")
GIS_COLUMNS = ("ident", "name", "iso_time_utc", "lat", "lon", "alt", "speed_ms", "course", "sat", "hdop",
               "valid", "flags")
PROFILES = {"trackmon": CSV_COLUMNS, "gis": GIS_COLUMNS}

#: GDAL .csvt type of each fixed column (lat/lon as CoordY/CoordX: GDAL builds points from them).
_TYPES = {"ident": "String", "name": "String", "time_utc": "DateTime", "server_time_utc": "DateTime",
          "iso_time_utc": "DateTime", "latitude": "CoordY", "longitude": "CoordX", "lat": "CoordY",
          "lon": "CoordX", "altitude": "Real", "alt": "Real", "speed_kmh": "Real", "speed_ms": "Real",
          "direction": "Real", "course": "Real", "satellites": "Integer", "sat": "Integer", "hdop": "Real",
          "valid": "String", "flags": "Integer"}

#: Message keys the fixed CSV columns already hold (not repeated as parameter columns).
CSV_FIXED_KEYS = frozenset({"ident", "device.name", "timestamp", "server.timestamp", "position.latitude",
                            "position.longitude", "position.altitude", "position.speed", "position.direction",
                            "position.satellites", "position.hdop", "position.valid"})


def quoted(text: str) -> str:
    """A CSV cell holding ``text`` as text: always in double quotes (RFC 4180)."""
    return '"' + text.replace('"', '""') + '"'


_VALID = {None: "", True: "true", False: "false"}


def _number(value: float | None) -> str:
    if value is None:
        return ""
    text = repr(value)  # the shortest exact spelling; exponent forms go through `plain`
    return plain(value) if "e" in text else text


class CsvExporter(Exporter):
    """One row per message in time order: the fix columns, then the chosen parameters."""

    by_device = False
    valid_only_default = False
    formats_blocks = True

    def __init__(self, out: TextIO, title: str = "trackmon", params: list[str] | None = None,
                 raw: RawLookup | None = None, profile: str = "trackmon", raw_text: bool = False,
                 names: Callable[[int], list[str]] | None = None) -> None:
        super().__init__(out, title)
        if profile not in PROFILES:
            raise ValueError(f"unknown CSV profile {profile!r}; choose one of {', '.join(PROFILES)}")
        self.params = params or []
        if raw is None:
            raise ValueError("the CSV export reads each message's own name: it needs the raw messages")
        self.raw = raw
        self.names = names  # batch id → each message's own name (faster than reading ``raw``)
        self.profile = profile
        self.raw_text = raw_text
        self.kinds: list[set[str]] = [set() for _ in self.params]  # value kinds seen per parameter
        self._cells: dict[str, str] = {}

    def text(self, value: str) -> str:
        """A device string as a quoted text cell, formula-guarded unless ``raw_text`` (cached:
        idents and names repeat on every row of a device)."""
        cell = self._cells.get(value)
        if cell is None:
            if len(self._cells) > 4096:
                self._cells.clear()
            cell = self._cells[value] = quoted(cap(value) if self.raw_text else spreadsheet_text(cap(value)))
        return cell

    def begin(self) -> None:
        self.out.write(",".join([*PROFILES[self.profile], *(self.text(key) for key in self.params)]) + "\n")

    def point(self, p: TrackPoint) -> None:
        if self.params or self.names is None:
            self._row(p)
        else:
            self.block(PointBlock._make([[value] for value in p]))

    def _row(self, p: TrackPoint) -> None:
        """One row, reading the message itself (its name and the chosen parameters)."""
        gis = self.profile == "gis"
        if gis and (not drawable(p) or not p.has_fix):
            self.skipped += 1
            return
        raw = self.raw(p)
        valid = "" if p.valid is None else ("true" if p.valid else "false")
        cells = [self.text(p.ident), self.text(message_name(raw)), iso_time(p.ts)]
        if gis:
            cells += [_number(p.lat), _number(p.lon), _number(p.alt),
                      "" if p.speed is None else rounded(p.speed / 3.6, 3),
                      "" if p.direction is None else rounded(p.direction % 360.0, 2)]
        else:
            cells += ["" if p.server_ts is None else iso_time(p.server_ts), _number(p.lat), _number(p.lon),
                      _number(p.alt), _number(p.speed), _number(p.direction)]
        cells += ["" if p.satellites is None else str(int(p.satellites)), _number(p.hdop), valid, str(p.flags)]
        if self.params:
            params = flatten(raw) if isinstance(raw, dict) else {}
            cells.extend(self.param_cell(i, params.get(key)) for i, key in enumerate(self.params))
        self.out.write(",".join(cells) + "\n")
        self.written += 1

    def block(self, b: PointBlock) -> None:
        """A block's rows formatted column by column and written with one join; rows that read
        their parameters go one at a time."""
        if self.params or self.names is None:
            for p in b.points():
                self._row(p)
            return
        if self.profile == "gis":
            keep = drawable_mask(b) & ((np.asarray(b.flags, dtype=np.int64) & UNUSABLE_FIX) == 0)
            self.skipped += len(keep) - int(keep.sum())
            narrowed = keep_rows(b, keep)
            if narrowed is None:
                return
            b = narrowed
        names_of = {batch: self.names(batch) for batch in set(b.batch_id)}
        text, known = self.text, self._cells.get
        idents = [known(ident) or text(ident) for ident in b.ident]
        names = [known(name) or text(name)
                 for name in (names_of[batch][idx] for batch, idx in zip(b.batch_id, b.idx, strict=True))]
        columns = [idents, names, iso_time_column(b.ts)]
        if self.profile == "gis":
            columns += [plain_column(b.lat), plain_column(b.lon), plain_column(b.alt),
                        rounded_column(b.speed, 3, scale=3.6), rounded_column(b.direction, 2, modulo=360.0)]
        else:
            server = b.server_ts
            columns += [iso_time_column(server) if None not in server else
                        ["" if v is None else iso_time(v) for v in server],
                        plain_column(b.lat), plain_column(b.lon), plain_column(b.alt), plain_column(b.speed),
                        plain_column(b.direction)]
        columns += [integer_column(b.satellites), plain_column(b.hdop),
                    [_VALID[v] for v in b.valid], list(map(str, b.flags))]
        self.out.write("\n".join(map(",".join, zip(*columns, strict=True))) + "\n")
        self.written += len(idents)

    def param_cell(self, column: int, value: Any) -> str:
        """A parameter value as a cell: numbers plain, booleans true/false, arrays and objects in
        JSON (quoted), strings as text cells."""
        if value is None:
            return ""
        kinds = self.kinds[column]
        if value is True or value is False:
            kinds.add("String")
            return "true" if value else "false"
        if isinstance(value, int):
            kinds.add("Integer64")
            return str(value)
        if isinstance(value, float):
            kinds.add("Real")
            return plain(value)
        kinds.add("String")
        if isinstance(value, (dict, list)):
            return quoted(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode())
        text = str(value)  # a parameter's text is kept whole (only names and idents are capped)
        return quoted(text if self.raw_text else spreadsheet_text(text))

    def csvt(self) -> str:
        """Column types for a GDAL ``.csvt`` sidecar (one line, in column order)."""
        types = [_TYPES[column] for column in PROFILES[self.profile]]
        for kinds in self.kinds:
            if kinds <= {"Integer64"} and kinds:
                types.append("Integer64")
            elif kinds and kinds <= {"Integer64", "Real"}:
                types.append("Real")
            else:
                types.append("String")
        return ",".join(f'"{t}"' for t in types) + "\n"


def csvt_path(csv_path: str | Path) -> Path:
    """Where GDAL looks for the column types of ``csv_path`` (same name, ``.csvt``)."""
    path = Path(csv_path)
    return path.with_name(path.stem + ".csvt") if path.suffix.lower() == ".csv" else path.with_name(path.name + "t")


def collect_param_keys(conn: Any, f: Any) -> list[str]:
    """Every parameter key the filtered messages carry beyond the fixed columns, sorted: the
    stable CSV column order."""
    from app.store.points import RawCache, iter_points
    from app.store.snapshot import read_snapshot
    keys: set[str] = set()
    cache = RawCache(conn)
    with read_snapshot(conn):
        for p in iter_points(conn, f):
            raw = cache.raw(p)
            if isinstance(raw, dict):
                keys.update(flatten(raw))
    return sorted(keys - CSV_FIXED_KEYS)
