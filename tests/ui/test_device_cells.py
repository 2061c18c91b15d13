"""A frame repaints only the device-table cells whose text changed, so a steady stream of small
changes costs a few cells, not whole rows."""

from __future__ import annotations

from app.core.fleet import Fleet, StatusThresholds
from app.core.normalize import normalize
from app.ui.device_model import COLUMNS, DeviceTableModel


def message(ident: str, ts: float, speed: float) -> object:
    return normalize({"ident": ident, "timestamp": ts, "device.name": f"Truck {ident}",
                      "position.latitude": 49.0, "position.longitude": 28.0, "position.speed": speed}, ts)


def test_only_the_cells_whose_text_changed_are_repainted(qtbot) -> None:
    fleet = Fleet()
    model = DeviceTableModel(fleet, StatusThresholds())
    fleet.apply([message("a", 1000.0, 50.0), message("b", 1000.0, 60.0)], 1000.0)
    model.refresh(fleet.take_changes()[0], 1000.0)
    for row in range(model.rowCount()):  # as the view does when it paints them
        for column in range(model.columnCount()):
            model.data(model.index(row, column))
    emitted: list[tuple[int, int, int, int]] = []
    model.dataChanged.connect(lambda tl, br, *_: emitted.append((tl.row(), tl.column(), br.row(), br.column())))
    fleet.apply([message("a", 1001.0, 72.0)], 1000.0)  # only its speed (and count) change
    model.refresh(fleet.take_changes()[0], 1000.0)
    titles = [COLUMNS[column][0] for _, column, _, _ in emitted]
    assert all(r1 == r2 and c1 == c2 for r1, c1, r2, c2 in emitted)  # single cells, never a range
    assert {row for row, *_ in emitted} == {model.rows["a"]}
    assert "Speed" in titles and "Name" not in titles and "Ident" not in titles
    speed = next(column for column, (title, *_rest) in enumerate(COLUMNS) if title == "Speed")
    assert model.data(model.index(model.rows["a"], speed)) == "72 km/h"
