"""The window's account of its listener: one state, rendered alike in the status bar and the
connection panel, in words a user can act on."""

from __future__ import annotations

import asyncio
import socket

from tests.ui.conftest import TOKEN, post, run, wait_until

FIX = {"ident": "truth-1", "timestamp": 1_700_000_000, "position.latitude": 49.0, "position.longitude": 28.6}


def test_a_busy_port_is_explained_without_errno_and_offers_no_url_to_copy(loop, make_window) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        window = make_window(port=port)
        window.frame()
        panel = window.connection
        assert window.service is None
        text = panel.detail.text() + window.status_urls.text()
        assert f"port {port} is in use by another program" in text and "Settings" in text
        assert "Errno" not in text and "[" not in text
        assert panel.heading.text() == "Not listening"
        assert panel.urls_box.count() == 0  # no URL (and no Copy button) where nothing listens
        assert [b.toolTip() for b in panel.copy_buttons()] == ["Copy the header to the clipboard"]
        assert not panel.error_box.isHidden()  # "Choose another port…"
        assert not window.status_file.text().startswith("Recording")  # nothing is recorded either


def test_refused_counts_agree_between_the_status_bar_and_the_requests_panel(loop, make_window) -> None:
    window = make_window()

    async def scenario() -> None:
        for _ in range(2):
            assert await post(window.urls()[0], [FIX], token="wrong") == 401
        window.recording_action.setChecked(False)  # the listener stops and starts again: counts go on
        await wait_until(lambda: window.service is None, what="listener paused")
        window.recording_action.setChecked(True)
        await wait_until(lambda: window.service is not None, what="listener back")
        for _ in range(3):
            assert await post(window.urls()[0], [FIX], token=None) == 401
        assert await post(window.urls()[0], [FIX]) == 200
        await wait_until(lambda: window.requests_model.rowCount() == 6, what="six requests listed")

    run(loop, scenario())
    window.tick()
    refused = sum(window.requests_model.items[r].status != 200 for r in range(6))
    assert refused == 5
    assert "5 refused" in window.status_totals.text()


def test_after_data_the_panel_says_data_arrives_and_from_where(loop, make_window) -> None:
    window = make_window()
    assert window.connection.heading.text() == "Waiting for data"

    async def scenario() -> None:
        assert await post(window.urls()[0], [FIX]) == 200
        await wait_until(lambda: window.device_model.rowCount() == 1, what="the device")

    run(loop, scenario())
    window.tick()
    window.connection_action.setChecked(True)  # the user looks at the connection panel again
    panel = window.connection
    assert panel.heading.text() == "Receiving data"
    assert "From 127.0.0.1" in panel.detail.text()
    assert window.status_line.health.text() == "● Receiving data"
    assert panel.urls_box.count() == 1


def test_pausing_recording_says_so_everywhere_without_contradiction(loop, make_window) -> None:
    window = make_window()

    async def scenario() -> None:
        window.recording_action.setChecked(False)
        await wait_until(lambda: window.service is None, what="listener paused")

    run(loop, scenario())
    window.tick()
    assert window.connection.heading.text() == "Paused"
    assert window.status_urls.text().startswith("Not listening or recording")
    assert window.status_file.text().startswith("Not recording")
    assert window.connection.error_box.isHidden()  # nothing to fix: the user paused it


def went_quiet(loop, window) -> None:
    """One message, then nothing for longer than the window calls quiet (0.3 s here)."""
    window.link.quiet_after = 0.3

    async def scenario() -> None:
        assert await post(window.urls()[0], [FIX]) == 200
        await wait_until(lambda: window.device_model.rowCount() == 1, what="the device")
        await asyncio.sleep(0.5)

    run(loop, scenario())


def test_a_quiet_stream_is_reported_with_the_flespi_set_up_at_hand(loop, make_window) -> None:
    window = make_window()
    went_quiet(loop, window)
    window.tick()
    assert window.connection.heading.text().startswith("No data for")
    assert "flespi set-up" in window.connection.detail.text()
    assert window.status_line.flespi.isVisibleTo(window)
    window.status_line.flespi.click()
    dialogs = [w for w in window.findChildren(__import__("app.ui.flespi_dialog", fromlist=["x"]).FlespiDialog)]
    assert dialogs and dialogs[-1].isVisible()
    for dialog in dialogs:
        dialog.close()


def test_the_flespi_button_never_covers_a_status_message_and_shows_after_it(loop, make_window) -> None:
    """A message in the status bar ("the replay was closed: …") hides the bar's left-hand widgets
    while it shows. The stream going quiet meanwhile must not draw the flespi button over its
    text; the button shows once the message is gone."""
    window = make_window()
    went_quiet(loop, window)
    window.statusBar().showMessage("A message the user is reading", 15000)
    window.tick()  # the stream is quiet now: the status bar suggests the flespi set-up
    assert window.connection.heading.text().startswith("No data for")
    assert not window.status_line.flespi.isVisibleTo(window)
    window.statusBar().clearMessage()
    assert window.status_line.flespi.isVisibleTo(window)


def test_the_catching_up_message_is_shown_whole_and_the_file_name_gives_way(loop, make_window) -> None:
    """A status bar too narrow for everything: the lag, which must be read whole, keeps its room;
    the totals and the recording's file name are elided (its whole path is in its tooltip)."""
    window = make_window()
    window.resize(1000, 700)
    window.status_line.show_lag("Catching up: 55,000 recorded messages not shown yet (4 s behind)")
    run(loop, asyncio.sleep(0.2))  # laid out
    lag, file = window.status_line.lag, window.status_file
    assert lag.isVisible() and lag.width() >= lag.sizeHint().width()
    assert window.status_urls.width() >= window.status_urls.sizeHint().width()
    assert file.text().startswith("Recording ")  # the whole text, drawn elided
    assert 0 < file.width() < file.fontMetrics().horizontalAdvance(file.text())


def test_refused_requests_without_data_say_what_to_check(loop, make_window) -> None:
    window = make_window()

    async def scenario() -> None:
        assert await post(window.urls()[0], [FIX], token=TOKEN + "x") == 401
        await wait_until(lambda: window.link.rejected == 1, what="the refusal")

    run(loop, scenario())
    window.tick()
    assert window.connection.heading.text() == "Requests arrive but are refused"
    assert "Authorization" in window.connection.detail.text()
