"""Read raster tiles from an MBTiles file (SQLite), the offline base layer for the map."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

MIME = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}


class MBTilesError(ValueError):
    """The file is not a usable raster MBTiles file; the message says why."""


class MBTiles:
    """An open MBTiles file; safe to read from several threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise MBTilesError(f"no such file: {self.path}")
        self._local = threading.local()
        try:
            metadata = dict(self._conn().execute("SELECT name, value FROM metadata").fetchall())
            self._conn().execute("SELECT 1 FROM tiles LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise MBTilesError(f"{self.path.name} is not an MBTiles file: {exc}") from None
        self.format = str(metadata.get("format", "png")).lower()
        if self.format not in MIME:
            raise MBTilesError(f"{self.path.name} holds '{self.format}' tiles; only raster tiles "
                               f"({', '.join(sorted(MIME))}) can be shown")
        self.mime = MIME[self.format]
        self.name = str(metadata.get("name", self.path.stem))
        self.attribution = str(metadata.get("attribution", ""))
        self.max_zoom = int(metadata.get("maxzoom", 19))

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        return conn

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        """The tile at XYZ coordinates (as Leaflet asks), or None where the file has none."""
        row = (1 << z) - 1 - y  # MBTiles rows count from the bottom (TMS)
        found = self._conn().execute(
            "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
            (z, x, row)).fetchone()
        return None if found is None else bytes(found[0])
