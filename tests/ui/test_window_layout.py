"""The window's views are legible: charts, tables, inspector, menu bar, copy feedback."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QPushButton, QSplitter

import app
from app.ui.export_dialog import ExportDialog
from app.ui.menu_bar import about_text, shortcuts_text
from tests.ui.conftest import post, run, wait_until

TRUCK = {"ident": "352625333222111", "device.name": "Refrigerated truck 7", "position.latitude": 49.07,
         "position.longitude": 28.63, "position.speed": 76.4, "position.direction": 271, "battery.level": 80}


def track(n: int, gap_after: int | None = None) -> list[dict]:
    out = []
    t = 1_700_000_000
    for i in range(n):
        t += 10 if i != gap_after else 3600
        out.append(TRUCK | {"timestamp": t, "position.speed": 70.0 + i, "battery.level": 80 - i})
    return out


def fed(loop, window, messages: list[dict]) -> None:
    async def scenario() -> None:
        assert await post(window.urls()[0], messages) == 200
        await wait_until(lambda: window.log_model.rowCount() == len(messages), what="messages in the log")

    run(loop, scenario())
    window.tick()


@pytest.fixture
def large_font(qapp) -> Iterator[None]:
    """A desktop with larger text (or a HiDPI one): columns must still fit what they show."""
    classes = ("QAbstractItemView", "QHeaderView")  # the platform theme gives views their own font
    defaults = [qapp.font(), *(qapp.font(name) for name in classes)]
    large = qapp.font(classes[0])
    large.setPointSize(14)
    qapp.setFont(large)
    for name in classes:
        qapp.setFont(large, name)
    yield
    qapp.setFont(defaults[0])
    for name, font in zip(classes, defaults[1:], strict=True):
        qapp.setFont(font, name)


def test_the_log_reads_speeds_in_full_and_the_device_table_shows_speed_without_scrolling(loop, large_font,
                                                                                         make_window) -> None:
    window = make_window()
    assert window.log_table.font().pointSize() == 14
    fed(loop, window, [TRUCK | {"timestamp": 1_700_000_000}])
    log = window.log_table
    text = window.log_proxy.index(0, 6).data()
    assert text == "76 km/h"
    assert log.fontMetrics().horizontalAdvance(text) + 8 <= log.columnWidth(6)  # not elided to '76 k…'
    table = window.device_table
    header = table.horizontalHeader()
    titles = [window.device_model.headerData(c, Qt.Orientation.Horizontal) for c in range(header.count())]
    for title in ("Name", "Ident", "Speed", "Heading"):
        column = titles.index(title)
        right = header.sectionViewportPosition(column) + header.sectionSize(column)
        assert right <= table.viewport().width(), f"{title} needs scrolling"
    name = titles.index("Name")
    assert table.fontMetrics().horizontalAdvance("Refrigerated truck 7") + 8 <= table.columnWidth(name)
    assert table.textElideMode() == Qt.TextElideMode.ElideMiddle


def test_chart_colours_stay_units_get_their_own_axes_lines_break_at_gaps(loop, make_window) -> None:
    window = make_window()
    fed(loop, window, track(30, gap_after=15))
    window.tabs.setCurrentWidget(window.chart_panel)
    window.select_device(TRUCK["ident"])
    panel = window.chart_panel
    assert panel.title.text() == "Refrigerated truck 7 · 352625333222111"
    panel.tick(["position.speed"])
    speed_pen = panel.curves["position.speed"].opts["pen"].color().name()
    panel.tick(["battery.level", "position.speed"])  # one added (sorted before it)
    assert panel.curves["position.speed"].opts["pen"].color().name() == speed_pen
    assert panel.curves["battery.level"].opts["pen"].color().name() != speed_pen
    assert set(panel.plots) == {"km/h", "%"}  # separate axes
    assert panel.plots["km/h"].getAxis("left").labelText == "km/h"
    speed_plot = panel.curves["position.speed"].getViewBox()
    assert speed_plot is not panel.curves["battery.level"].getViewBox()
    ys = panel.curves["battery.level"].yData
    assert sum(math.isnan(y) for y in ys) == 1  # the hour without messages is a break in the line


def test_the_inspector_shows_a_screenful_and_splitters_remember_their_size(loop, make_window, tmp_path) -> None:
    store = QSettings(str(tmp_path / "layout.ini"), QSettings.Format.IniFormat)
    window = make_window(store=store)
    fed(loop, window, [TRUCK | {"timestamp": 1_700_000_000, **{f"can.sensor.{i}": i for i in range(30)}}])
    window.select_device(TRUCK["ident"])
    table = window.inspector.table
    assert table.viewport().height() // table.rowHeight(0) >= 10
    main: QSplitter = window.side_tabs.parent().parent()
    main.setSizes([main.height() - 600, 600])  # the user gives the bottom half more room
    QTest.qWait(300)  # laid out (the map's page sets its own minimum meanwhile)
    main.splitterMoved.emit(main.sizes()[0], 1)  # as the end of a drag does
    chosen = main.sizes()
    second = make_window(store=store)
    QTest.qWait(300)
    assert second.side_tabs.parent().parent().sizes() == chosen
    third = make_window()  # no settings file: the default layout
    QTest.qWait(300)
    assert third.side_tabs.parent().parent().sizes() != chosen


def test_the_menu_bar_offers_file_view_tools_help_with_standard_shortcuts(loop, make_window) -> None:
    window = make_window()
    menus = {a.text().replace("&", ""): a.menu() for a in window.menuBar().actions()}
    assert list(menus) == ["File", "View", "Tools", "Help"]
    file_items = {a.text().replace("&", ""): a for a in menus["File"].actions() if a.text()}
    assert {"New session…", "Open session…", "Import GPX/CSV…", "Export current session…", "Quit"} <= set(file_items)
    assert not file_items["Quit"].shortcut().isEmpty()
    assert "Ctrl+Q" in shortcuts_text(window.menuBar()) and "Ctrl+N" in shortcuts_text(window.menuBar())
    assert app.__version__ in about_text()
    file_items["Export current session…"].trigger()
    dialogs = window.findChildren(ExportDialog)
    assert dialogs and dialogs[-1].isVisible()
    dialogs[-1].close()
    window.menu_actions["tab-2"].trigger()
    assert window.tabs.currentWidget() is window.chart_panel
    file_items["Quit"].trigger()
    assert window.closed.is_set()


def test_copy_says_it_copied(loop, make_window) -> None:
    window = make_window()
    [url_copy, _header] = window.connection.copy_buttons()
    url_copy.click()
    assert QGuiApplication.clipboard().text() == window.urls()[0]
    assert url_copy.text() == "Copied ✓"
    assert window.statusBar().currentMessage() == "Copied the URL to the clipboard"
    dialog = window.open_flespi()
    [copy_json] = [b for b in dialog.findChildren(QPushButton) if b.text() == "Copy JSON"]
    copy_json.click()
    assert copy_json.text() == "Copied ✓" and '"uri"' in QGuiApplication.clipboard().text()
    dialog.close()
