"""Settings and session actions do what they say, and nothing more."""

from __future__ import annotations

import asyncio
import socket

from PySide6.QtCore import QSettings

from app.core.simfleet import FleetSimulator
from app.ui.settings import AppSettings, RunOverrides, load_settings, save_settings
from tests.ui.conftest import TOKEN, answer_modal, post, run, wait_until

FIX = {"ident": "s-1", "timestamp": 1_700_000_000, "position.latitude": 49.0, "position.longitude": 28.6}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_command_line_port_is_not_saved_when_settings_are_confirmed(loop, make_window, tmp_path) -> None:
    store = QSettings(str(tmp_path / "trackmon.ini"), QSettings.Format.IniFormat)
    save_settings(store, AppSettings(port=0, token=TOKEN, tile_url=""))
    port = free_port()
    settings, overrides = RunOverrides.over(load_settings(store), {"port": port})
    window = make_window(store=store, overrides=overrides, **{"port": settings.port})
    assert window.service is not None and window.service.port == port  # in force for this run

    def change_thresholds(dialog) -> None:
        assert f"port {port}" in " ".join(label.text() for label in dialog.findChildren(type(dialog.problem)))
        dialog.stale.setValue(30)

    answer_modal("OK", change_thresholds)
    window.open_settings()
    store.sync()
    saved = load_settings(store)
    assert saved.stale_after == 30  # what the user changed is saved
    assert saved.port == 0  # the --port value is not
    assert window.settings.port == port  # and still used

    def change_port(dialog) -> None:
        dialog.port.setValue(0)

    answer_modal("OK", change_port)
    window.open_settings()  # a port chosen in the dialog is the user's: saved
    assert load_settings(store).port == 0 and window.overrides.values == {}


def test_the_test_batch_comes_from_marked_test_devices_not_the_demos(loop, make_window) -> None:
    window = make_window()
    demo_idents = {v.ident for v in FleetSimulator(24, seed=1, start=0).vehicles}

    async def scenario() -> None:
        dialog = window.open_flespi()
        dialog.test_button.click()
        await wait_until(lambda: "reached" in dialog.result.toPlainText(), what="test batch")
        await wait_until(lambda: window.live_fleet.total == 4, what="test batch in the views")
        assert "trackmon-test-1" in dialog.result.toPlainText()
        dialog.close()

    run(loop, scenario())
    devices = window.live_fleet.devices
    assert set(devices) == {"trackmon-test-1", "trackmon-test-2"}
    assert not set(devices) & demo_idents
    assert {d.name for d in devices.values()} == {"TEST batch (trackmon)"}


def test_unticking_recording_pauses_the_listener_but_keeps_the_demo_running(loop, make_window) -> None:
    window = make_window()

    async def scenario() -> None:
        window.toggle_demo()
        await wait_until(lambda: window.live_fleet.total > 0, timeout=30, what="demo data")
        window.recording_action.setChecked(False)
        await wait_until(lambda: window.service is None, what="listener paused")
        paused_total = window.live_fleet.total
        await asyncio.sleep(1.0)
        assert window.demo_task is not None and not window.demo_task.done()  # still running, re-sending
        assert "Stop" in window.demo_action.text()
        window.recording_action.setChecked(True)
        await wait_until(lambda: window.live_fleet.total > paused_total, timeout=30, what="demo data again")
        await window.stop_demo()

    run(loop, scenario())


def test_new_session_asks_first_and_says_what_happens_to_the_current_one(loop, make_window) -> None:
    window = make_window()

    async def scenario() -> None:
        assert await post(window.urls()[0], [FIX]) == 200
        await wait_until(lambda: window.device_model.rowCount() == 1, what="a device")

    run(loop, scenario())
    first = window.recorder.session_id
    asked = answer_modal("Cancel")
    window.new_session_action.trigger()
    assert "is closed and kept" in asked[0].text() and f"Session {first}" in asked[0].text()
    assert window.recorder.session_id == first and window.device_model.rowCount() == 1  # nothing cleared
    answer_modal("Start new session")
    window.new_session_action.trigger()
    assert window.recorder.session_id != first and window.live_fleet.total == 0
