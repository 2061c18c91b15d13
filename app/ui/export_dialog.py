"""The export dialog: format, devices, time range, valid fixes; progress bar and cancel.

The export is written by a child process with its own SQLite connection (`store/export_process`),
so the window stays live (and keeps recording) while a large session is written; a worker thread
waits for it. The worker holds no Qt object: it reports through a `ThreadBridge` and is
cancelled through a plain `threading.Event`. The file appears
only when complete (`export_file`): a cancelled or failed export leaves nothing behind.
GeoPackage and GeoParquet need an optional extra; without it they are listed but disabled,
with the command that installs them.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from pathlib import Path

from PySide6.QtCore import QDateTime, Qt, QTimeZone
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateTimeEdit,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from app.core.filters import FilterError, compile_filter
from app.store.export_file import FILE_FORMATS, SUFFIXES
from app.store.export_process import ExportJob, export_in_child
from app.store.exporters import Cancelled
from app.store.faults import FileId
from app.store.geo_export import INSTALL_HINT, missing_library
from app.store.points import PointFilter
from app.store.recorder import Recorder
from app.store.replay import ExportChoices, read_export_choices
from app.ui.background_read import BackgroundRead
from app.ui.device_picker import device_item, with_all_none
from app.ui.thread_bridge import ThreadBridge
from app.ui.time_crop import TimeCrop

SUFFIX = SUFFIXES
#: What each format is for, shown as the format's tooltip.
FORMAT_HELP = {"gpx": "GPX 1.1: GPS tools, GPSPrune, gpsbabel, Garmin", "csv": "CSV: spreadsheets, pandas, gpsbabel",
               "kml": "KML: Google Earth", "geojson": "GeoJSON: web maps, QGIS",
               "gpkg": "GeoPackage: QGIS, ogr2ogr (a points and a tracks layer)",
               "geoparquet": "GeoParquet: DuckDB, pandas/GeoPandas, polars (one row per fix)"}


def _utc(ts: float) -> QDateTime:
    return QDateTime.fromSecsSinceEpoch(int(ts), QTimeZone.utc())


class ExportDialog(QDialog):
    """Exports one session to a file."""

    def __init__(self, recorder: Recorder, session_id: int, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Export session {session_id}")
        self.db = recorder.path
        self.source: FileId | None = None  # the file the session was read from: the export reads that one
        self.session_id = session_id
        self.title = f"session {session_id}"  # the exported file's title: the session's name, once read
        # The session's devices and span are read in a reader thread (0.6 s for a 3M-message
        # session): the dialog opens at once and can export once they are in.
        start = end = time.time()
        self.format = QComboBox()
        self.format.addItems(list(FILE_FORMATS))
        unavailable = []
        for i, fmt in enumerate(FILE_FORMATS):
            missing = missing_library(fmt) if fmt in ("gpkg", "geoparquet") else None
            item = self.format.model().item(i)  # type: ignore[attr-defined]
            item.setToolTip(FORMAT_HELP[fmt] + (f" — {missing}" if missing else ""))
            if missing:
                item.setEnabled(False)
                unavailable.append(fmt)
        self.format_hint = QLabel(f"{' and '.join(unavailable)} (disabled) need an optional extra: {INSTALL_HINT}"
                                  if unavailable else "")
        self.format_hint.setTextFormat(Qt.TextFormat.PlainText)
        self.format_hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.format_hint.setVisible(bool(unavailable))
        self.format.currentTextChanged.connect(self._format_changed)
        self.devices = QListWidget()
        self.devices.setMaximumHeight(120)
        self.t_from = QDateTimeEdit(_utc(start), displayFormat="yyyy-MM-dd HH:mm:ss 'UTC'")
        self.t_to = QDateTimeEdit(_utc(end + 1), displayFormat="yyyy-MM-dd HH:mm:ss 'UTC'")
        for edit in (self.t_from, self.t_to):
            edit.setTimeZone(QTimeZone.utc())
        self.valid_only = QCheckBox("Only valid fixes (no 0/0, valid=false, out-of-range positions)")
        self.all_params = QCheckBox("Every parameter as a column (CSV)")
        self.points = QCheckBox("A point feature per message too (GeoJSON)")
        self.gis_columns = QCheckBox("GIS columns: usable positions only, names gpsbabel and GDAL/QGIS read (CSV)")
        self.raw_text = QCheckBox("Device strings exactly as sent, no guard against spreadsheet formulas (CSV)")
        self.where = QLineEdit(placeholderText="optional filter, e.g. position.speed > 100")
        self.path = QLineEdit(str(Path.home() / f"trackmon-session-{session_id}.gpx"))
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path, 1)
        path_row.addWidget(browse)
        self.bar = QProgressBar()
        self.bar.setRange(0, 100)
        self.bar.setValue(0)
        self.status = QLabel("Reading the session…")
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.start_button = QPushButton("Export")
        self.start_button.setEnabled(False)  # until the session's devices and span are read
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Close")
        self.cancel_button.clicked.connect(self._cancel_or_close)
        form = QFormLayout()
        form.addRow("Format", self.format)
        form.addRow("", self.format_hint)
        form.addRow("Devices", with_all_none(self.devices))
        self.crop = TimeCrop(self.t_from, self.t_to, start, end + 1)  # From/To stay the filter's source
        form.addRow("Time range", self.crop)
        form.addRow("", self.valid_only)
        form.addRow("", self.all_params)
        form.addRow("", self.points)
        form.addRow("", self.gis_columns)
        form.addRow("", self.raw_text)
        form.addRow("Only messages matching", self.where)
        form.addRow("File", path_row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.bar)
        layout.addLayout(buttons)
        self.cancel_event: threading.Event | None = None
        self.thread: threading.Thread | None = None
        self._format_changed("gpx")
        self._read = BackgroundRead(recorder.open_reader, self._session_read, self._read_failed,
                                    "trackmon-export-open")
        reads = self._read
        self.destroyed.connect(lambda *_: reads.drop())  # a read landing later finds no dialog
        for widget in (self.devices, self.crop):
            widget.setEnabled(False)  # nothing to choose from until the session is read
        self._read.request(partial(read_export_choices, session_id))

    @property
    def reading(self) -> bool:
        """The session's devices and span are still being read (nothing can be exported yet)."""
        return self._read.busy

    def _session_read(self, choices: ExportChoices) -> None:
        self.source = choices.file
        for ident in choices.idents:
            self.devices.addItem(device_item(ident, choices.names.get(ident), True))
        if choices.name:
            self.title = choices.name
            self.setWindowTitle(f"Export session {self.session_id} · {choices.name}")
        self.crop.set_span(choices.start, choices.end + 1)
        for widget in (self.devices, self.crop):
            widget.setEnabled(True)
        self.status.setText("")
        self.start_button.setEnabled(True)

    def _read_failed(self, why: str) -> None:
        self.status.setText(f"Could not read the session: {why}")

    def _format_changed(self, fmt: str) -> None:
        self.valid_only.setChecked(fmt != "csv")
        self.all_params.setEnabled(fmt == "csv")
        self.points.setEnabled(fmt == "geojson")
        self.gis_columns.setEnabled(fmt == "csv")
        self.raw_text.setEnabled(fmt == "csv")
        path = Path(self.path.text())
        self.path.setText(str(path.with_suffix(SUFFIX[fmt])))

    def _browse(self) -> None:
        fmt = self.format.currentText()
        path, _ = QFileDialog.getSaveFileName(self, "Export to", self.path.text(),
                                              f"{FORMAT_HELP[fmt]} (*{SUFFIX[fmt]})")
        if path:
            self.path.setText(path)

    def point_filter(self) -> PointFilter:
        """What the dialog's choices select."""
        checked = [self.devices.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.devices.count())
                   if self.devices.item(i).checkState() == Qt.CheckState.Checked]
        idents = None if len(checked) == self.devices.count() else tuple(checked)
        return PointFilter(self.session_id, idents, float(self.t_from.dateTime().toSecsSinceEpoch()),
                           float(self.t_to.dateTime().toSecsSinceEpoch()), self.valid_only.isChecked())

    def start(self) -> None:
        """Run the export in a child process (once the session has been read), waited on by a
        worker thread: the window keeps the GIL (see `store/export_process`)."""
        if self.reading or not self.start_button.isEnabled():
            return
        fmt = self.format.currentText()
        where = self.where.text().strip()
        if where:
            try:
                compile_filter(where)  # said here, at once; the child compiles it again
            except FilterError as exc:
                self.status.setText(f"Filter: {exc}")
                return
        csv_options = {"csv_profile": "gis" if self.gis_columns.isChecked() else "trackmon",
                       "raw_text": self.raw_text.isChecked()} if fmt == "csv" else {}
        job = ExportJob(fmt, self.point_filter(), Path(self.path.text()).expanduser(), self.title,
                        all_params=self.all_params.isChecked() and fmt == "csv",
                        points=self.points.isChecked() and fmt == "geojson", where=where, csv_options=csv_options,
                        source=self.source)
        cancel = self.cancel_event = threading.Event()
        progress_bridge, finished_bridge = ThreadBridge(self._progress), ThreadBridge(self._finished)
        # The worker gets plain values, never the dialog.
        self.thread = threading.Thread(target=_export, name="trackmon-export", daemon=True,
                                       args=(self.db, job, cancel, progress_bridge, finished_bridge))
        self.start_button.setEnabled(False)
        self.cancel_button.setText("Cancel")
        self.status.setText("Exporting…")
        self.thread.start()

    def _progress(self, done: int, total: int) -> None:
        self.bar.setValue(100 if total <= 0 else min(100, round(done * 100 / total)))

    def _finished(self, message: str) -> None:
        if message.startswith("Wrote"):
            self.bar.setValue(100)
        self.status.setText(message)
        self.start_button.setEnabled(True)
        self.cancel_button.setText("Close")
        self.thread = None

    def _cancel_or_close(self) -> None:
        if self.thread is not None and self.cancel_event is not None:
            self.cancel_event.set()
            self.status.setText("Cancelling…")  # the child stops at its next block and deletes its file
        else:
            self.accept()

    def reject(self) -> None:
        """Esc or the window's close button: an export under way is cancelled (nothing is
        written), not left running unseen."""
        if self.thread is not None and self.cancel_event is not None:
            self.cancel_event.set()
        super().reject()


def _export(db: Path, job: ExportJob, cancel: threading.Event, progress: ThreadBridge,
            finished: ThreadBridge) -> None:
    """The export's worker thread: waits for the child process writing it; plain data in, plain
    data out through bridges."""
    try:
        result = export_in_child(db, job, progress.send, cancel.is_set)
    except Cancelled:
        finished.send("Cancelled: nothing was written")
    except Exception as exc:  # shown in the dialog
        finished.send(f"Failed: {exc}")
    else:
        tracks = f" and {result.tracks:,} track lines" if job.fmt == "gpkg" else ""
        finished.send(f"Wrote {result.written:,} points{tracks} to {job.target.name}")
