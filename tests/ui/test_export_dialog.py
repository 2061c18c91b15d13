"""The export dialog in the real window: GeoPackage/GeoParquet listed, written, read back by GDAL;
a cancelled export leaves no file."""

from __future__ import annotations

import pyogrio

from app.store.geo_export import INSTALL_HINT
from tests.ui.conftest import run, wait_until
from tests.ui.test_replay_sessions import recorded_window


def test_export_dialog_writes_a_geopackage_gdal_reads(loop, make_window, tmp_path) -> None:
    window = recorded_window(loop, make_window)
    dialog = window.open_export(1)
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
