"""The inspector's Raw JSON shows a message byte for byte as the device sent it."""

from __future__ import annotations

from PySide6.QtGui import QGuiApplication

from app.ui.inspector import RawJsonDialog
from tests.ui.conftest import post, run, wait_until

SENT = b'{"ident":"raw-1", "timestamp": 1700000000.50, "position.latitude": 49.10, "speed": 7.0e1}'


def test_raw_json_shows_the_bytes_as_received(loop, make_window) -> None:
    window = make_window()

    async def scenario() -> None:
        assert await post(window.urls()[0], raw=b"[" + SENT + b"]") == 200
        await wait_until(lambda: window.live_fleet.total == 1, what="the message")

    run(loop, scenario())
    window.select_device("raw-1")
    assert window.inspector.raw_bytes() == SENT
    dialog = RawJsonDialog("Raw message JSON", "", window, exact=window.inspector.raw_bytes())
    try:
        laid_out = dialog.text.toPlainText()
        assert '"position.latitude": 49.10' in laid_out and '"speed": 7.0e1' in laid_out
        assert laid_out.index('"ident"') < laid_out.index('"timestamp"')  # the sender's key order
        dialog.laid_out.setChecked(False)
        assert dialog.text.toPlainText() == SENT.decode()
        dialog.copy.click()
        assert QGuiApplication.clipboard().text() == SENT.decode()
    finally:
        dialog.deleteLater()
