"""Replay mode, the session browser and the export dialog in the real window."""

from __future__ import annotations

import asyncio
import csv

from app.ui.device_model import COLUMNS
from app.ui.replay import SLIDER_STEPS
from tests.ui.conftest import (
    answer_modal,
    enter_replay,
    file_moved_away,
    map_state,
    open_export,
    post,
    run,
    threads_calling,
    wait_until,
)

T0 = 1_767_225_600.0
COLUMN = {column[0]: i for i, column in enumerate(COLUMNS)}


def history() -> list[dict]:
    """Three devices, 40 messages each, 10 s apart; 'c' parks with the engine off in the middle."""
    out = []
    for i in range(40):
        for n, ident in enumerate(("a", "b", "c")):
            parked = ident == "c" and 10 <= i < 30
            out.append({"ident": ident, "device.name": f"Unit {ident.upper()}", "timestamp": T0 + i * 10 + n,
                        "position.latitude": 50.0 + n + (10 if parked else i) * 0.001, "position.longitude": 10.0,
                        "position.speed": 0.0 if parked else 36.0, "engine.ignition.status": not parked})
    return out


def expected_at(t: float) -> dict[str, str]:
    latest = {}
    for m in history():
        if m["timestamp"] <= t:
            latest[m["ident"]] = f"{m['position.latitude']:.6f}, {m['position.longitude']:.6f}"
    return latest


def table_positions(window) -> dict[str, str]:
    model = window.device_model
    return {ident: model.index(row, COLUMN["Position"]).data() for ident, row in model.rows.items()}


def recorded_window(loop, make_window):
    window = make_window()

    async def feed() -> None:
        messages = history()
        for start in range(0, len(messages), 30):
            assert await post(window.urls()[0], messages[start:start + 30]) == 200
        await wait_until(lambda: window.live_fleet.total == len(messages), what="history recorded")

    run(loop, feed())
    window.new_session()  # close session 1 so its chunks are written; live goes on in session 2
    return window


def test_replay_seeks_plays_and_returns_to_live(loop, make_window) -> None:
    window = recorded_window(loop, make_window)
    enter_replay(loop, window, 1)
    assert window.replay_bar.isVisible() and "REPLAY" in window.windowTitle()
    assert window.replay.source.start == T0 and window.replay.source.end == T0 + 392

    async def scenario() -> None:
        bar = window.replay_bar
        target = T0 + 155.0
        bar.slider.setValue(round((target - T0) / 392 * SLIDER_STEPS))
        bar._seek_to_slider()
        await wait_until(lambda: not window.replay.seeking, what="the seek")
        window.frame()
        assert abs(window.replay.t - target) < 0.1
        assert table_positions(window) == expected_at(window.replay.t)
        await wait_until(lambda: window.map.is_ready, what="map")
        expected = expected_at(window.replay.t)
        state = await map_state(window)
        while set(state["positions"]) != set(expected):  # the map gets its slice once it has drawn the last
            await asyncio.sleep(0.05)
            state = await map_state(window)
        for ident, text in expected.items():
            assert f"{state['positions'][ident][0]:.6f}, {state['positions'][ident][1]:.6f}" == text
        # Step forward lands on the next message of any device.
        before = window.replay.t
        bar.forward.click()
        stepped = window.replay.t
        assert stepped == min(m["timestamp"] for m in history() if m["timestamp"] > before)
        # Step back lands on the message before (read like a seek).
        bar.back.click()
        await wait_until(lambda: not window.replay.seeking, what="the step back")
        assert window.replay.t == max(m["timestamp"] for m in history() if m["timestamp"] < stepped)
        # Play as fast as possible to the end.
        bar.speed.setCurrentIndex(bar.speed.count() - 1)
        bar.play.click()
        await wait_until(lambda: not window.replay.playing, timeout=30, what="replay to finish")
        window.frame()
        assert window.replay.t == T0 + 392
        assert table_positions(window) == expected_at(T0 + 392)
        trip_c = window.replay.trips["c"]
        # "c" parks from T0+102 to T0+302; replayed from the seek at T0+155: one stop of ~130 s.
        assert 120 <= trip_c.stopped_s <= 150 and len(trip_c.stops) == 1
        window.tick()
        assert (await map_state(window))["stops"] >= 1
        trips = window.trip_panel.model
        assert trips.rowCount() == 3
        row_c = [trips.index(r, 0).data() for r in range(3)].index("Unit C")
        assert trips.index(row_c, 6).data() == "1"  # its one stop, as the table shows it

    run(loop, scenario())
    window.leave_replay()
    assert not window.replay_bar.isVisible() and window.windowTitle() == "trackmon"
    assert window.fleet is window.live_fleet and window.device_model.rowCount() == 0  # session 2 is empty


def test_replay_of_a_subset_of_devices(loop, make_window) -> None:
    window = recorded_window(loop, make_window)
    enter_replay(loop, window, 1, ("b",))
    window.replay.seek(T0 + 300)
    run(loop, wait_until(lambda: not window.replay.seeking, what="the seek"))
    window.frame()
    assert list(window.device_model.rows) == ["b"]
    assert "1 of 3 devices" in window.windowTitle()


def test_a_replay_seek_is_read_off_the_gui_thread_and_the_newest_wins(loop, make_window) -> None:
    """A seek reads the latest batches of every device; in the soak (500 devices, a file growing at
    5,000 msg/s) that froze the window for up to 2.4 s. The read runs in another thread, the views
    keep the instant shown until it lands, and of several seeks made meanwhile the last one counts."""
    import threading

    from app.store.replay import ReplaySource

    window = recorded_window(loop, make_window)
    enter_replay(loop, window, 1)
    run(loop, wait_until(lambda: not window.replay.seeking, what="the first instant"))
    with threads_calling(ReplaySource.snapshot) as readers:
        for t in (T0 + 50, T0 + 100, T0 + 200, T0 + 300):
            window.replay.seek(t)
        assert window.replay.seeking and window.replay.t == T0  # still showing the instant before
        run(loop, wait_until(lambda: not window.replay.seeking, what="the seeks"))
    assert readers and threading.get_ident() not in readers
    assert len(readers) <= 2  # the one in flight and the newest: the two between were dropped
    window.frame()
    assert window.replay.t == T0 + 300 and table_positions(window) == expected_at(T0 + 300)


def test_a_session_is_opened_for_replay_off_the_gui_thread_and_the_last_asked_for_shows(loop, make_window) -> None:
    """Opening a long session reads its devices, its density over time and every device at its
    start: seconds on the GUI thread. It is read in a reader thread; the window stays live until it
    is read, shows the session asked for last, and shows none if the user went back to live."""
    import threading

    from app.store.replay import open_session

    window = recorded_window(loop, make_window)
    assert post_sync(loop, window, [{"ident": "live", "timestamp": T0 + 1000}]) == 200
    with threads_calling(open_session) as readers:
        window.enter_replay(2)
        window.enter_replay(1, ("a",))
        assert window.replay is None and window.fleet is window.live_fleet  # live until it is read
        run(loop, wait_until(lambda: not window.replay_opening, what="the session opened"))
    assert readers and threading.get_ident() not in readers
    assert window.replay.source.session_id == 1 and "1 of 3 devices" in window.windowTitle()
    window.enter_replay(2)
    window.leave_replay()  # back to live before session 2 was read: it does not show
    run(loop, wait_until(lambda: not any(t.name == "trackmon-replay-open" for t in threading.enumerate()),
                         what="the dropped read to end"))
    run(loop, asyncio.sleep(0.2))  # its result reaches the loop (and is ignored)
    assert window.replay is None and window.fleet is window.live_fleet and "REPLAY" not in window.windowTitle()


def test_the_device_picker_replays_the_chosen_devices_and_offers_every_device(loop, make_window) -> None:
    from PySide6.QtCore import Qt

    from tests.ui.conftest import answer_modal

    window = recorded_window(loop, make_window)
    enter_replay(loop, window, 1, ("a",))
    offered: list[list[str]] = []

    def only_b_and_c(picker) -> None:
        offered.append([picker.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(picker.list.count())])
        for i in range(picker.list.count()):
            item = picker.list.item(i)
            item.setCheckState(Qt.CheckState.Unchecked if item.data(Qt.ItemDataRole.UserRole) == "a"
                               else Qt.CheckState.Checked)

    answer_modal("OK", only_b_and_c)
    window.replay_bar.devices.click()
    run(loop, wait_until(lambda: not window.replay_opening and window.replay.source.idents == ["b", "c"],
                         what="the chosen devices replayed"))
    assert offered == [["a", "b", "c"]]  # every device of the session, not only the ones replayed
    assert "2 of 3 devices" in window.windowTitle()


def test_back_to_live_while_a_session_opens_says_nothing_more_about_it(loop, make_window) -> None:
    window = recorded_window(loop, make_window)
    enter_replay(loop, window, 1)
    window.enter_replay(2)
    assert window.statusBar().currentMessage() == "Opening session 2 for replay…"
    window.replay_bar.live.click()
    assert window.replay is None and window.statusBar().currentMessage() == ""


def post_sync(loop, window, messages: list[dict]) -> int:
    return run(loop, post(window.urls()[0], messages))


def test_play_and_steps_pressed_while_a_seek_is_read_start_where_it_lands(loop, make_window) -> None:
    """The user clicks the timeline and presses play or a step before the instant is read: they
    act from the clicked instant, not from the one shown before it."""
    window = recorded_window(loop, make_window)
    enter_replay(loop, window, 1)
    replay = window.replay
    times = sorted(m["timestamp"] for m in history())

    def landed() -> None:
        run(loop, wait_until(lambda: not replay.seeking, what="the seek"))

    landed()
    replay.seek(replay.source.end)
    landed()
    replay.seek(T0 + 200)
    replay.play()  # at the end before the click: play must not start over from the beginning
    landed()
    replay.pause()
    assert T0 + 200 <= replay.t < T0 + 300
    replay.seek(T0 + 300)
    replay.step_back()
    landed()
    assert replay.t == max(t for t in times if t < T0 + 300)
    replay.seek(T0 + 100)
    replay.step_forward()
    landed()
    assert replay.t == min(t for t in times if t > T0 + 100)


def test_session_browser_lists_renames_and_protects_the_live_session(loop, make_window) -> None:
    window = recorded_window(loop, make_window)
    browser = window.open_sessions()
    run(loop, wait_until(lambda: not browser.reading, what="the session list read"))
    assert browser.table.rowCount() == 2
    rows = {browser.table.item(r, 0).text(): [browser.table.item(r, c).text() for c in range(11)]
            for r in range(2)}
    assert rows["1"][5] == "3" and rows["1"][6] == "120" and rows["1"][10] == "closed"
    assert rows["2"][10] == "recording"
    window.recorder.rename_session(1, "<b>bench</b> run")
    browser.table.selectRow(next(r for r in range(2) if browser.table.item(r, 0).text() == "2"))
    browser.refresh()
    run(loop, wait_until(lambda: not browser.reading, what="the session list read again"))
    assert browser.selected().id == 2  # the selection stays on the session, not on the default choice
    assert any(browser.table.item(r, 1).text() == "<b>bench</b> run" for r in range(2))
    browser.close()


def test_export_dialog_writes_the_chosen_devices(loop, make_window, tmp_path) -> None:
    window = recorded_window(loop, make_window)
    dialog = open_export(loop, window, 1)
    dialog.format.setCurrentText("csv")
    dialog.devices.item(0).setCheckState(dialog.devices.item(0).checkState().Unchecked)  # drop "a"
    target = tmp_path / "out.csv"
    dialog.path.setText(str(target))
    dialog.start()

    async def done() -> None:
        await wait_until(lambda: dialog.thread is None, timeout=30, what="export to finish")

    run(loop, done())
    assert dialog.status.text().startswith("Wrote 80 points")
    rows = list(csv.DictReader(target.open()))
    assert {r["ident"] for r in rows} == {"b", "c"} and len(rows) == 80
    dialog.close()


def test_a_session_is_sent_to_another_listener_from_the_window(loop, make_window, tmp_path) -> None:
    import sqlite3

    from app.server.replay_sender import recorded_messages
    from tests.conftest import running_listener
    window = recorded_window(loop, make_window)
    with running_listener(tmp_path / "other.sqlite") as other:
        task = window.send_session(1, other.url, {}, None)

        async def done() -> None:
            await wait_until(task.done, timeout=30, what="send to finish")

        run(loop, done())
        assert "Sent 120 messages" in window.statusBar().currentMessage()
    conn = sqlite3.connect(tmp_path / "other.sqlite")
    assert sorted(m["timestamp"] for _, m in recorded_messages(conn, 1)) == sorted(m["timestamp"] for m in history())
    conn.close()


def test_a_frame_in_progress_survives_switching_back_to_live(loop, make_window) -> None:
    import asyncio
    window = recorded_window(loop, make_window)
    enter_replay(loop, window, 1)

    async def scenario() -> None:
        assert await post(window.urls()[0], [{"ident": "live-only", "timestamp": T0, "position.latitude": 1.0,
                                              "position.longitude": 1.0}]) == 200
        await wait_until(lambda: "live-only" in window.live_fleet.devices, what="live message")
        window.frame_timer.stop()
        window.fleet.mark_all_changed()
        window._next_frame()  # a sliced frame for the replay's fleet starts...
        await asyncio.sleep(0)  # ...and takes its first step
        window.leave_replay()  # the views switch to the live fleet in between
        await asyncio.sleep(0.3)  # the rest of that frame runs now

    run(loop, scenario())
    assert window.fleet is window.live_fleet and set(window.device_model.rows) == {"live-only"}


def test_import_errors_are_shown_as_plain_text(loop, make_window, tmp_path) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QMessageBox
    window = make_window()
    browser = window.open_sessions()
    broken = tmp_path / "<img src=x onerror=alert(1)>.gpx"
    broken.write_text("<gpx><trk>")
    browser.import_path(broken).join(10)

    async def shown() -> None:
        await wait_until(lambda: browser.findChildren(QMessageBox), what="the error box")

    run(loop, shown())
    [box] = browser.findChildren(QMessageBox)
    assert box.textFormat() == Qt.TextFormat.PlainText
    assert "<img src=x onerror=alert(1)>.gpx is not valid GPX" in box.text()
    box.close()
    browser.close()


def test_importing_in_the_window_leaves_live_recording_running(loop, make_window, tmp_path) -> None:
    import asyncio
    import time as clock

    window = make_window()
    big = tmp_path / "big.csv"
    rows = ["ident,name,time_utc,latitude,longitude"] + [
        f"imp,Imported,2025-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z,48.{i:06d},11.0"
        for i in range(100_000)]  # long enough for several live batches, however fast imports get
    big.write_text("\n".join(rows) + "\n")
    browser = window.open_sessions()
    acked_during_import = 0

    async def scenario() -> None:
        nonlocal acked_during_import
        thread = browser.import_path(big)
        while thread.is_alive():
            assert await post(window.urls()[0], [{"ident": "live", "timestamp": clock.time()}]) == 200
            acked_during_import += thread.is_alive()  # acknowledged while the import still runs
            if thread.is_alive() and not browser.reading:  # the list read before the import ends says so
                assert browser.file_label.text() == "Importing big.csv…"
            await asyncio.sleep(0.01)
        await wait_until(lambda: browser.actions["Import GPX/CSV…"].isEnabled() and not browser.reading,
                         what="import done and listed")

    run(loop, scenario())
    assert acked_during_import >= 2  # live batches were not queued behind the whole import
    names = [browser.table.item(r, 1).text() for r in range(browser.table.rowCount())]
    assert "import big.csv" in names
    assert browser.file_label.text().startswith("imported 100,000 rows from big.csv")  # the import's summary
    browser.close()


def test_renaming_and_deleting_a_session_show_at_once_and_after_the_list_is_read(loop, make_window) -> None:
    from tests.ui.conftest import answer_modal

    window = recorded_window(loop, make_window)
    window.new_session()  # session 3 records; 1 and 2 are closed
    browser = window.open_sessions()
    run(loop, wait_until(lambda: not browser.reading, what="the session list read"))

    def row_of(session_id: int) -> int | None:
        return next((r for r in range(browser.table.rowCount()) if browser.table.item(r, 0).text() == str(session_id)),
                    None)

    browser.table.selectRow(row_of(1))
    answer_modal("OK", lambda dialog: dialog.setTextValue("morning run"))
    browser.actions["Rename…"].click()
    assert browser.table.item(row_of(1), 1).text() == "morning run" and browser.selected().name == "morning run"
    browser.table.selectRow(row_of(2))
    answer_modal("Yes")
    browser.actions["Delete…"].click()
    assert row_of(2) is None and all(s.id != 2 for s in browser.sessions)  # before the list is read again
    run(loop, wait_until(lambda: not browser.reading, what="the list read again"))
    assert row_of(2) is None and browser.table.item(row_of(1), 1).text() == "morning run"
    browser.close()


def test_the_session_list_is_read_off_the_gui_thread(loop, make_window) -> None:
    """The list's counts run over every batch of the file: on a 9-million-message file with a cold
    cache that took 1.5 s, and the window froze meanwhile (the soak's worst stalls). The browser
    opens at once, says it is reading, and the list is read by another thread."""
    import threading

    from app.store.queries import list_sessions

    window = recorded_window(loop, make_window)
    with threads_calling(list_sessions) as readers:
        browser = window.open_sessions()
        assert browser.reading and browser.file_label.text() == "Reading sessions…"
        run(loop, wait_until(lambda: not browser.reading, what="the session list read"))
    assert readers and threading.get_ident() not in readers
    assert browser.table.rowCount() == 2 and browser.file_label.text().endswith("2 sessions")
    browser.close()


def test_a_session_that_cannot_be_read_for_replay_says_why_and_the_window_stays_live(loop, make_window) -> None:
    """The recording file moved away while the window records (the recorder refuses batches
    until it is back): opening a session for replay reads the file at its path in a reader
    thread, fails, and says so; the views stay on the live fleet. With the file back, it opens."""
    window = recorded_window(loop, make_window)
    with file_moved_away(window):
        window.enter_replay(1)
        run(loop, wait_until(lambda: not window.replay_opening, what="the read to end"))
        message = window.statusBar().currentMessage()
        assert message.startswith("Could not open the session for replay:")
        assert message.endswith("moved away: move it back to read it")
        assert window.replay is None and window.fleet is window.live_fleet and "REPLAY" not in window.windowTitle()
    enter_replay(loop, window, 1)
    assert window.fleet is window.replay.fleet and set(window.replay.source.idents) == {"a", "b", "c"}


def test_playback_reads_its_stretches_off_the_gui_thread_and_shows_every_message_once(loop, make_window) -> None:
    """Playing reads each tick's messages from the file (100–165 ms a tick at full speed, which
    froze the window every tick): in a reader thread now, one stretch after the other, so every
    message from the instant sought to the end is shown, in order, once; pausing mid-read shows
    nothing more."""
    import threading

    from app.store.replay import ReplaySource

    window = recorded_window(loop, make_window)
    enter_replay(loop, window, 1)
    replay = window.replay
    start = T0 + 100.0
    replay.seek(start)
    run(loop, wait_until(lambda: not replay.seeking, what="the seek"))
    seeded = replay.fleet.total
    replay.set_speed(60.0)  # ~6 s of recording a tick: several ticks to the end
    with threads_calling(ReplaySource.points_between) as readers:
        replay.play()
        run(loop, wait_until(lambda: not replay.playing, timeout=30, what="the replay to finish"))
    assert readers and threading.get_ident() not in readers
    played = sum(1 for m in history() if start < m["timestamp"] <= T0 + 392)
    assert replay.t == T0 + 392 and replay.fleet.total == seeded + played
    window.frame()
    assert table_positions(window) == expected_at(T0 + 392)
    # Paused while a stretch is being read: that stretch is not shown, the clock stays.
    replay.seek(start)
    run(loop, wait_until(lambda: not replay.seeking, what="the seek"))
    replay.play()
    run(loop, wait_until(lambda: replay.reading_stretch, what="a stretch being read"))
    at = replay.t
    replay.pause()
    run(loop, wait_until(lambda: not replay.reading_stretch, what="the dropped read to end"))
    run(loop, asyncio.sleep(0.2))  # its result reaches the loop (and is ignored)
    assert replay.t == at and not replay.playing


def test_playback_shows_every_message_when_a_tick_is_cut_short_among_messages_of_one_instant(
        loop, make_window, monkeypatch) -> None:
    """A tick brings at most a few thousand messages; a fleet reporting on whole seconds puts
    hundreds at one instant. Where the cut falls among them, the rest come with the next tick:
    none skipped, none twice — and an instant with more messages than a tick takes comes whole."""
    from app.ui import replay as replay_module

    monkeypatch.setattr(replay_module, "MAX_POINTS_PER_TICK", 250)  # the cut inside an instant, quickly
    window = make_window()
    instants = [T0 + 10.0 * i for i in range(6)]
    devices = [100, 100, 100, 300, 100, 100]  # the fourth instant holds more than a tick takes

    async def feed() -> None:
        for t, n in zip(instants, devices, strict=True):
            batch = [{"ident": f"d{d:03d}", "timestamp": t, "position.latitude": 50.0 + d * 1e-3,
                      "position.longitude": 10.0 + t * 1e-6} for d in range(n)]
            assert await post(window.urls()[0], batch) == 200
        await wait_until(lambda: window.live_fleet.total == sum(devices), what="the instants recorded")

    run(loop, feed())
    window.new_session()
    enter_replay(loop, window, 1)
    replay = window.replay
    seeded = replay.fleet.total  # the first instant, seeded
    replay.set_speed(None)  # as fast as possible: every tick cut at the limit
    replay.play()
    run(loop, wait_until(lambda: not replay.playing, timeout=30, what="the replay to finish"))
    assert replay.t == instants[-1]
    assert replay.fleet.total == seeded + sum(devices[1:])
    shown = [(e.message.ident, e.message.ts) for e in replay.fleet.log if e.message.ts > instants[0]]
    assert len(shown) == len(set(shown)) == sum(devices[1:])


def test_raw_json_of_a_replayed_message_whose_session_was_deleted_says_so(loop, make_window) -> None:
    """The session being replayed is deleted (the browser refuses only the one recording): the
    inspector's Raw JSON says why it cannot show the message instead of raising out of the click."""
    window = recorded_window(loop, make_window)
    enter_replay(loop, window, 1)
    window.select_device("a")
    assert window.inspector.raw_button.isEnabled()
    window.recorder.delete_session(1)
    seen = answer_modal("Close")
    window.inspector.raw_button.click()
    assert seen and seen[0].text.toPlainText().startswith("Could not read this message from the recording:")
    assert window.replay is not None  # still replaying what was read
