"""The flespi dialogs and the stream-health panel in the real window (offscreen), against the
request-checking stand-in of flespi's REST API (tests/flespi_standin.py), whose HTTP stream
really delivers to the window's listener."""

from __future__ import annotations

import sqlite3
from collections import Counter

from PySide6.QtCore import Qt

from app.store.queries import iter_messages, list_sessions
from tests.flespi_standin import TOKEN as FLESPI_TOKEN
from tests.flespi_standin import running_standin
from tests.ui.conftest import run, wait_until

T0 = 1_700_000_000.0


def seed(state) -> None:
    state.channels.update({5: {"id": 5, "name": "teltonika"}})
    state.add_device(11, "van 1", "3520001", channel_id=5)
    state.add_device(12, "van 2", "3520002", channel_id=5)
    state.groups[70] = {"id": 70, "name": "north", "devices": [12]}
    state.store(11, [{"timestamp": T0 + i * 10, "position.latitude": 50 + i / 1000, "position.longitude": 4.0,
                      "seq": i} for i in range(30)])


def tick(widget, ids) -> None:
    for row in range(widget.count()):
        item = widget.item(row)
        if item.data(Qt.ItemDataRole.UserRole) in ids:
            item.setCheckState(Qt.CheckState.Checked)


def test_set_up_subscribe_and_test_through_flespi(loop, make_window) -> None:
    window = make_window()
    with running_standin() as standin:
        standin.call(seed, standin.state)

        async def scenario() -> None:
            dialog = window.open_flespi()
            assert "enter a token" in dialog.json.toPlainText()  # no protocol id without flespi
            dialog.api.setText(standin.url)
            dialog.token.setText(FLESPI_TOKEN)
            dialog.load_button.click()
            await wait_until(lambda: dialog.lists["devices"].count() == 2, what="devices listed")
            assert '"protocol_id": 1' in dialog.json.toPlainText()
            assert dialog.lists["channels"].count() == 1 and dialog.lists["groups"].count() == 1
            tick(dialog.lists["devices"], {11})
            tick(dialog.lists["channels"], {5})
            assert "van 1 also reaches flespi through a chosen channel" in dialog.duplicates.text()
            dialog.lists["channels"].item(0).setCheckState(Qt.CheckState.Unchecked)
            assert dialog.duplicates.text() == ""
            dialog.create_button.click()
            await wait_until(lambda: dialog.stream_id is not None or "Not done" in dialog.result.toPlainText(),
                             what="set-up")
            assert dialog.result.toPlainText().startswith("Created stream 1000"), dialog.result.toPlainText()
            assert "Subscribed to devices 11" in dialog.result.toPlainText()
            # The window now watches the stream's health from flespi's side.
            await wait_until(lambda: window.flespi_status.last is not None, what="first health check")
            assert not window.flespi_status.panel.isHidden() and "flespi: OK" in window.flespi_status.label.text()
            dialog.flespi_test_button.click()
            await wait_until(lambda: "delivered" in dialog.result.toPlainText()
                             or "did not arrive" in dialog.result.toPlainText(), timeout=40, what="flespi test")
            assert "flespi delivered the test to this listener" in dialog.result.toPlainText()
            # The documented route: messages posted into a subscribed device reach the stream too.
            dialog.test_route.setCurrentIndex(dialog.test_route.findData(11))
            assert dialog.test_route.currentText() == "via device van 1"
            dialog.result.setPlainText("")
            dialog.flespi_test_button.click()
            await wait_until(lambda: "delivered" in dialog.result.toPlainText()
                             or "did not arrive" in dialog.result.toPlainText(), timeout=40, what="device test")
            assert "flespi delivered the test to this listener" in dialog.result.toPlainText()
            dialog.close()

        run(loop, scenario(), timeout=90)
        stream = standin.state.streams[1000]
    assert stream["protocol_id"] == 1 and stream["configuration"]["uri"] == window.urls()[0]
    assert standin.state.subscriptions[1000] == {"devices": {11}}
    assert sum(ident.startswith("trackmon-test-") for ident in window.live_fleet.devices) == 2
    assert any(m.get("ident", "").startswith("trackmon-test-") for m in standin.state.messages[11])


def test_health_panel_shows_delivery_errors(loop, make_window) -> None:
    window = make_window()
    with running_standin() as standin:
        stream_id = standin.state.add_stream({"name": "trackmon", "protocol_id": 1, "configuration": {
            "uri": window.urls()[0], "headers": [{"name": "Authorization", "value": "Bearer wrong"}]}})
        standin.call(standin.state.enqueue, stream_id, [{"ident": "x", "timestamp": T0}])

        async def scenario() -> None:
            await wait_until(lambda: standin.state.logs.get(stream_id), what="a refused delivery")
            window.flespi_status.watch(FLESPI_TOKEN, standin.url, "trackmon")
            await wait_until(lambda: window.flespi_status.last is not None, what="health")
            panel = window.flespi_status.panel
            assert "queue 1" in panel.state.text()
            assert "Delivery errors in flespi's stream log" in panel.errors.text() and "HTTP 401" in panel.errors.text()
            assert window.flespi_status.label.text().startswith("flespi: delivery failing")
            window.flespi_status.watch("wrong-token", standin.url, stream_id)
            await wait_until(lambda: "Cannot check" in panel.state.text(), what="error shown")
            assert "did not accept the token" in panel.state.text() and "next try in 60 s" in panel.state.text()
            panel.stop.click()
            assert panel.isHidden() and window.flespi_status.poller is None

        run(loop, scenario(), timeout=60)


def test_import_from_flespi_into_a_new_and_the_live_session(loop, make_window) -> None:
    window = make_window()
    with running_standin() as standin:
        standin.call(seed, standin.state)

        async def scenario() -> None:
            dialog = window.open_flespi_pull()
            dialog.api.setText(standin.url)
            dialog.token.setText(FLESPI_TOKEN)
            dialog.load_button.click()
            await wait_until(lambda: dialog.list.count() == 2, what="devices")
            tick(dialog.list, {11})
            dialog.t_from.setDateTime(dialog.t_from.dateTime().fromSecsSinceEpoch(int(T0), dialog.t_from.timeZone()))
            dialog.t_to.setDateTime(dialog.t_to.dateTime().fromSecsSinceEpoch(int(T0 + 145), dialog.t_to.timeZone()))
            dialog.session_name.setText("van history")
            dialog.start_button.click()
            await wait_until(lambda: dialog.summary is not None, what="first import")
            assert dialog.result.text().startswith("15 messages recorded into session")
            assert dialog.progress.value() == 1000
            # Fill the live session from the same device: only the 15 not yet recorded are new.
            dialog.t_to.setDateTime(dialog.t_to.dateTime().fromSecsSinceEpoch(int(T0 + 1000),
                                                                                dialog.t_to.timeZone()))
            dialog.live_session.setChecked(True)
            dialog.summary = None
            dialog.start_button.click()
            await wait_until(lambda: dialog.summary is not None, what="live import")
            assert "15 messages recorded into session" in dialog.result.text()
            assert "15 were already in the recording" in dialog.result.text()
            await wait_until(lambda: window.live_fleet.total == 15, what="pulled pages in the views")
            assert "3520001" in window.live_fleet.devices
            dialog.close()

        run(loop, scenario(), timeout=60)
    conn = sqlite3.connect(window.db)
    sessions = {s.name: s for s in list_sessions(conn)}
    assert sessions["van history"].messages == 15
    counts = Counter(m.message.params["seq"] for s in sessions.values() for m in iter_messages(conn, s.id))
    assert sorted(counts) == list(range(30)) and set(counts.values()) == {1}


def test_cancelling_an_import_into_a_new_session_leaves_nothing(loop, make_window) -> None:
    window = make_window()
    with running_standin() as standin:
        standin.call(seed, standin.state)
        standin.state.store(11, [{"timestamp": T0 + 1000 + i, "seq": 100 + i} for i in range(3000)])
        standin.state.hold_pages_after = 1  # the second page does not come: the pull is mid-way

        async def scenario() -> None:
            dialog = window.open_flespi_pull()
            dialog.api.setText(standin.url)
            dialog.token.setText(FLESPI_TOKEN)
            dialog.load_button.click()
            await wait_until(lambda: dialog.list.count() == 2, what="devices")
            tick(dialog.list, {11})
            zone = dialog.t_from.timeZone()
            dialog.t_from.setDateTime(dialog.t_from.dateTime().fromSecsSinceEpoch(int(T0), zone))
            dialog.start_button.click()
            assert dialog.cancel_button.isEnabled() and not dialog.start_button.isEnabled()
            await wait_until(lambda: dialog.result.text().startswith("Device 1 of 1: 1,000 messages"),
                             what="the first page")
            dialog.cancel_button.click()
            await wait_until(lambda: dialog.result.text().startswith("Cancelled"), what="cancelled")
            assert dialog.result.text() == "Cancelled: no session was left behind."
            assert dialog.start_button.isEnabled() and not dialog.cancel_button.isEnabled()
            dialog.close()

        run(loop, scenario(), timeout=60)
    conn = sqlite3.connect(window.db)
    assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (1,)  # the live session only
    assert conn.execute("SELECT count(*) FROM batches").fetchone() == (0,)


def test_the_window_watches_the_stream_when_flespi_token_is_set(loop, make_window, monkeypatch) -> None:
    with running_standin() as standin:
        standin.state.add_stream({"name": "trackmon", "protocol_id": 2, "configuration": {}})  # mqtt: not ours
        ours = standin.state.add_stream({"name": "trackmon", "protocol_id": 1,
                                         "configuration": {"uri": "https://a.example.test/"}})
        monkeypatch.setenv("FLESPI_TOKEN", FLESPI_TOKEN)
        window = make_window(flespi_api=standin.url)

        async def scenario() -> None:
            await wait_until(lambda: window.flespi_status.last is not None, what="health")

        run(loop, scenario())
    assert window.flespi_status.last.stream_id == ours
    assert window.flespi_status.label.text() == "flespi: OK, queue 0"
    assert window.flespi_status.panel.title.text() == f"flespi stream 'trackmon' ({ours})"


def test_the_dialog_shows_what_an_existing_stream_has(loop, make_window) -> None:
    """Updating from the dialog keeps a limit_messages and validate_message set in flespi's panel."""
    window = make_window()
    with running_standin() as standin:
        stream_id = standin.state.add_stream({"name": "trackmon", "protocol_id": 1, "queue_ttl": 3600,
                                              "validate_message": "position.speed > 0",
                                              "configuration": {"uri": "https://old.example.test/",
                                                                "limit_messages": 250}})

        async def scenario() -> None:
            dialog = window.open_flespi()
            dialog.api.setText(standin.url)
            dialog.token.setText(FLESPI_TOKEN)
            dialog.load_button.click()
            await wait_until(lambda: dialog.stream_id is not None, what="the stream found")
            assert dialog.limit.value() == 250 and dialog.validate.text() == "position.speed > 0"
            assert f"Stream {stream_id} named 'trackmon' exists" in dialog.result.toPlainText()
            dialog.create_button.click()
            await wait_until(lambda: dialog.result.toPlainText().startswith(("Updated", "Not done")), what="update")
            assert dialog.result.toPlainText().startswith(
                f"Updated stream {stream_id}: configuration.uri, configuration.headers")
            dialog.close()
            await window.flespi_status.stop()  # it watches the stream it just set up: not past the stand-in

        run(loop, scenario())
        stream = standin.state.streams[stream_id]
    assert stream["configuration"]["limit_messages"] == 250 and stream["validate_message"] == "position.speed > 0"
    assert stream["queue_ttl"] == 3600 and stream["configuration"]["uri"] == window.urls()[0]
