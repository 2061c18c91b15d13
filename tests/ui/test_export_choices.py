"""Export choices users of track tools expect: all/none of the devices, and cropping in time."""

from __future__ import annotations

import csv

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from app.ui.device_picker import DevicePicker
from tests.ui.conftest import open_export, run, wait_until
from tests.ui.test_replay_sessions import T0, recorded_window


def buttons(widget) -> dict[str, QPushButton]:
    return {b.text(): b for b in widget.findChildren(QPushButton)}


def test_export_selects_all_or_none_and_crops_to_a_time_range(loop, make_window, tmp_path) -> None:
    window = recorded_window(loop, make_window)  # a, b, c: 40 messages each, 10 s apart from T0
    dialog = open_export(loop, window, 1)
    dialog.format.setCurrentText("csv")
    checked = lambda: [dialog.devices.item(i).checkState() == Qt.CheckState.Checked  # noqa: E731
                       for i in range(dialog.devices.count())]
    buttons(dialog)["None"].click()
    assert checked() == [False, False, False]
    buttons(dialog)["All"].click()
    assert checked() == [True, True, True]
    buttons(dialog)["None"].click()
    dialog.devices.item(1).setCheckState(Qt.CheckState.Checked)  # only "b"
    dialog.crop.from_slider.setValue(500)  # drag the start handle to the middle
    t_from = dialog.t_from.dateTime().toSecsSinceEpoch()
    assert T0 + 150 <= t_from <= T0 + 250 and "Keeps" in dialog.crop.kept.text()
    target = tmp_path / "cropped.csv"
    dialog.path.setText(str(target))
    dialog.start()

    async def done() -> None:
        await wait_until(lambda: dialog.thread is None, timeout=30, what="export to finish")

    run(loop, done())
    rows = list(csv.DictReader(target.open()))
    expected = [i for i in range(40) if T0 + i * 10 + 1 >= t_from]
    assert {r["ident"] for r in rows} == {"b"} and len(rows) == len(expected)
    buttons(dialog)["Whole session"].click()
    assert dialog.t_from.dateTime().toSecsSinceEpoch() == int(T0) and dialog.crop.from_slider.value() == 0
    dialog.close()


def test_the_replay_device_picker_has_all_and_none(qtbot) -> None:
    picker = DevicePicker(["a", "b", "c"], {"a"}, {"a": "Unit A"})
    qtbot.addWidget(picker)
    buttons(picker)["All"].click()
    assert picker.chosen() == ["a", "b", "c"]
    buttons(picker)["None"].click()
    assert picker.chosen() == []
