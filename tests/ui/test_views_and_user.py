"""The views do not fight the user: filtering keeps the selection, rows hold still under the
pointer, *Selected device only* says when there is no selection, the timeline seeks where it is
clicked, and the Health tab warns only about persistent problems. Real window, offscreen."""

from __future__ import annotations

import time

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QEnterEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from app.core.health import CHECKS, HealthThresholds
from app.ui.device_model import COLUMNS
from app.ui.health_panel import shown_bins
from app.ui.health_rules import HealthRulesDialog, load_thresholds, save_thresholds
from app.ui.replay import SLIDER_STEPS
from tests.ui.conftest import enter_replay, health_shown, post, run, wait_until
from tests.ui.test_replay_sessions import T0, recorded_window

COLUMN = {column[0]: i for i, column in enumerate(COLUMNS)}


def unit(ident: str, name: str, t: float, lat: float = 49.0, **extra) -> dict:
    return {"ident": ident, "device.name": name, "timestamp": t, "position.latitude": lat,
            "position.longitude": 28.6, "position.satellites": 11, "position.hdop": 0.9, **extra}


def fleet_window(loop, make_window, names: list[str]):
    window = make_window()
    now = time.time()
    batch = [unit(f"id{i}", name, now - 5 * i, 49.0 + i * 0.01) for i, name in enumerate(names)]

    async def feed() -> None:
        assert await post(window.urls()[0], batch) == 200
        await wait_until(lambda: window.device_model.rowCount() == len(names)
                         and window.log_model.rowCount() == len(names), what="rows and log")

    run(loop, feed())
    return window


def row_of(window, ident: str) -> int:
    model = window.device_model
    return window.device_proxy.mapFromSource(model.index(model.rows[ident], 0)).row()


def test_typing_in_the_device_filter_keeps_the_selected_device(loop, make_window) -> None:
    window = fleet_window(loop, make_window, ["Alpha", "Bravo", "Charlie", "Delta"])
    window.device_table.selectRow(row_of(window, "id2"))
    assert window.selected == "id2"
    shown = []
    for letter in "Bravo":  # the selected Charlie is hidden at once, Bravo remains
        QTest.keyClicks(window.device_filter, letter)
        QTest.qWait(20)
        shown.append(window.selected)
    assert shown == ["id2"] * 5  # still Charlie: the map does not jump, the inspector does not switch
    assert window.device_proxy.rowCount() == 1 and not window.device_table.currentIndex().isValid()
    assert "Charlie" in window.inspector.title.text()
    window.device_filter.clear()  # Charlie shows again, highlighted
    QTest.qWait(20)
    assert window.selected == "id2" and window.device_table.currentIndex().row() == row_of(window, "id2")
    # A click on another row still selects it.
    window.device_filter.setText("a")
    QTest.qWait(20)
    window.device_table.selectRow(row_of(window, "id3"))
    assert window.selected == "id3"


def hover(widget, inside: bool) -> None:
    if inside:
        QApplication.sendEvent(widget, QEnterEvent(QPointF(5, 5), QPointF(5, 5), QPointF(5, 5)))
    else:
        QApplication.sendEvent(widget, QEvent(QEvent.Type.Leave))


def test_rows_sorted_by_last_seen_hold_still_under_the_pointer(loop, make_window) -> None:
    window = fleet_window(loop, make_window, ["Alpha", "Bravo", "Charlie", "Delta"])
    table = window.device_table
    table.sortByColumn(COLUMN["Last seen"], Qt.SortOrder.AscendingOrder)  # most recent first
    order = [window.device_model.idents[r] for r in range(4)]
    assert order == ["id0", "id1", "id2", "id3"]
    viewport = table.viewport()
    hover(viewport, True)  # the pointer is over the rows, about to click the first one

    async def newer() -> None:  # Delta reports: it is now the most recent
        assert await post(window.urls()[0], [unit("id3", "Delta", time.time() + 1, 49.03)]) == 200
        await wait_until(lambda: window.device_model.fleet.devices["id3"].count == 2, what="Delta's report")

    run(loop, newer())
    window.frame()
    window.tick()  # the once-a-second re-sort
    assert [window.device_model.idents[r] for r in range(4)] == order  # held while the pointer is there
    rect = table.visualRect(table.model().index(0, COLUMN["Name"]))
    QTest.mouseClick(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    assert window.selected == "id0"  # the row the user aimed at
    hover(viewport, False)  # the pointer leaves: the deferred re-sort happens
    assert window.device_model.idents[0] == "id3" and window.selected == "id0"
    assert table.currentIndex().siblingAtColumn(COLUMN["Ident"]).data() == "id0"


def test_selected_device_only_says_when_nothing_is_selected(loop, make_window) -> None:
    window = fleet_window(loop, make_window, ["Alpha", "Bravo"])
    window.select_device("id1")
    window.log_selected_only.setChecked(True)
    window.frame()
    assert window.log_proxy.rowCount() == 1 and window.log_selected_only.text() == "Selected device only"
    window.new_session()  # the selection is gone with the fleet
    window.tick()
    assert window.selected is None and window.log_proxy.ident is None
    assert "none selected" in window.log_selected_only.text()

    async def more() -> None:
        later = time.time()
        assert await post(window.urls()[0], [unit("id0", "Alpha", later), unit("id5", "Echo", later)]) == 200
        await wait_until(lambda: window.log_model.rowCount() == 2, what="new messages")

    run(loop, more())
    window.frame()
    assert window.log_proxy.rowCount() == 2  # not filtered by a device no longer selected


def test_clicking_the_timeline_strip_or_groove_seeks(loop, make_window) -> None:
    window = recorded_window(loop, make_window)
    enter_replay(loop, window, 1)
    bar = window.replay_bar
    span = window.replay.source.end - window.replay.source.start
    QTest.qWait(50)
    strip = bar.strip
    QTest.mouseClick(strip, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(round((strip.width() - 1) * 0.75), strip.height() // 2))
    run(loop, wait_until(lambda: not window.replay.seeking, what="the seek"))
    assert abs(window.replay.t - (T0 + 0.75 * span)) < span / strip.width() * 2
    slider = bar.slider
    QTest.mouseClick(slider, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(round(slider.width() * 0.25), slider.height() // 2))
    run(loop, wait_until(lambda: not window.replay.seeking, what="the seek"))
    assert abs(window.replay.t - (T0 + 0.25 * span)) < span * 0.05
    assert abs(slider.value() - 0.25 * SLIDER_STEPS) < SLIDER_STEPS * 0.05


# -- the Health tab ------------------------------------------------------------------------------------

def test_health_warns_about_the_broken_tracker_only_and_the_rules_can_be_changed(loop, make_window) -> None:
    window = make_window()
    now = time.time() - 600
    messages = []
    for i in range(60):  # ten minutes, every 10 s
        t = now + i * 10
        weak = i % 15 == 0  # one weak fix in fifteen: noise
        messages.append(unit("fine", "Fine", t, 49.0 + i * 1e-4, **{"position.satellites": 3 if weak else 11}))
        messages.append(unit("dead", "Dead antenna", t, 49.1, **{"position.valid": False, "position.satellites": 0}))

    async def feed() -> None:
        assert await post(window.urls()[0], messages) == 200
        await wait_until(lambda: window.live_fleet.total == 120, what="messages")

    run(loop, feed())
    window.frame()
    health = {ident: window.device_model.index(row, COLUMN["Health"]).data()
              for ident, row in window.device_model.rows.items()}
    assert health == {"fine": "✓ ok", "dead": "▲ Invalid fixes"}
    window.side_tabs.setCurrentWidget(window.health_panel)
    window.select_device("fine")
    health_shown(loop, window, "fine")
    panel = window.health_panel
    assert panel.checks.rowCount() == len(CHECKS)  # every check, not only those that fired
    rows = {panel.checks.item(r, 0).text(): (panel.checks.item(r, 1).text(), panel.checks.item(r, 2).text())
            for r in range(panel.checks.rowCount())}
    assert rows["Few satellites"] == ("below threshold", "4") and rows["Position jumps"] == ("ok", "")
    assert "healthy" in panel.summary.text() and "25%" in panel.rules.text()
    # Stricter rules (as the dialog returns them): one weak fix in fifteen is now worth a warning.
    dialog = HealthRulesDialog(panel.thresholds)
    dialog.boxes["bad_share"].setValue(3)
    dialog.boxes["window_messages"].setValue(30)
    dialog.boxes["persist_s"].setValue(0)
    stricter = dialog.result_thresholds()
    assert (stricter.bad_share, stricter.window_messages, stricter.persist_s) == (0.03, 30, 0)
    panel.set_thresholds(stricter)

    async def one_more() -> None:  # judged from the next message on
        assert await post(window.urls()[0], [unit("fine", "Fine", now + 600, 49.01)]) == 200
        await wait_until(lambda: window.live_fleet.total == 121, what="one more message")

    run(loop, one_more())
    health_shown(loop, window, "fine")  # judged anew by the folding process
    window.frame()
    assert window.device_model.index(window.device_model.rows["fine"], COLUMN["Health"]).data() == "▲ Few satellites"
    assert panel.checks.item(0, 0).text() == "Few satellites" and panel.checks.item(0, 1).text() == "warning"


def test_health_tab_shows_the_checks_legibly_and_a_histogram_with_context(loop, make_window) -> None:
    window = make_window()
    start = time.time() - 300

    async def feed() -> None:
        assert await post(window.urls()[0], [unit("r", "Regular", start + 2 * i) for i in range(100)]) == 200
        await wait_until(lambda: window.live_fleet.total == 100, what="messages")

    run(loop, feed())
    window.frame()
    window.side_tabs.setCurrentWidget(window.health_panel)
    window.select_device("r")
    health_shown(loop, window, "r")
    QTest.qWait(50)
    panel = window.health_panel
    header = panel.checks.horizontalHeader()
    assert header.height() >= header.sizeHint().height()  # the header is not clipped
    assert panel.checks.viewport().height() >= 5 * panel.checks.rowHeight(0)  # at least five checks in view
    assert panel.summary.height() >= panel.summary.heightForWidth(panel.summary.width())  # summary not cut
    used = [i for i, c in enumerate(panel.histogram.counts) if c]
    assert len(used) == 1 and len(shown_bins(panel.histogram.counts)) >= 12  # one interval, shown among its bins


def test_the_health_tab_lists_new_occurrences_of_the_check_it_shows(loop, make_window) -> None:
    """The tab is refreshed every second; the occurrences of the check the user is looking at
    must follow, not only its count (they stayed as first shown)."""
    window = make_window()
    start = time.time() - 600

    def track(first: int) -> list[dict]:  # 12 fixes 10 s apart, one of them 50 km off: two jumps
        return [unit("j", "Jumpy", start + (first + i) * 10, 49.0 + (0.5 if i == 6 else i * 1e-4))
                for i in range(12)]

    async def feed(first: int, total: int) -> None:
        assert await post(window.urls()[0], track(first)) == 200
        await wait_until(lambda: window.live_fleet.total == total, what="messages")

    run(loop, feed(0, 12))
    window.frame()
    window.side_tabs.setCurrentWidget(window.health_panel)
    window.select_device("j")
    health_shown(loop, window, "j")
    panel = window.health_panel
    assert panel.checks.item(0, 0).text() == "Position jumps" and panel.occurrences.rowCount() == 2

    async def more() -> None:
        await feed(12, 24)
        await wait_until(lambda: panel.checks.item(0, 2).text() == "4", what="the tab's next refresh", timeout=10)

    run(loop, more())
    assert panel.checks.item(0, 0).text() == "Position jumps"
    assert panel.occurrences.rowCount() == 4


def test_health_rules_are_kept_between_runs(tmp_path) -> None:
    from PySide6.QtCore import QSettings

    store = QSettings(str(tmp_path / "t.ini"), QSettings.Format.IniFormat)
    assert load_thresholds(store) == HealthThresholds()
    rules = HealthThresholds(min_satellites=6, bad_share=0.4, events_window_s=1200)
    save_thresholds(store, rules)
    again = QSettings(str(tmp_path / "t.ini"), QSettings.Format.IniFormat)
    assert load_thresholds(again) == rules
    again.setValue("health/persist_s", "not a number")
    assert load_thresholds(again).persist_s == HealthThresholds().persist_s
