"""Build the map page once, with folium, loading Leaflet from local files (never a CDN).

Leaflet comes from the ``xstatic-leaflet`` package and Leaflet.markercluster from
``xstatic-leaflet-markercluster`` (both ship the upstream files with their licences inside a
PyPI package), so nothing is vendored in this repository and nothing is fetched at run time.

The page holds an empty Leaflet map plus ``resources/map.js``; everything after start-up happens
through that script's API (see `MapView`). The app therefore works offline and in tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import folium
import orjson
import xstatic.pkg.leaflet as xstatic_leaflet
import xstatic.pkg.leaflet_markercluster as xstatic_markercluster
from branca.element import MacroElement
from jinja2 import Template

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
LEAFLET = Path(xstatic_leaflet.BASE_DIR)
MARKERCLUSTER = Path(xstatic_markercluster.BASE_DIR)


class _LocalMap(folium.Map):
    """folium's map with its CDN scripts and styles replaced by local files."""

    default_js: ClassVar = [("leaflet", (LEAFLET / "leaflet.js").as_uri()),
                            ("markercluster", (MARKERCLUSTER / "leaflet.markercluster.js").as_uri()),
                            ("trackmon", (RESOURCES / "map.js").as_uri())]
    default_css: ClassVar = [("leaflet_css", (LEAFLET / "leaflet.css").as_uri()),
                             ("markercluster_css", (MARKERCLUSTER / "MarkerCluster.css").as_uri()),
                             ("trackmon_css", (RESOURCES / "map.css").as_uri())]


def _script_json(value: object) -> str:
    # JSON is valid JavaScript; escaping "</" keeps a value from closing the <script> element.
    return orjson.dumps(value).decode().replace("</", "<\\/")


class _TrackmonInit(MacroElement):
    """Hands the folium-created Leaflet map to resources/map.js, right after it is created."""

    _template = Template(
        "{% macro script(this, kwargs) %}trackmon.init({{ this._parent.get_name() }}, "
        "{{ this.options_json }});{% endmacro %}")

    def __init__(self, options: dict) -> None:
        super().__init__()
        self.options_json = _script_json(options)


def build_map_page(target: Path, *, tile_url: str, attribution: str = "",
                   center: tuple[float, float] = (30.0, 10.0), zoom: int = 3) -> Path:
    """Write the map page to ``target`` and return it."""
    page = _LocalMap(location=list(center), zoom_start=zoom, tiles=None, control_scale=True,
                     world_copy_jump=True)
    _TrackmonInit({"tileUrl": tile_url, "attribution": attribution}).add_to(page)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page.get_root().render(), encoding="utf-8")
    return target
