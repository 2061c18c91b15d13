"""An export written to a file all or nothing, in any format (text or GeoPackage/GeoParquet).

The export is written to a hidden partial file beside the target (same directory, so the final
rename is atomic on the same file system) and renamed over the target only once it is complete;
a failed or cancelled export deletes the partial file (and anything its writer left beside it)
and leaves the target as it was. A CSV's ``.csvt`` column types are written the same way.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.store.export_parts import SecondHalf, split_time
from app.store.exporters import FORMATS, drive, make_exporter
from app.store.geo_export import GEO_FORMATS, write_geo

#: Every format a file can be written in → its usual suffix.
SUFFIXES = {"gpx": ".gpx", "csv": ".csv", "kml": ".kml", "geojson": ".geojson", **GEO_FORMATS}
FILE_FORMATS = (*FORMATS, *GEO_FORMATS)
#: Files SQLite (GDAL's GeoPackage) may leave beside a database it was writing.
_SIDE_FILES = ("-journal", "-wal", "-shm")


def partial_path(target: Path, tag: str | None = None) -> Path:
    """Where ``target`` is written until it is complete (hidden, same directory and suffix: GDAL
    picks the format's behaviour by suffix); ``tag`` tells writers apart (this process's id by
    default)."""
    return target.with_name(f".{target.stem}.partial-{os.getpid() if tag is None else tag}{target.suffix}")


def _partials(target: Path, tag: str | None) -> tuple[Path, Path, Path]:
    """Every file an export to ``target`` writes before it is complete: the file, a large CSV's
    second half, a CSV's column types."""
    from app.store.csv_export import csvt_path

    partial = partial_path(target, tag)
    return partial, partial.with_name(partial.name + ".second"), partial_path(csvt_path(target), tag)


def discard_partial(target: Path, tag: str) -> None:
    """Delete what an export to ``target`` tagged ``tag`` left beside it (its process was killed),
    each file as far as it can: never an error in place of the export's own outcome."""
    for path in _partials(target, tag):
        _discard(path, best_effort=True)


def _discard(path: Path, best_effort: bool = False) -> None:
    for candidate in (path, *(path.with_name(path.name + side) for side in _SIDE_FILES)):
        try:
            candidate.unlink(missing_ok=True)
        except OSError:
            if not best_effort:
                raise


def export_file(conn: Any, fmt: str, f: Any, target: Path, *, title: str = "trackmon",
                params: list[str] | None = None, points: bool = False, gap: float = 300.0,
                where: Callable[[dict[str, Any]], bool] | None = None,
                progress: Callable[[int, int], None] | None = None, cancelled: Callable[[], bool] | None = None,
                csv_profile: str = "trackmon", raw_text: bool = False, tag: str | None = None) -> Any:
    """Write the filtered points of a session to ``target`` in ``fmt`` (see `FILE_FORMATS`), all
    or nothing; returns the writer with its counts (``written``, ``skipped``). Raises
    `exporters.Cancelled` when cancelled, RuntimeError when a GeoPackage/GeoParquet library is
    missing, OSError when the directory cannot be written — in every case leaving no file.
    ``tag``: names the partial files (see `partial_path`), so a parent can delete them if the
    process writing them dies."""
    from app.store.csv_export import csvt_path

    if fmt not in SUFFIXES:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FILE_FORMATS)}")
    partial, second_part, csvt_part = _partials(target, tag)
    sidecar: Path | None = None
    second: Any = None
    try:
        split = split_time(conn, f) if fmt == "csv" and not params and where is None else None
        if split is not None:  # a large finished session: the second half in another process
            second = SecondHalf(conn, f, split, second_part,
                                {"title": title, "csv_profile": csv_profile, "raw_text": raw_text})
            f = dataclasses.replace(f, t_before=split)
        if fmt in GEO_FORMATS:
            writer = write_geo(conn, fmt, f, partial, title=title, gap=gap, where=where, progress=progress,
                               cancelled=cancelled)
        else:
            with open(partial, "w", encoding="utf-8", newline="") as out:
                writer = make_exporter(conn, fmt, out, title=title, params=params, points=points, gap=gap,
                                       csv_profile=csv_profile, raw_text=raw_text)
                drive(conn, writer, f, where=where, progress=progress, cancelled=cancelled)
            if second is not None:
                written, skipped = second.finish(cancelled)
                second.append_to(partial)
                writer.written += written
                writer.skipped += skipped
            if fmt == "csv":  # column types for GDAL/QGIS (a 15-digit IMEI stays text)
                sidecar = csvt_part
                sidecar.write_text(writer.csvt(), encoding="utf-8")
        os.replace(partial, target)
        if sidecar is not None:
            os.replace(sidecar, csvt_path(target))
    except BaseException:  # cleaned up as far as it goes; the error that stopped it is what is raised
        _discard(partial, best_effort=True)
        if second is not None:
            second.discard()
        if sidecar is not None:
            _discard(sidecar, best_effort=True)
        raise
    if second is not None:
        second.discard()  # its file, now appended
    return writer
