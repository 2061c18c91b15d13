"""CSV written by ``trackmon export --format csv`` (either profile) → flespi-style messages, streamed.

Refused with a clear message, nothing kept: a file without ident/latitude/longitude or time
columns, a row whose cell count differs from the header's, an unterminated quote (the rest of
the file would otherwise become one garbage row), an unreadable time. Accepted: a UTF-8
byte-order mark (Excel's "CSV UTF-8"), cells up to 16 MiB, cells a spreadsheet guard prefixed
with ``'`` (see ``export_text.spreadsheet_text``), which get their text back.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from app.store.import_summary import ImportError_, ImportSummary
from app.store.import_time import parse_time

#: Largest cell read (Python's default, 131,072 characters, ended in a traceback).
MAX_CELL = 16 * 1024 * 1024

#: Column → message key, for both export profiles (``speed_ms`` is converted back to km/h).
FIELDS = {"ident": "ident", "name": "device.name", "time_utc": "timestamp", "iso_time_utc": "timestamp",
          "server_time_utc": "server.timestamp", "latitude": "position.latitude", "lat": "position.latitude",
          "longitude": "position.longitude", "lon": "position.longitude", "altitude": "position.altitude",
          "alt": "position.altitude", "speed_kmh": "position.speed", "speed_ms": "position.speed",
          "direction": "position.direction", "course": "position.direction",
          "satellites": "position.satellites", "sat": "position.satellites", "hdop": "position.hdop",
          "valid": "position.valid"}
_TEXT = frozenset({"ident", "device.name"})
_GUARDED = ("'=", "'+", "'-", "'@", "'\t", "'\r")


def _unguard(text: str) -> str:
    """Undo the exporter's formula guard (a ``'`` before ``=``, ``+``, ``-``, ``@``, tab, CR)."""
    return text[1:] if text.startswith(_GUARDED) else text


def _cell(text: str) -> Any:
    if text == "":
        return None
    try:
        return orjson.loads(text)  # numbers, true/false, arrays and objects as the exporter wrote them
    except orjson.JSONDecodeError:
        return _unguard(text)


def csv_messages(path: Path, summary: ImportSummary) -> Iterator[dict[str, Any]]:
    """Messages from a trackmon CSV (extra columns are parameters)."""
    csv.field_size_limit(MAX_CELL)
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: Excel's byte-order mark
        reader = csv.reader(handle, strict=True)  # strict: an unterminated quote is an error, not a row
        try:
            header = next(reader, None) or []
            columns = [FIELDS.get(column, _unguard(column)) for column in header]
            if "ident" not in columns or "position.latitude" not in columns or "position.longitude" not in columns:
                raise ImportError_(f"{path.name}: expected trackmon CSV columns (ident, time_utc, latitude, "
                                   f"longitude, ...), found {', '.join(header[:6]) or 'none'}")
            if "timestamp" not in columns:
                raise ImportError_(f"{path.name}: no time column (time_utc or iso_time_utc): the points "
                                   "would all get the import time")
            per_second = "speed_ms" in header
            width = len(header)
            for row in reader:
                line = reader.line_num
                if not row:
                    continue
                if len(row) != width:
                    raise ImportError_(f"{path.name} line {line}: {len(row)} cells where the header has {width}")
                message: dict[str, Any] = {}
                for key, text in zip(columns, row, strict=True):
                    if key == "flags" or text == "":
                        continue
                    if key in _TEXT:
                        message[key] = _unguard(text)
                    elif key == "timestamp" or key == "server.timestamp":
                        ts = parse_time(text)
                        if ts is None:
                            raise ImportError_(f"{path.name} line {line}: unreadable time {text[:40]!r}")
                        if ts.leap:  # type: ignore[attr-defined]
                            summary.leap_seconds += 1
                        message[key] = float(ts)
                    else:
                        value = _cell(text)
                        if value is not None:
                            message[key] = value
                if "timestamp" not in message:
                    summary.untimed += 1
                if "position.latitude" not in message or "position.longitude" not in message:
                    summary.no_position += 1
                speed = message.get("position.speed")
                if per_second and isinstance(speed, (int, float)):
                    message["position.speed"] = round(speed * 3.6, 6)
                summary.rows += 1
                yield message
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                raise ImportError_(f"{path.name}: the file ends inside a quoted cell (an unterminated quote "
                                   f"from line {reader.line_num} on)") from None
            raise ImportError_(f"{path.name} line {reader.line_num}: {exc}") from None
