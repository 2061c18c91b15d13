"""The map widget: a QWebEngineView showing the folium page, driven through resources/map.js."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from PySide6.QtCore import QByteArray, QUrl, Signal
from PySide6.QtWebEngineCore import QWebEnginePage, QWebEngineProfile, QWebEngineSettings
from PySide6.QtWebEngineWidgets import QWebEngineView

from app.store.mbtiles import MBTiles
from app.ui.map_page import build_map_page
from app.ui.tile_scheme import SCHEME, TILE_URL, TileSchemeHandler

log = logging.getLogger(__name__)
PREFIX = "trackmon:"


def _script(function: str, args: tuple[Any, ...]) -> str:
    return f"trackmon.{function}({','.join(orjson.dumps(a).decode() for a in args)});"


class _Page(QWebEnginePage):
    """Receives the page's messages (console lines starting with 'trackmon:')."""

    message = Signal(dict)

    def javaScriptConsoleMessage(self, level, text: str, line: int, source: str) -> None:
        if text.startswith(PREFIX):
            try:
                payload = orjson.loads(text[len(PREFIX):])
            except orjson.JSONDecodeError:
                return
            if isinstance(payload, dict):
                self.message.emit(payload)
        elif level == QWebEnginePage.JavaScriptConsoleMessageLevel.ErrorMessageLevel:
            log.warning("map page: %s (%s:%s)", text, source, line)


class MapView(QWebEngineView):
    """Calls into the map's JS API; emits what the user does on the map."""

    ready = Signal()
    device_clicked = Signal(str)
    follow_changed = Signal(bool)
    fitted = Signal()  # the user clicked "View fixed — Fit all to resume" on the map

    def __init__(self, tile_url: str, attribution: str = "", parent=None) -> None:
        super().__init__(parent)
        self._pending: list[str] = []
        self.is_ready = False
        # A private, off-the-record profile: its own tile handler, nothing written to disk. The
        # profile is parented to the page so that the page is destroyed first, as Qt requires.
        profile = QWebEngineProfile()
        # Keep a Python reference: otherwise the wrapper of this subclass can be collected while
        # Qt still calls its javaScriptConsoleMessage override (a crash).
        self._page = page = _Page(profile, self)
        profile.setParent(page)
        page.message.connect(self._on_message)
        self.setPage(page)
        self.tile_handler = TileSchemeHandler(profile)
        profile.installUrlSchemeHandler(QByteArray(SCHEME), self.tile_handler)
        settings = page.settings()
        settings.setAttribute(QWebEngineSettings.WebAttribute.LocalContentCanAccessFileUrls, True)
        settings.setAttribute(QWebEngineSettings.WebAttribute.LocalContentCanAccessRemoteUrls, True)
        self._dir = tempfile.TemporaryDirectory(prefix="trackmon-map-")
        html = build_map_page(Path(self._dir.name) / "map.html", tile_url=tile_url, attribution=attribution)
        self.load(QUrl.fromLocalFile(str(html)))

    def _on_message(self, payload: dict) -> None:
        if payload.get("ready"):
            self.is_ready = True
            for script in self._pending:
                self.page().runJavaScript(script)
            self._pending.clear()
            self.ready.emit()
        elif isinstance(payload.get("select"), str):
            self.device_clicked.emit(payload["select"])
        elif isinstance(payload.get("follow"), bool):
            self.follow_changed.emit(payload["follow"])
        elif payload.get("fitted") is True:
            self.fitted.emit()

    def call(self, function: str, *args: Any) -> None:
        """Run ``trackmon.<function>(args...)`` with arguments passed as JSON data."""
        script = _script(function, args)
        if self.is_ready:
            self.page().runJavaScript(script)
        else:
            self._pending.append(script)

    def call_then(self, function: str, args: tuple[Any, ...], done: Callable[[Any], None]) -> None:
        """Like `call` on a ready page, and ``done(result)`` once the page has run it: lets a
        sender keep at most one large call queued in the page (see `MapFeed`)."""
        self.page().runJavaScript(_script(function, args), 0, done)

    def set_base_layer(self, tile_url: str, attribution: str = "", mbtiles: MBTiles | None = None) -> None:
        """Show tiles from ``mbtiles`` when given, else from ``tile_url`` ('' for the plain grid)."""
        self.tile_handler.tiles = mbtiles
        if mbtiles is not None:
            self.call("setBaseLayer", TILE_URL, mbtiles.attribution, mbtiles.max_zoom)
        else:
            self.call("setBaseLayer", tile_url, attribution, 19)

