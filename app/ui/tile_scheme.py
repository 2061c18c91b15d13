"""Serve tiles from a local MBTiles file to the map page as mbtiles://tiles/{z}/{x}/{y}."""

from __future__ import annotations

import re

from PySide6.QtCore import QBuffer, QByteArray
from PySide6.QtWebEngineCore import (
    QWebEngineUrlRequestJob,
    QWebEngineUrlScheme,
    QWebEngineUrlSchemeHandler,
)

from app.store.mbtiles import MBTiles

SCHEME = b"mbtiles"
TILE_URL = "mbtiles://tiles/{z}/{x}/{y}"
_PATH = re.compile(r"^/(\d{1,2})/(\d{1,9})/(\d{1,9})$")


def register_scheme() -> None:
    """Declare the scheme to QtWebEngine; must happen before the QApplication exists."""
    if QWebEngineUrlScheme.schemeByName(SCHEME).name() == SCHEME:
        return
    scheme = QWebEngineUrlScheme(SCHEME)
    scheme.setSyntax(QWebEngineUrlScheme.Syntax.Path)
    scheme.setFlags(QWebEngineUrlScheme.Flag.LocalScheme | QWebEngineUrlScheme.Flag.LocalAccessAllowed)
    QWebEngineUrlScheme.registerScheme(scheme)


class TileSchemeHandler(QWebEngineUrlSchemeHandler):
    """Answers tile requests from the current MBTiles file (or 'not found' without one)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.tiles: MBTiles | None = None

    def requestStarted(self, job: QWebEngineUrlRequestJob) -> None:
        match = _PATH.match(job.requestUrl().path())
        data = None
        if match is not None and self.tiles is not None:
            z, x, y = (int(part) for part in match.groups())
            data = self.tiles.tile(z, x, y)
        if data is None:
            job.fail(QWebEngineUrlRequestJob.Error.UrlNotFound)
            return
        buffer = QBuffer(job)
        buffer.setData(QByteArray(data))
        job.reply(QByteArray(self.tiles.mime.encode()), buffer)
