"""The export dialog in the real window: GeoPackage/GeoParquet listed, written, read back by GDAL;
a cancelled export leaves no file."""

from __future__ import annotations

import pyogrio
from PySide6.QtWidgets import QLabel, QPushButton, QWidget

from app.store.geo_export import INSTALL_HINT
from tests.store.test_export_process import record
from tests.ui.conftest import file_moved_away, open_export, run, threads_calling, wait_until
from tests.ui.test_replay_sessions import recorded_window


def test_export_dialog_writes_a_geopackage_gdal_reads(loop, make_window, tmp_path) -> None:
    window = recorded_window(loop, make_window)
    dialog = open_export(loop, window, 1)
    formats = [dialog.format.itemText(i) for i in range(dialog.format.count())]
    assert formats[-2:] == ["gpkg", "geoparquet"]
    model = dialog.format.model()
    assert all(model.item(i).isEnabled() for i in range(len(formats)))  # the test extra installs [geo]
    assert dialog.format_hint.isHidden() and INSTALL_HINT not in dialog.format_hint.text()
    dialog.format.setCurrentText("gpkg")
    assert dialog.path.text().endswith(".gpkg") and dialog.valid_only.isChecked()
    assert not dialog.all_params.isEnabled() and not dialog.gis_columns.isEnabled()
    target = tmp_path / "out.gpkg"
    dialog.path.setText(str(target))
    dialog.start()

    async def done() -> None:
        await wait_until(lambda: dialog.thread is None, timeout=30, what="export to finish")

    run(loop, done())
    assert dialog.status.text() == "Wrote 120 points and 3 track lines to out.gpkg"
    assert pyogrio.read_info(target, layer="points")["features"] == 120
    assert pyogrio.read_info(target, layer="tracks")["features"] == 3
    dialog.close()


def test_the_export_dialog_reads_the_session_off_the_gui_thread(loop, make_window) -> None:
    """Its devices and span took 0.6 s to read for a 3M-message session, on the GUI thread. The
    dialog opens at once, offers nothing to export until they are read, and reads them elsewhere."""
    import threading

    from app.store.replay import read_export_choices

    window = recorded_window(loop, make_window)
    with threads_calling(read_export_choices) as readers:
        dialog = window.open_export(1)
        assert dialog.reading and not dialog.start_button.isEnabled() and dialog.devices.count() == 0
        assert dialog.status.text() == "Reading the session…"
        run(loop, wait_until(lambda: not dialog.reading, what="the session read"))
    assert readers and threading.get_ident() not in readers
    assert dialog.start_button.isEnabled() and dialog.devices.count() == 3 and dialog.status.text() == ""
    assert dialog.t_from.dateTime().toSecsSinceEpoch() == 1_767_225_600  # the session's first message
    dialog.close()


def test_the_export_dialog_says_why_it_cannot_read_a_session_and_offers_nothing_to_export(loop, make_window) -> None:
    """The recording file moved away: the dialog's read fails in its reader thread, the reason is
    shown, and Export stays disabled (nothing half-read to export)."""
    window = recorded_window(loop, make_window)
    with file_moved_away(window):
        dialog = open_export(loop, window, 1)
        status = dialog.status.text()
        assert status.startswith("Could not read the session:")
        assert status.endswith("was deleted or moved away: move it back to read it")
        assert not dialog.start_button.isEnabled() and dialog.devices.count() == 0
        dialog.close()
    window.recorder.rename_session(1, "Morning run")
    dialog = open_export(loop, window, 1)
    assert dialog.start_button.isEnabled() and dialog.devices.count() == 3
    [count] = dialog.findChild(QWidget, "devicesAllNone").findChildren(QLabel)
    run(loop, wait_until(lambda: count.text() == "3 of 3 devices", what="the count of the list read in its thread"))
    [none] = [b for b in dialog.findChildren(QPushButton) if b.text() == "None"]
    none.click()
    run(loop, wait_until(lambda: count.text() == "0 of 3 devices", what="the count after None"))
    assert dialog.title == "Morning run" and dialog.windowTitle() == "Export session 1 · Morning run"  # read too
    dialog.close()


def test_cancel_and_esc_stop_an_export_under_way_and_leave_no_file(loop, make_window, tmp_path) -> None:
    record(tmp_path / "gui0.sqlite", 60)  # 120,000 points in the file the first window opens
    window = make_window()
    out = tmp_path / "out"
    out.mkdir()
    for how in ("Cancel", "Esc"):
        dialog = open_export(loop, window, 1)
        dialog.path.setText(str(out / f"{how}.gpx"))
        dialog.start()
        run(loop, wait_until(lambda d=dialog: d.bar.value() > 0, timeout=30, what="the export under way"))
        if how == "Cancel":
            dialog.cancel_button.click()
            assert dialog.status.text() == "Cancelling…"
        else:
            dialog.reject()  # what Esc and the close button do
            assert not dialog.isVisible()
        run(loop, wait_until(lambda d=dialog: d.thread is None, timeout=30, what="the export to stop"))
        assert dialog.status.text() == "Cancelled: nothing was written", how
        assert list(out.iterdir()) == [], how  # no file, no partial file
        dialog.close()
