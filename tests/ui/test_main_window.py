"""The desktop window, offscreen, fed over real loopback HTTP."""

from __future__ import annotations

import csv
import socket
import sqlite3
import time
from contextlib import closing

import orjson
from PySide6.QtCore import Qt

from app.core.fleet import LogEntry
from app.core.normalize import normalize_batch
from app.store.faults import file_id
from app.store.recorder import Recorder
from app.ui.device_model import COLUMNS
from tests.ui.conftest import (
    TOKEN,
    answer_modal,
    enter_replay,
    file_moved_away,
    js,
    map_state,
    post,
    run,
    wait_until,
)

FLAT = {"ident": "352625333222111", "timestamp": 1700000000.5, "device.name": "Truck 7",
        "position.latitude": 49.069782, "position.longitude": 28.632826, "position.speed": 42.5,
        "position.direction": 90, "position.satellites": 11, "engine.ignition.status": True,
        "external.powersource.voltage": 13.7, "battery.level": 87}
NESTED = {"ident": "352625333222999", "timestamp": 1700000000.5, "device": {"name": "Truck 7"},
          "position": {"latitude": 49.069782, "longitude": 28.632826, "speed": 42.5, "direction": 90,
                       "satellites": 11},
          "engine": {"ignition": {"status": True}}, "external.powersource.voltage": 13.7,
          "battery": {"level": 87}}
COLUMN = {column[0]: i for i, column in enumerate(COLUMNS)}


def row_texts(window, ident: str) -> dict[str, str]:
    model = window.device_model
    row = model.rows[ident]
    return {title: model.index(row, i).data() for title, i in COLUMN.items()}


def test_posted_batch_makes_rows_appear_with_the_right_values(loop, make_window) -> None:
    window = make_window()
    url = window.urls()[0]

    async def scenario() -> None:
        assert await post(url, [FLAT, FLAT | {"ident": "2", "device.name": "Van", "timestamp": 1700000001}]) == 200
        await wait_until(lambda: window.device_model.rowCount() == 2, what="two rows")

    run(loop, scenario())
    row = row_texts(window, FLAT["ident"])
    assert row["Name"] == "Truck 7" and row["Status"] == "online"
    assert row["Position"] == "49.069782, 28.632826"
    assert row["Speed"] == "42 km/h" and row["Heading"] == "90 °" and row["Sats"] == "11"
    assert row["Ignition"] == "on" and row["Ext. power"] == "13.70 V" and row["Battery"] == "87 %"
    assert row["Msgs"] == "1"
    assert window.left.currentIndex() == 1  # the empty state gave way to the table


def test_nested_and_flat_batches_show_identically(loop, make_window) -> None:
    window = make_window()
    url = window.urls()[0]

    async def scenario() -> None:
        assert await post(url, [FLAT]) == 200
        assert await post(url, [NESTED]) == 200
        await wait_until(lambda: window.device_model.rowCount() == 2, what="both rows")

    run(loop, scenario())
    flat, nested = row_texts(window, FLAT["ident"]), row_texts(window, NESTED["ident"])
    del flat["Ident"], nested["Ident"], flat["Last seen"], nested["Last seen"]
    assert flat == nested


def test_selecting_a_row_focuses_the_map_and_a_marker_click_selects_the_row(loop, make_window) -> None:
    window = make_window()
    url = window.urls()[0]
    far = FLAT | {"ident": "far", "device.name": "Far away", "position.latitude": -33.9, "position.longitude": 18.4}

    async def scenario() -> None:
        assert await post(url, [FLAT, far]) == 200
        await wait_until(lambda: window.map.is_ready, what="map page")
        state = await wait_until_state(window, lambda s: s["devices"] == 2)
        assert state["positions"]["far"] == [-33.9, 18.4]
        await wait_until(lambda: window.device_proxy.rowCount() == 2, what="both rows in the table")
        source = window.device_model.index(window.device_model.rows["far"], 0)
        window.device_table.selectRow(window.device_proxy.mapFromSource(source).row())
        state = await wait_until_state(window, lambda s: s["selected"] == "far")
        assert abs(state["center"][0] + 33.9) < 0.01 and abs(state["center"][1] - 18.4) < 0.01
        assert state["zoom"] >= 15
        # Clicking the other marker on the page selects its row in the table (markers outside the
        # view are not drawn: fit both in first).
        await js(window, "trackmon.fitAll()")
        await js(window, f"document.querySelector('.tm-marker[data-id=\"{FLAT['ident']}\"]')"
                         ".closest('.leaflet-marker-icon').click()")
        await wait_until(lambda: window.selected == FLAT["ident"], what="selection from the map")
        current = window.device_table.currentIndex()
        assert current.siblingAtColumn(COLUMN["Ident"]).data() == FLAT["ident"]

    run(loop, scenario())


async def wait_until_state(window, predicate, timeout: float = 20) -> dict:
    latest: dict = {}

    async def check() -> bool:
        latest.update(await map_state(window))
        return predicate(latest)

    import asyncio
    import time
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"map state never matched: {latest}"
        await asyncio.sleep(0.1)
    return latest


def test_invalid_fixes_are_never_drawn(loop, make_window) -> None:
    window = make_window()
    url = window.urls()[0]
    bad = [FLAT | {"ident": "zero", "position.latitude": 0, "position.longitude": 0},
           FLAT | {"ident": "invalid", "position.valid": False},
           {k: v for k, v in FLAT.items() if not k.startswith("position.l")} | {"ident": "missing"}]

    async def scenario() -> None:
        assert await post(url, [*bad, FLAT]) == 200
        await wait_until(lambda: window.device_model.rowCount() == 4, what="four rows")
        state = await wait_until_state(window, lambda s: s["devices"] >= 1)
        await __import__("asyncio").sleep(0.5)
        state = await map_state(window)
        assert set(state["positions"]) == {FLAT["ident"]}

    run(loop, scenario())
    assert row_texts(window, "zero")["Position"] == "no fix"


def test_requests_panel_lists_a_401_and_a_400_with_reasons(loop, make_window) -> None:
    window = make_window()
    url = window.urls()[0]

    async def scenario() -> None:
        assert await post(url, [FLAT], token=None) == 401
        assert await post(url, raw=b'[{"ident": ', token=TOKEN) == 400
        assert await post(url, [FLAT]) == 200
        await wait_until(lambda: window.requests_model.rowCount() == 3, what="three requests")

    run(loop, scenario())
    model = window.requests_model
    rows = [[model.index(r, c).data() for c in range(model.columnCount())] for r in range(3)]
    assert [r[3] for r in rows] == ["401", "400", "200"]
    assert "missing header Authorization" in rows[0][7]
    assert "invalid JSON" in rows[1][7]
    assert model.index(0, 0).data(Qt.ItemDataRole.BackgroundRole) is not None  # highlighted
    assert model.index(2, 0).data(Qt.ItemDataRole.BackgroundRole) is None


def test_requests_panel_shows_how_often_a_refusal_was_repeated(loop, make_window) -> None:
    window = make_window()
    url = window.urls()[0]

    async def scenario() -> None:
        for _ in range(3):
            assert await post(url, [FLAT], token="wrong") == 401
        await wait_until(lambda: window.requests_model.rowCount() == 3, what="three refusals")

    run(loop, scenario())
    model = window.requests_model
    notes = [model.index(r, 7).data() for r in range(3)]
    assert notes[0].startswith("header Authorization does not match")
    assert notes[1].startswith("×2 ") and notes[2].startswith("×3 ")


def test_requests_keep_appearing_frame_after_frame(loop, make_window) -> None:
    window = make_window()
    url = window.urls()[0]

    async def scenario() -> None:
        for i in range(4):
            assert await post(url, [FLAT | {"timestamp": 1700000000 + i}]) == 200
            await __import__("asyncio").sleep(0.25)  # several frames pass between requests
        await wait_until(lambda: window.requests_model.rowCount() == 4, what="all four requests")

    run(loop, scenario())


def test_hostile_device_strings_render_as_text_everywhere(loop, make_window) -> None:
    window = make_window()
    url = window.urls()[0]
    name = '<img src=x onerror="window.__xss=1">'
    ident = "<b>id</b><script>window.__xss=2</script>"
    evil = FLAT | {"ident": ident, "device.name": name, "custom.note": "<i>note</i>"}

    async def scenario() -> None:
        assert await post(url, [evil]) == 200
        await wait_until(lambda: window.device_model.rowCount() == 1, what="the row")
        await wait_until(lambda: window.map.is_ready, what="map page")
        state = await wait_until_state(window, lambda s: s["devices"] == 1)
        assert state["labels"] == [name]
        window.map.call("openPopup", ident)
        popup = await wait_until_js(window, "document.querySelector('.tm-popup') && "
                                            "document.querySelector('.tm-popup').textContent")
        assert name in popup and ident in popup
        window.device_table.selectRow(0)
        await wait_until(lambda: window.inspector.table.rowCount() > 5, what="inspector")
        await __import__("asyncio").sleep(0.3)
        assert await js(window, "document.querySelectorAll('img[src=x], .leaflet-pane b, i').length") == 0
        assert await js(window, "typeof window.__xss") == "undefined"

    run(loop, scenario())
    row = row_texts(window, ident)
    assert row["Ident"] == ident and row["Name"] == name
    tooltip = window.device_model.index(0, COLUMN["Name"]).data(Qt.ItemDataRole.ToolTipRole)
    assert "&lt;img" in tooltip and "<img" not in tooltip
    table = window.inspector.table
    values = {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}
    assert values["device.name"] == name and values["custom.note"] == "<i>note</i>"
    assert window.inspector.title.textFormat() == Qt.TextFormat.PlainText
    assert orjson.loads(window.inspector.raw_text()) == evil  # exactly what was sent


async def wait_until_js(window, script: str, timeout: float = 10):
    import asyncio
    import time
    deadline = time.monotonic() + timeout
    while True:
        value = await js(window, script)
        if value:
            return value
        assert time.monotonic() < deadline, f"never true: {script}"
        await asyncio.sleep(0.1)


def test_window_starts_offline_and_shows_the_map(loop, make_window) -> None:
    window = make_window()

    async def scenario() -> None:
        await wait_until(lambda: window.map.is_ready, what="map page ready without network")
        assert await js(window, "!!document.querySelector('.leaflet-container .leaflet-control-scale')")
        assert await js(window, "[...document.scripts].every(s => !s.src || s.src.startsWith('file:'))")
        assert (await map_state(window))["devices"] == 0

    run(loop, scenario())
    assert window.left.currentIndex() == 0  # the connection panel until data arrives
    urls = [window.connection.urls_box.itemAt(i).layout().itemAt(0).widget().text()
            for i in range(window.connection.urls_box.count())]
    assert urls == window.urls() and urls[0].startswith("http://127.0.0.1:")
    header = window.connection.header_box.itemAt(0).layout().itemAt(0).widget().text()
    assert header == f"Authorization: Bearer {TOKEN}"


def test_occupied_port_is_reported_and_another_can_be_chosen(loop, make_window) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        window = make_window(port=port)
        assert window.service is None
        assert f"port {port}" in window.listen_error and "in use" in window.listen_error
        assert not window.connection.error_box.isHidden()
        assert "Not listening" in window.status_urls.text()
        window.apply_settings(window.with_settings(port=0))

        async def scenario() -> None:
            await wait_until(lambda: window.service is not None, what="listener on a new port")
            assert await post(window.urls()[0], [FLAT]) == 200

        run(loop, scenario())
    assert window.listen_error == "" and window.connection.error_box.isHidden()


def test_demo_feed_fills_the_window_and_stops(loop, make_window) -> None:
    window = make_window()

    async def scenario() -> None:
        window.toggle_demo()
        await wait_until(lambda: window.device_model.rowCount() >= 5, timeout=30, what="demo devices")
        await window.stop_demo()
        window.frame()

    run(loop, scenario())
    assert window.demo_task is None and "Start" in window.demo_action.text()
    assert window.fleet.total > 0 and window.log_model.rowCount() == window.fleet.total


def make_mbtiles(path, image_png: bytes) -> None:
    import sqlite3
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE metadata (name TEXT, value TEXT);"
                       "CREATE TABLE tiles (zoom_level INT, tile_column INT, tile_row INT, tile_data BLOB);")
    conn.executemany("INSERT INTO metadata VALUES (?, ?)", [("name", "test"), ("format", "png"),
                                                            ("attribution", "local test tiles")])
    for z in range(0, 4):
        for x in range(1 << z):
            for y in range(1 << z):
                conn.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", (z, x, y, image_png))
    conn.commit()
    conn.close()


def test_offline_mbtiles_file_is_the_base_layer(loop, make_window, tmp_path) -> None:
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtGui import QColor, QImage
    image = QImage(256, 256, QImage.Format.Format_RGB32)
    image.fill(QColor("#4caf50"))
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    path = tmp_path / "offline.mbtiles"
    make_mbtiles(path, bytes(data))
    window = make_window(mbtiles=str(path))

    async def scenario() -> None:
        await wait_until(lambda: window.map.is_ready, what="map page")
        loaded = await wait_until_js(window, "[...document.querySelectorAll('img.leaflet-tile-loaded')]"
                                             ".filter(t => t.src.startsWith('mbtiles:')).length")
        assert loaded > 0
        assert "local test tiles" in await js(window, "document.querySelector('.leaflet-control-attribution')"
                                                      ".textContent")

    run(loop, scenario())


def test_unusable_mbtiles_file_falls_back_with_a_message(loop, make_window, tmp_path) -> None:
    junk = tmp_path / "junk.mbtiles"
    junk.write_text("not sqlite")
    window = make_window(mbtiles=str(junk))
    assert "Offline map not used" in window.statusBar().currentMessage()


def test_without_tiles_the_map_says_so(loop, make_window) -> None:
    window = make_window()

    async def scenario() -> None:
        await wait_until(lambda: window.map.is_ready, what="map page")
        banner = await wait_until_js(window, "document.querySelector('.tm-banner') && "
                                             "document.querySelector('.tm-banner').textContent")
        assert "No map tiles" in banner

    run(loop, scenario())


def test_log_filter_takes_words_or_expressions_and_shows_errors(loop, make_window) -> None:
    window = make_window()
    url = window.urls()[0]

    async def scenario() -> None:
        batch = [FLAT | {"timestamp": 1700000000 + i, "position.speed": float(i * 10)} for i in range(10)]
        assert await post(url, batch) == 200
        await wait_until(lambda: window.log_model.rowCount() == 10, what="log rows")

    run(loop, scenario())
    window.log_filter.setText("position.speed >= 50 and engine.ignition.status == true")
    assert window.log_proxy.rowCount() == 5 and window.log_filter_error.text() == ""
    window.log_filter.setText("position.speed >")
    assert window.log_proxy.rowCount() == 0 and "expected a value" in window.log_filter_error.text()
    window.log_filter.setText("Truck 7")
    assert window.log_proxy.rowCount() == 10


def test_health_badge_and_panel_link_to_the_offending_message(loop, make_window) -> None:
    window = make_window()
    url = window.urls()[0]
    track = [FLAT | {"timestamp": 1700000000 + i * 10, "position.latitude": 49.0 + i * 1e-4} for i in range(12)]
    track[7]["position.latitude"] += 0.5  # a jump there and back

    async def scenario() -> None:
        calm = FLAT | {"ident": "calm", "timestamp": time.time()}  # recent: nothing to report
        assert await post(url, [*track, calm]) == 200
        await wait_until(lambda: window.device_model.rowCount() == 2 and window.log_model.rowCount() == 13,
                         what="rows and log")

    run(loop, scenario())
    row = row_texts(window, FLAT["ident"])
    assert row["Health"] == "✖ Position jumps" and row_texts(window, "calm")["Health"] == "✓ ok"
    window.device_model.sort(COLUMN["Health"], Qt.SortOrder.DescendingOrder)
    assert window.device_model.idents[0] == FLAT["ident"]  # worst first
    window.select_device(FLAT["ident"])
    window.side_tabs.setCurrentWidget(window.health_panel)
    panel = window.health_panel
    # The full report comes with the next frame from the folding process.
    run(loop, wait_until(lambda: panel.checks.rowCount() > 0, what="the selected device's health report"))
    assert panel.checks.item(0, 0).text() == "Position jumps" and panel.checks.item(0, 2).text() == "2"
    assert "km/h implied" in panel.occurrences.item(0, 1).text()
    assert sum(panel.histogram.counts) == 11
    panel.occurrences.cellDoubleClicked.emit(1, 0)  # the older occurrence: message 7
    current = window.log_table.currentIndex()
    entry = window.log_proxy.mapToSource(current).row()
    assert window.log_model.items[entry].message.ts == track[7]["timestamp"]
    assert window.side_tabs.currentWidget() is window.inspector


def test_charts_plot_a_devices_parameters_with_a_cursor(loop, make_window) -> None:
    window = make_window()
    url = window.urls()[0]
    track = [FLAT | {"timestamp": 1700000000 + i * 10, "position.speed": float(i), "ain#1": i % 2 == 0,
                     "battery.level": 100 - i} for i in range(30)]

    async def scenario() -> None:
        assert await post(url, track) == 200
        await wait_until(lambda: window.device_model.rowCount() == 1 and window.log_model.rowCount() == 30,
                         what="row and log")

    run(loop, scenario())
    window.tabs.setCurrentWidget(window.chart_panel)
    window.select_device(FLAT["ident"])
    panel = window.chart_panel
    keys = [panel.params.item(i).text() for i in range(panel.params.count())]
    assert {"position.speed", "ain#1", "battery.level"} <= set(keys) and "ident" not in keys
    panel.tick(["position.speed", "battery.level", "ain#1"])
    xs, ys = panel.curves["position.speed"].getData()
    assert list(ys) == [float(i) for i in range(30)] and xs[0] == 1700000000
    assert list(panel.curves["battery.level"].getData()[1]) == [100.0 - i for i in range(30)]
    assert set(panel.curves["ain#1"].getData()[1]) == {0.0, 1.0}
    window.log_table.selectRow(3)
    assert panel.cursor.isVisible() and panel.cursor.value() == track[3]["timestamp"]


def test_inspector_shows_what_changed_since_the_previous_message(loop, make_window) -> None:
    window = make_window()
    url = window.urls()[0]
    first = FLAT | {"timestamp": 1700000000, "custom.door": "closed", "old.param": 1}
    second = {k: v for k, v in FLAT.items() if k != "old.param"} | {"timestamp": 1700000010, "custom.door": "open",
                                                                    "alarm": True}

    async def scenario() -> None:
        assert await post(url, [first, second]) == 200
        await wait_until(lambda: window.device_model.rowCount() == 1, what="row")

    run(loop, scenario())
    window.select_device(FLAT["ident"])
    inspector = window.inspector
    inspector.changes_only.setChecked(True)
    table = inspector.table
    shown = {table.item(r, 0).text(): (table.item(r, 1).text(), table.item(r, 2).text(), table.item(r, 0).toolTip())
             for r in range(table.rowCount()) if not table.isRowHidden(r)}
    assert shown == {"alarm": ("true", "", "added"), "custom.door": ("open", "closed", "changed"),
                     "old.param": ("", "1", "removed"), "timestamp": ("1700000010", "1700000000", "changed")}
    inspector.changes_only.setChecked(False)
    assert sum(not table.isRowHidden(r) for r in range(table.rowCount())) == table.rowCount()


def test_a_recording_file_taken_away_is_shown_and_recording_resumes_when_it_is_back(loop, make_window) -> None:
    window = make_window()
    moved = window.db.with_name("moved-away.sqlite")

    async def scenario() -> None:
        url = window.urls()[0]
        assert await post(url, [{"ident": "before", "timestamp": 1_700_000_000}]) == 200
        window.db.rename(moved)
        assert await post(url, [{"ident": "while-gone", "timestamp": 1_700_000_001}]) == 503
        await wait_until(lambda: window.recording_banner.isVisible(), what="banner")
        assert "Not recording" in window.recording_banner.text()
        assert window.status_file.text().startswith("NOT recording:")
        moved.rename(window.db)
        assert await post(url, [{"ident": "while-gone", "timestamp": 1_700_000_001}]) == 200  # the re-send
        await wait_until(lambda: not window.recording_banner.isVisible(), what="banner gone")
        assert window.status_file.text().startswith("Recording")

    run(loop, scenario())
    run(loop, wait_until(lambda: set(window.live_fleet.devices) == {"before", "while-gone"}, what="both shown"))
    window.new_session()  # the session is over: its chunks are written at once

    def chunked() -> list[str]:
        return sorted(row[0] for row in window.reader.execute("SELECT ident FROM tracks"))

    run(loop, wait_until(lambda: chunked() == ["before", "while-gone"], what="the session's chunks"))


def test_charts_read_a_recording_moved_away_and_say_why_when_a_read_fails(loop, make_window, tmp_path) -> None:
    """Fix fields are charted from the recording file (the whole session). The window's reader
    holds the file it opened, so a file moved away (by mistake) is still charted. When a read does
    fail (here: a reader of a copy opened cold, the copy then moved away), a redraw says why instead
    of raising from its timer every few seconds; once the copy is back, the points come."""
    window = make_window()
    url = window.urls()[0]
    track = [FLAT | {"timestamp": 1700000000 + i * 10, "position.speed": float(i)} for i in range(20)]

    async def record() -> None:
        assert await post(url, track) == 200
        await wait_until(lambda: window.live_fleet.total == 20, what="the track")

    run(loop, record())
    window.tabs.setCurrentWidget(window.chart_panel)
    window.select_device(FLAT["ident"])
    panel = window.chart_panel
    with file_moved_away(window):
        panel.tick(["position.speed"])
        assert not panel.unreadable and panel.note.text().startswith("20 points")
    copy = tmp_path / "copy.sqlite"
    with closing(sqlite3.connect(window.db)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    panel.set_reader(sqlite3.connect(copy, check_same_thread=False))  # opened, nothing read yet
    copy.rename(tmp_path / "copy-away.sqlite")
    window._show_charts(force=True)
    assert panel.note.text().startswith("Could not read the recording") and panel.unreadable
    assert panel.curves["position.speed"].getData()[1] is None  # nothing plotted
    (tmp_path / "copy-away.sqlite").rename(copy)
    window._show_charts(force=True)
    assert not panel.unreadable and panel.note.text().startswith("20 points")
    assert len(panel.curves["position.speed"].getData()[1]) == 20


def speed_track(base: float) -> list[dict]:
    """Twenty messages of one device, 10 s apart, speeds ``base`` … ``base`` + 19."""
    return [FLAT | {"timestamp": 1700000000 + i * 10, "position.speed": base + i} for i in range(20)]


def replace_recording_file(loop, window, url: str) -> None:
    """Another recording takes the window's path (moved away, a new one made there); a track of
    speeds 100–119 is then recorded into its session 1, and the window's readers move to it."""
    window.db.rename(window.db.with_name("old.sqlite"))
    other = window.db.with_name("other.sqlite")
    Recorder(other).close()
    other.rename(window.db)

    async def second() -> None:
        assert await post(url, speed_track(100.0)) == 200
        await wait_until(lambda: window.live_fleet.total == 20 and window.live_feed.caught_up()
                         and window.live_fleet.devices[FLAT["ident"]].latest.speed == 119.0, what="the new track")

    run(loop, second())
    window.tick()


def test_charts_of_a_recording_file_replaced_by_another_show_the_new_files_points(loop, make_window) -> None:
    """The recording file is replaced by another (moved away, a new one made at the path); the
    recorder moves to it, where session 1 is another session: the chart must not keep points read
    from the old file under the same session id."""
    window = make_window()
    url = window.urls()[0]
    run(loop, post(url, speed_track(0.0)))
    run(loop, wait_until(lambda: window.live_fleet.total == 20, what="the first file's track"))
    window.tabs.setCurrentWidget(window.chart_panel)
    window.select_device(FLAT["ident"])
    panel = window.chart_panel
    panel.tick(["position.speed"])
    assert list(panel.curves["position.speed"].getData()[1]) == [float(i) for i in range(20)]
    replace_recording_file(loop, window, url)
    window.select_device(FLAT["ident"])  # the views started over with the new file's session
    panel.tick(["position.speed"])
    assert list(panel.curves["position.speed"].getData()[1]) == [100.0 + i for i in range(20)]


def test_a_replay_is_closed_when_the_recording_file_is_replaced_by_another(loop, make_window) -> None:
    """A replay shows a session of the file it was opened on. When the recording file is replaced
    by another (the recorder moves to it, where session 1 is another session), its seeks would read
    the new file while its chart read the old one: the replay is closed, and says why, and the
    views (the chart too) show the new file's live session."""
    window = make_window()
    url = window.urls()[0]
    run(loop, post(url, speed_track(0.0)))
    run(loop, wait_until(lambda: window.live_fleet.total == 20, what="the first file's track"))
    enter_replay(loop, window, 1)
    window.tabs.setCurrentWidget(window.chart_panel)
    window.select_device(FLAT["ident"], focus_map=False)
    panel = window.chart_panel
    panel.tick(["position.speed"])
    assert list(panel.curves["position.speed"].getData()[1]) == [float(i) for i in range(20)]
    replace_recording_file(loop, window, url)
    assert window.replay is None and window.fleet is window.live_fleet and "REPLAY" not in window.windowTitle()
    assert window.statusBar().currentMessage().startswith("The recording file was replaced by another")
    assert window.side_tabs.currentWidget() is window.inspector  # not the replay's trips any more
    window.select_device(FLAT["ident"], focus_map=False)
    panel.tick(["position.speed"])
    assert list(panel.curves["position.speed"].getData()[1]) == [100.0 + i for i in range(20)]


def test_raw_json_reads_a_recording_moved_away_and_says_why_when_it_cannot(loop, make_window) -> None:
    """The raw view reads the message byte for byte from its stored batch, through the window's
    reader, which holds the file it opened: a file moved away still shows it. A message whose batch
    cannot be read (here: a batch the file does not hold) makes the button say why, instead of
    raising out of the click and showing nothing."""
    window = make_window()

    async def record() -> None:
        assert await post(window.urls()[0], [FLAT]) == 200
        await wait_until(lambda: window.device_model.rowCount() == 1, what="the row")

    run(loop, record())
    window.select_device(FLAT["ident"])
    with file_moved_away(window):
        seen = answer_modal("Close")
        window.inspector.raw_button.click()
        assert seen and orjson.loads(seen[0].exact)["ident"] == FLAT["ident"]
    latest = window.live_fleet.devices[FLAT["ident"]]
    window.inspector.show_entry(LogEntry(0, latest.last_seen, latest.latest, 10**6, 0), None, "not stored")
    seen = answer_modal("Close")
    window.inspector.raw_button.click()
    assert seen and seen[0].text.toPlainText() == ("Could not read this message from the recording: "
                                                   "batch 1000000 is not in this recording file")


def test_a_copy_restored_over_the_recording_while_nothing_arrives_is_what_the_dialogs_read(loop, make_window,
                                                                                          tmp_path) -> None:
    """A user restores a copy over the recording file while no stream sends: the old file's -wal is
    still beside the copy, and a dialog reading the path would take the old file's sessions for the
    copy's. The export dialog, the first to read, has the window move to the copy (no red banner),
    offers the copy's session 1 and exports the copy's points; the sessions dialog lists the copy's
    sessions and the one recording goes on in."""
    window = make_window()
    url = window.urls()[0]
    run(loop, post(url, speed_track(0.0)))
    run(loop, wait_until(lambda: window.live_fleet.total == 20, what="the first file's track"))
    window.recorder.rename_session(window.recorder.session_id, "field test")
    other = window.db.with_name("other.sqlite")
    copy = Recorder(other)
    copy.rename_session(copy.start_session(), "restored copy")
    body = orjson.dumps(speed_track(100.0))
    now = time.time()
    copy.write_batch(now, "127.0.0.1", len(body), body, normalize_batch(orjson.loads(body), now, body), 1.0)
    copy.close()
    window.db.rename(window.db.with_name("old.sqlite"))
    other.rename(window.db)
    dialog = window.open_export(1)
    run(loop, wait_until(lambda: not dialog.reading, what="the session's devices"))
    assert dialog.windowTitle() == "Export session 1 · restored copy" and dialog.source == file_id(window.db)
    window.tick()
    assert window.recorder.problem is None and not window.recording_banner.isVisible()
    assert window.reader.file == file_id(window.db)
    dialog.format.setCurrentText("csv")
    target = tmp_path / "restored.csv"
    dialog.path.setText(str(target))
    dialog.start()
    run(loop, wait_until(lambda: dialog.thread is None, timeout=30, what="the export"))
    with open(target, newline="", encoding="utf-8") as exported:
        assert [float(row["speed_kmh"]) for row in csv.DictReader(exported)] == [100.0 + i for i in range(20)]
    browser = window.open_sessions()
    run(loop, wait_until(lambda: not browser.reading, what="the session list read"))
    listed = sorted((browser.table.item(r, 0).text(), browser.table.item(r, 1).text())
                    for r in range(browser.table.rowCount()))
    assert listed == [("1", "restored copy"), ("2", "field test")]
    browser.close()
    dialog.close()


def test_the_sessions_dialog_acts_on_no_session_of_a_file_replaced_while_it_is_open(loop, make_window) -> None:
    """The sessions are listed; then a copy is restored over the recording, where session 1 is
    another session. Replay, export, rename… on "session 1" as listed would act on the copy's:
    the dialog says the file was replaced, reads the list again and acts on nothing."""
    window = make_window()
    run(loop, post(window.urls()[0], speed_track(0.0)))
    run(loop, wait_until(lambda: window.live_fleet.total == 20, what="the first file's track"))
    window.recorder.rename_session(window.recorder.session_id, "field test")
    browser = window.open_sessions()
    run(loop, wait_until(lambda: not browser.reading, what="the session list read"))
    browser.table.selectRow(0)
    assert browser.chosen() is not None and browser.chosen().name == "field test"
    other = window.db.with_name("other.sqlite")
    copy = Recorder(other)
    copy.rename_session(copy.start_session(), "restored copy")
    copy.rename_session(copy.start_session(), "second copy")
    copy.close()
    window.db.rename(window.db.with_name("old.sqlite"))
    other.rename(window.db)
    replays: list[int] = []
    browser.replay_requested.connect(replays.append)
    browser.actions["Replay"].click()
    assert replays == [] and browser.isVisible()
    assert browser.file_label.text().startswith(f"The recording file {window.db} was replaced by another file")
    run(loop, wait_until(lambda: not browser.reading, what="the list read again"))
    listed = sorted((browser.table.item(r, 0).text(), browser.table.item(r, 1).text())
                    for r in range(browser.table.rowCount()))
    assert listed == [("1", "restored copy"), ("2", "second copy"), ("3", "field test")]
    assert browser.file == file_id(window.db)
    assert browser.selected().name == "second copy"  # not "session 1" again: the newest closed one, as at first
    browser.close()
