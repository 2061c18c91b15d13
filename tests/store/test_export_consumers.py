"""Exports read back by the tools people hand them to: GDAL (through pyogrio), gpxpy, lxml against
the GPX 1.1 XSD, an HTML parser for KML balloons, Python's csv module and gpsbabel when installed."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import gpxpy
import lxml.html
import orjson
import pyogrio
import pytest
from lxml import etree

from app.core.normalize import normalize_batch
from app.store.exporters import run_export
from app.store.points import PointFilter
from app.store.recorder import Recorder

DATA = Path(__file__).resolve().parents[1] / "data"
XSD = etree.XMLSchema(etree.parse(str(DATA / "gpx-1.1.xsd")))
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
IMEI = "356307042441013"
KML = "{http://www.opengis.net/kml/2.2}"
EXPONENT = re.compile(r"\d[eE][-+]?\d")


def record(db: Path, messages: list[dict]) -> int:
    rec = Recorder(db)
    session = rec.start_session("test")
    body = orjson.dumps(messages)
    rec.write_batch(START, "127.0.0.1", len(body), body, normalize_batch(messages, START, body), 1.0)
    rec.close()
    return session


def export(db: Path, fmt: str, f: PointFilter, target: Path | None = None, **options) -> str:
    out = io.StringIO()
    conn = sqlite3.connect(db)
    try:
        exporter = run_export(conn, fmt, f, out, **options)
    finally:
        conn.close()
    text = out.getvalue()
    if target is not None:
        target.write_text(text, encoding="utf-8")
        if fmt == "csv":
            target.with_suffix(".csvt").write_text(exporter.csvt())  # type: ignore[attr-defined]
    return text


def fix(i: int, **extra) -> dict:
    return {"ident": IMEI, "timestamp": START + i, "position.latitude": 48.1 + i / 1e4,
            "position.longitude": 11.5 + i / 1e4, **extra}


def test_tiny_numbers_are_written_in_fixed_point_and_derived_ones_rounded(tmp_path) -> None:
    db = tmp_path / "tiny.sqlite"
    tiny = {"position.altitude": 1e-06, "position.speed": 0.0001, "position.hdop": 0.5, "position.direction": 1e-7}
    session = record(db, [{"ident": "t", "timestamp": START, "position.latitude": 1e-05,
                           "position.longitude": -5e-05, "tiny.param": 3e-9, **tiny},
                          {"ident": "t", "timestamp": START + 1, "position.latitude": 2e-05,
                           "position.longitude": 1e-05, "position.speed": 50.0, "position.direction": 359.123456}])
    f = PointFilter(session)
    gpx = export(db, "gpx", f)
    assert XSD.validate(etree.fromstring(gpx.encode())), XSD.error_log
    assert not EXPONENT.search(gpx.split("<trk>", 1)[1])
    assert 'lat="0.00001" lon="-0.00005"' in gpx and "<ele>0.000001</ele>" in gpx
    assert "<gpxtpx:speed>13.889</gpxtpx:speed>" in gpx and "<gpxtpx:course>359.12</gpxtpx:course>" in gpx
    points = [p for t in gpxpy.parse(gpx).tracks for s in t.segments for p in s.points]
    assert points[0].latitude == 1e-05 and points[0].longitude == -5e-05
    kml = export(db, "kml", f)
    assert not EXPONENT.search(kml) and "-0.00005,0.00001,0.000001" in kml
    rows = list(csv.reader(io.StringIO(export(db, "csv", f, params=["tiny.param"]))))
    assert not any(EXPONENT.search(cell) for row in rows for cell in row)
    assert rows[1][4:6] == ["0.00001", "-0.00005"] and rows[1][-1] == "0.000000003"


HOSTILE = ["<script>alert(1)</script>", '<img src=x onerror="alert(1)">', "a & b </description><b>x</b>"]


def test_kml_balloons_show_device_strings_as_text_never_markup(tmp_path) -> None:
    db = tmp_path / "kml.sqlite"
    session = record(db, [fix(i, ident=f"dev{j}", **{"device.name": name})
                          for j, name in enumerate(HOSTILE) for i in range(2)])
    target = tmp_path / "out.kml"
    document = etree.fromstring(export(db, "kml", PointFilter(session), target).encode())
    placemarks = document.findall(f".//{KML}Placemark")
    assert len(placemarks) == 3
    for placemark, name in zip(placemarks, HOSTILE, strict=True):
        html = placemark.findtext(f"{KML}description")
        balloon = lxml.html.fragment_fromstring(html, create_parent="div")  # what a KML client renders
        assert len(balloon) == 0 and name in balloon.text_content()  # no element at all: text only
        assert placemark.find(f".//{KML}Data[@name='device_name']").findtext(f"{KML}value") == name
    style = document.find(f".//{KML}Style/{KML}BalloonStyle")
    assert style.findtext(f"{KML}text") == "$[description]"
    meta, _fids, geometry, fields = pyogrio.raw.read(target)  # GDAL's KML driver
    assert sorted(fields[list(meta["fields"]).index("Name")]) == sorted(HOSTILE) and len(geometry) == 3


def test_gdal_keeps_imei_idents_as_strings_in_geojson_and_csv(tmp_path) -> None:
    db = tmp_path / "imei.sqlite"
    session = record(db, [fix(i, **{"device.name": "van", "battery.level": 90 + i, "note": f"n{i}"})
                          for i in range(3)])
    f = PointFilter(session)
    geojson = tmp_path / "out.geojson"
    export(db, "geojson", f, geojson, points=True)
    meta, _fids, geometry, fields = pyogrio.raw.read(geojson)
    ident = list(meta["fields"]).index("ident")
    assert meta["dtypes"][ident] == "object" and set(fields[ident]) == {IMEI}
    table = tmp_path / "out.csv"
    export(db, "csv", f, table, params=["battery.level", "note"])
    meta, _fids, geometry, fields = pyogrio.raw.read(table)  # reads out.csvt
    columns = list(meta["fields"])
    assert list(fields[columns.index("ident")]) == [IMEI] * 3
    assert meta["dtypes"][columns.index("ident")] == "object"
    assert meta["dtypes"][columns.index("battery.level")] == "int64"
    assert meta["dtypes"][columns.index("note")] == "object"
    assert geometry is not None and all(g is not None for g in geometry)  # points from CoordX/CoordY
    table.with_suffix(".csvt").unlink()  # without the sidecar: GDAL's documented type detection
    meta, _fids, _geometry, fields = pyogrio.raw.read(
        table, AUTODETECT_TYPE="YES", QUOTED_FIELDS_AS_STRING="YES",
        X_POSSIBLE_NAMES="longitude", Y_POSSIBLE_NAMES="latitude")
    columns = list(meta["fields"])
    assert list(fields[columns.index("ident")]) == [IMEI] * 3
    assert meta["dtypes"][columns.index("ident")] == "object"


def test_one_fix_is_a_point_and_impossible_positions_stay_out(tmp_path) -> None:
    db = tmp_path / "one.sqlite"
    session = record(db, [fix(0, ident="single"), fix(0, ident="many"), fix(1, ident="many"),
                          {"ident": "many", "timestamp": START + 2, "position.latitude": 95.0,
                           "position.longitude": 11.5},
                          {"ident": "many", "timestamp": START + 3, "position.latitude": 48.0,
                           "position.longitude": 181.0}])
    everything = PointFilter(session)  # --all-fixes
    geojson = tmp_path / "one.geojson"
    features = json.loads(export(db, "geojson", everything, geojson))["features"]
    kinds = {x["properties"]["ident"]: x["geometry"]["type"] for x in features}
    assert kinds == {"single": "Point", "many": "LineString"}
    for x in features:
        coordinates = x["geometry"]["coordinates"]
        for lon, lat in [coordinates] if x["geometry"]["type"] == "Point" else coordinates:
            assert -90 <= lat <= 90 and -180 <= lon <= 180
    _meta, _fids, geometry, _fields = pyogrio.raw.read(geojson)
    assert len(geometry) == 2
    gpx = export(db, "gpx", everything)
    assert XSD.validate(etree.fromstring(gpx.encode())), XSD.error_log
    assert sum(len(s.points) for t in gpxpy.parse(gpx).tracks for s in t.segments) == 3
    kml = etree.fromstring(export(db, "kml", everything).encode())
    assert len(kml.findall(f".//{KML}Placemark/{KML}Point")) == 1
    assert len(kml.findall(f".//{KML}Placemark/{KML}LineString")) == 1


def test_huge_device_names_are_capped_so_gdal_reads_the_gpx(tmp_path) -> None:
    db = tmp_path / "huge.sqlite"
    session = record(db, [fix(i, **{"device.name": "N" * 200_000}) for i in range(2)])
    target = tmp_path / "huge.gpx"
    gpx = export(db, "gpx", PointFilter(session), target)
    assert XSD.validate(etree.fromstring(gpx.encode()))
    with pytest.warns(RuntimeWarning, match="trackmon_ident"):  # GDAL's typing of extension fields
        meta, _fids, _geometry, fields = pyogrio.raw.read(target, layer="tracks")
    columns = list(meta["fields"])
    name = fields[columns.index("name")][0]
    assert 100 < len(name) <= 1024 and fields[columns.index("src")][0] == IMEI  # the ident as a string
    kml = etree.fromstring(export(db, "kml", PointFilter(session)).encode())
    assert len(kml.find(f".//{KML}Placemark").findtext(f"{KML}name")) <= 1024


def test_csv_name_is_each_messages_own(tmp_path) -> None:
    db = tmp_path / "names.sqlite"
    session = record(db, [fix(0, **{"device.name": "before"}), fix(1, **{"device.name": "after"}), fix(2)])
    rows = list(csv.DictReader(io.StringIO(export(db, "csv", PointFilter(session)))))
    assert [r["name"] for r in rows] == ["before", "after", ""]


FORMULAS = ["=HYPERLINK(\"http://x\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"]


def test_csv_text_cells_cannot_become_formulas_unless_raw_text(tmp_path) -> None:
    db = tmp_path / "f.sqlite"
    session = record(db, [fix(i, ident=f"=id{i}", **{"device.name": name, "text": name, "level": -5,
                                                     "code": "-12.5"})
                          for i, name in enumerate(FORMULAS)])
    f = PointFilter(session)
    rows = list(csv.DictReader(io.StringIO(export(db, "csv", f, params=["code", "level", "text"]))))
    assert [r["name"] for r in rows] == ["'" + name for name in FORMULAS]
    assert [r["text"] for r in rows] == ["'" + name for name in FORMULAS]
    assert {r["ident"] for r in rows} == {f"'=id{i}" for i in range(len(FORMULAS))}
    assert {r["level"] for r in rows} == {"-5"} and {r["code"] for r in rows} == {"-12.5"}  # numbers untouched
    raw = list(csv.DictReader(io.StringIO(export(db, "csv", f, params=["text"], raw_text=True))))
    assert [r["name"] for r in raw] == FORMULAS and [r["text"] for r in raw] == FORMULAS


def test_gis_csv_profile_reads_in_gdal_with_positions_and_metres_per_second(tmp_path) -> None:
    db = tmp_path / "gis.sqlite"
    session = record(db, [fix(0, **{"position.speed": 36.0, "server.timestamp": START + 100}),
                          {"ident": IMEI, "timestamp": START + 1},  # no position: left out
                          fix(2, **{"position.speed": 72.0, "position.valid": False})])  # flagged: left out
    target = tmp_path / "gis.csv"
    text = export(db, "csv", PointFilter(session), target, csv_profile="gis")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1 and rows[0]["speed_ms"] == "10" and rows[0]["iso_time_utc"] == "2026-01-01T00:00:00Z"
    assert not [c for c in rows[0] if ("time" in c or "date" in c) and c != "iso_time_utc"]
    meta, _fids, geometry, fields = pyogrio.raw.read(target)
    assert len(geometry) == 1 and geometry[0] is not None
    assert list(fields[list(meta["fields"]).index("ident")]) == [IMEI]
    if shutil.which("gpsbabel"):
        out = tmp_path / "babel.gpx"
        result = subprocess.run(["gpsbabel", "-t", "-i", "unicsv,utc=0", "-f", str(target), "-o", "gpx,gpxver=1.1",
                                 "-F", str(out)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        point = gpxpy.parse(out.read_text()).tracks[0].segments[0].points[0]
        assert point.time.timestamp() == START and point.latitude == pytest.approx(48.1)


def test_export_command_writes_the_csvt_sidecar_and_takes_csv_options(tmp_path) -> None:
    from tests.processes import trackmon
    db = tmp_path / "cli.sqlite"
    record(db, [fix(i, **{"device.name": "=cmd"}) for i in range(2)])
    out = tmp_path / "cli.csv"
    result = trackmon("export", "--db", str(db), "--format", "csv", "--csv-profile", "gis", "-o", str(out))
    assert result.returncode == 0 and "cli.csvt" in result.stderr
    assert out.read_text().startswith("ident,name,iso_time_utc,lat,lon") and "\"'=cmd\"" in out.read_text()
    meta, _fids, geometry, fields = pyogrio.raw.read(out)
    assert list(fields[list(meta["fields"]).index("ident")]) == [IMEI] * 2 and len(geometry) == 2
    raw = trackmon("export", "--db", str(db), "--format", "csv", "--raw-text", "-o", "-")
    assert raw.returncode == 0 and '"=cmd"' in raw.stdout
    wrong = trackmon("export", "--db", str(db), "--format", "gpx", "--raw-text", "-o", str(tmp_path / "x.gpx"))
    assert wrong.returncode == 2 and "--format csv" in wrong.stderr
