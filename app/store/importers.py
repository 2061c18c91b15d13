"""Turn GPX and CSV files into sessions, so tracks from elsewhere replay and export like any
recording. Each point becomes a flespi-style message and goes through the normal recorder."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from app.core.normalize import parse_timestamp
from app.store.recorder import Recorder

BATCH = 1000
_GPX_NAMESPACES = ("http://www.topografix.com/GPX/1/1", "http://www.topografix.com/GPX/1/0")


class ImportError_(ValueError):
    """The file cannot be imported; the message says why (and where)."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _float(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        return None


def gpx_messages(path: Path) -> Iterator[dict[str, Any]]:
    """Messages from every <trkpt> of a GPX 1.0/1.1 file, streamed (iterparse)."""
    track = 0
    ident = name = ""
    stack: list[str] = []
    try:
        for event, element in ElementTree.iterparse(path, events=("start", "end")):
            tag = _local(element.tag)
            if event == "start":
                stack.append(tag)
                if tag == "trk":
                    track += 1
                    ident = name = ""
                continue
            stack.pop()
            parent = stack[-1] if stack else ""
            if tag == "trkpt":
                yield _gpx_point(element, ident or name or f"{path.stem}-{track}", name)
                element.clear()
            elif tag == "name" and parent == "trk":
                name = (element.text or "").strip()
            elif tag == "ident" and parent == "extensions" and "trk" in stack[-2:-1]:  # trackmon's <trk> extension
                ident = (element.text or "").strip()
    except ElementTree.ParseError as exc:
        raise ImportError_(f"{path.name} is not valid GPX/XML: {exc}") from None


def _gpx_point(element: ElementTree.Element, ident: str, name: str) -> dict[str, Any]:
    values: dict[str, str] = {}
    for child in element.iter():
        if child is not element and child.text:
            values.setdefault(_local(child.tag), child.text.strip())
    message: dict[str, Any] = {"ident": ident}
    if name:
        message["device.name"] = name
    if "time" in values:
        message["timestamp"] = values["time"]
    message["position.latitude"] = _float(element.get("lat"))
    message["position.longitude"] = _float(element.get("lon"))
    for key, field in (("ele", "position.altitude"), ("sat", "position.satellites"), ("hdop", "position.hdop"),
                       ("course", "position.direction")):
        number = _float(values.get(key))
        if number is not None:
            message[field] = int(number) if key == "sat" else number
    speed = _float(values.get("speed"))  # m/s in GPX 1.0 and in the Garmin extension
    if speed is not None:
        message["position.speed"] = round(speed * 3.6, 6)
    return message


CSV_FIELDS = {"ident": "ident", "name": "device.name", "time_utc": "timestamp", "server_time_utc": "server.timestamp",
              "latitude": "position.latitude", "longitude": "position.longitude", "altitude": "position.altitude",
              "speed_kmh": "position.speed", "direction": "position.direction",
              "satellites": "position.satellites", "hdop": "position.hdop", "valid": "position.valid"}


def _cell(text: str) -> Any:
    if text == "":
        return None
    try:
        return orjson.loads(text)  # numbers, true/false, arrays and objects as the exporter wrote them
    except orjson.JSONDecodeError:
        return text


def csv_messages(path: Path) -> Iterator[dict[str, Any]]:
    """Messages from a CSV written by `trackmon export --format csv` (extra columns = parameters)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "ident" not in columns or "latitude" not in columns or "longitude" not in columns:
            raise ImportError_(f"{path.name}: expected trackmon CSV columns (ident, time_utc, latitude, "
                               f"longitude, ...), found {', '.join(columns[:6]) or 'none'}")
        for line, row in enumerate(reader, start=2):
            message: dict[str, Any] = {}
            for column, text in row.items():
                if column is None or column == "flags" or text is None:
                    continue
                key = CSV_FIELDS.get(column, column)
                if key in ("ident", "device.name"):
                    message[key] = text
                elif key in ("timestamp", "server.timestamp"):
                    if text:
                        message[key] = text
                else:
                    value = _cell(text)
                    if value is not None:
                        message[key] = value
            if "timestamp" in message and parse_timestamp(message["timestamp"]) is None:
                raise ImportError_(f"{path.name} line {line}: unreadable time {message['timestamp']!r}")
            yield message


def file_batches(path: Path) -> Iterator[list[dict[str, Any]]]:
    """The file's points as batches of flespi-style messages (.gpx or .csv)."""
    suffix = path.suffix.lower()
    if suffix == ".gpx":
        messages = gpx_messages(path)
    elif suffix == ".csv":
        messages = csv_messages(path)
    else:
        raise ImportError_(f"{path.name}: import reads .gpx and .csv files")
    batch: list[dict[str, Any]] = []
    for message in messages:
        batch.append(message)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def import_with(recorder: Recorder, path: Path, name: str = "") -> tuple[int, int]:
    """Import ``path`` into a new session through an open recorder; returns (session id, messages)."""
    batches = file_batches(path)  # raises at once for an unknown suffix
    session, new, seen = recorder.import_session(name or f"import {path.name}", batches)
    if new == 0:
        recorder.delete_session(session)
        if seen:
            raise ImportError_(f"{path.name} was already imported into this recording")
        raise ImportError_(f"{path.name} holds no track points")
    return session, new


def import_file(db: Path, path: Path, name: str = "") -> tuple[int, int]:
    """Import ``path`` (.gpx or .csv) into a new session of ``db``; returns (session id, messages)."""
    recorder = Recorder(db)
    try:
        return import_with(recorder, path, name)
    finally:
        recorder.close()
