"""The session browser: every recording session with its figures; rename, note, delete, replay,
export and import.

The list is read off the GUI thread (`BackgroundRead`): its counts run over every batch of the
file, which took up to 1.5 s on a 9-million-message file with a cold cache, while the window has
to keep drawing the live stream."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from app.core.display import utc_text
from app.store.faults import FileId, FileReplaced, RecordingUnavailable, file_id
from app.store.importers import ImportError_, import_with
from app.store.queries import SessionList, SessionSummary, read_sessions
from app.store.recorder import Recorder
from app.ui.background_read import BackgroundRead
from app.ui.thread_bridge import ThreadBridge

HEADERS = ("ID", "Name", "Note", "First message (UTC)", "Last message (UTC)", "Devices", "Messages", "Re-sent msgs",
           "Rejects", "Stored", "State")


class SessionBrowser(QDialog):
    """Lists sessions; the window reacts to `replay_requested` and `export_requested`."""

    replay_requested = Signal(int)
    export_requested = Signal(int)
    send_requested = Signal(int)
    import_finished = Signal(str)  # '' on success, else the error (emitted on the GUI thread)

    def __init__(self, recorder: Recorder, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Sessions")
        self.resize(1100, 460)
        self.recorder = recorder
        self.sessions: list[SessionSummary] = []
        self.file: FileId | None = None  # the file the list was read from: its session ids are that file's
        self.file_label = QLabel("Reading sessions…")
        self.last_import_summary = ""
        #: What the label says instead of the file's name: an import running, then its summary, or why
        #: a change was not made (until the user changes a session).
        self._import_note = ""
        self._read = BackgroundRead(recorder.open_reader, self._show, self._read_failed, "trackmon-sessions")
        reads = self._read
        self.destroyed.connect(lambda *_: reads.drop())  # a read landing later finds no table
        self.file_label.setTextFormat(Qt.TextFormat.PlainText)
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.doubleClicked.connect(lambda _: self._replay())
        buttons = QHBoxLayout()
        self.actions: dict[str, QPushButton] = {}
        for label, handler in (("Replay", self._replay), ("Rename…", self._rename), ("Note…", self._note),
                               ("Export…", self._export), ("Send to URL…", self._send), ("Delete…", self._delete),
                               ("Import GPX/CSV…", self._import)):
            button = QPushButton(label)
            button.clicked.connect(handler)
            buttons.addWidget(button)
            self.actions[label] = button
        buttons.addStretch(1)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.file_label)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        self.refresh()

    @property
    def reading(self) -> bool:
        """The list is being read; the table still shows the previous read."""
        return self._read.busy

    def refresh(self) -> None:
        """Re-read the sessions from the file, in the background (`reading` until the table
        shows them)."""
        if not self._import_note:
            self.file_label.setText("Reading sessions…")  # the rows shown may be out of date meanwhile
        self._read.request(read_sessions)

    def _changed(self, session_id: int, **fields: str) -> None:
        """The user changed a session's name or note (no ``fields``: deleted it): shown at once,
        then the list is read again; what an earlier import said makes way for it."""
        row = next((r for r in range(self.table.rowCount()) if self.table.item(r, 0).text() == str(session_id)), None)
        if not fields:
            self.sessions = [s for s in self.sessions if s.id != session_id]
            if row is not None:
                self.table.removeRow(row)
        else:
            self.sessions = [replace(s, **fields) if s.id == session_id else s for s in self.sessions]
            for field, text in fields.items():
                if row is not None:
                    self.table.item(row, HEADERS.index(field.capitalize())).setText(text)
        self._import_note = ""
        self.refresh()

    def _read_failed(self, error: str) -> None:
        self.file_label.setText(f"Could not read the sessions of {self.recorder.path}: {error}")

    def _show(self, read: SessionList) -> None:
        # The same session stays selected, unless the list is another file's (its id is another session there).
        selected = self.selected() if read.file == self.file else None
        self.sessions, sizes, self.file = read.sessions, read.sizes, read.file
        self.file_label.setText(self._import_note or f"{self.recorder.path}  ·  {len(self.sessions)} sessions")
        # Columns sized to their contents re-measure every row on every cell set: O(rows² × columns),
        # 6 s for 150 sessions. Fill with fixed columns and no repaints, then size once.
        header = self.table.horizontalHeader()
        self.table.setUpdatesEnabled(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.setRowCount(len(self.sessions))
        for row, s in enumerate(reversed(self.sessions)):
            state = ("recording" if s.id == self.recorder.session_id
                     else "closed" if s.ended_at is not None else "interrupted")
            cells = (str(s.id), s.name, s.note, utc_text(s.first_ts), utc_text(s.last_ts), str(s.devices),
                     f"{s.messages:,}", f"{s.duplicates:,}", str(s.rejects), f"{sizes.get(s.id, 0) / 1e6:.1f} MB",
                     state)
            for column, text in enumerate(cells):
                self.table.setItem(row, column, QTableWidgetItem(text))  # plain text, never HTML
        self._size_columns()
        self.table.setUpdatesEnabled(True)
        rows = [r for r in range(self.table.rowCount())
                if selected is not None and self.table.item(r, 0).text() == str(selected.id)]
        if rows:  # the same session stays selected when the list is read again
            self.table.selectRow(rows[0])
        elif self.sessions:
            # Newest session that is not being recorded: the one a user most likely wants to replay.
            rows = [r for r in range(self.table.rowCount()) if self.table.item(r, 10).text() != "recording"]
            self.table.selectRow(rows[0] if rows else 0)

    def _size_columns(self) -> None:
        """Every column as wide as its contents, once; the note column takes the rest."""
        header = self.table.horizontalHeader()
        self.table.resizeColumnsToContents()
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)

    def selected(self) -> SessionSummary | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        session_id = int(self.table.item(rows[0].row(), 0).text())
        return next((s for s in self.sessions if s.id == session_id), None)

    def chosen(self) -> SessionSummary | None:
        """The selected session, if the list was read from the file now at the path; else None,
        and the list is read again (a session id of a file that has been replaced names another
        session, or none, in the file there now)."""
        session = self.selected()
        now = file_id(self.recorder.path)
        if session is not None and self.file is not None and now != self.file:
            what = "deleted or moved away" if now is None else "replaced by another file"
            self._refused(f"The recording file {self.recorder.path} was {what} since the sessions were "
                          "listed: the list was read again; choose again")
            return None
        return session

    def _refused(self, why: str) -> None:
        """Say why a change was not made (instead of the file's name) and read the list again."""
        self._import_note = why
        self.file_label.setText(why)
        self.refresh()

    def _replay(self) -> None:
        session = self.chosen()
        if session is not None:
            self.replay_requested.emit(session.id)
            self.accept()

    def _export(self) -> None:
        session = self.chosen()
        if session is not None:
            self.export_requested.emit(session.id)

    def _send(self) -> None:
        session = self.chosen()
        if session is not None:
            self.send_requested.emit(session.id)

    def _rename(self) -> None:
        session, listed_in = self.chosen(), self.file  # the list may be read again while the box is open
        if session is None:
            return
        name, ok = QInputDialog.getText(self, "Rename session", "Name:", text=session.name)
        if ok and self._made(lambda: self.recorder.rename_session(session.id, name.strip(), file=listed_in)):
            self._changed(session.id, name=name.strip())

    def _note(self) -> None:
        session, listed_in = self.chosen(), self.file
        if session is None:
            return
        note, ok = QInputDialog.getMultiLineText(self, "Session note", "Note:", session.note)
        if ok and self._made(lambda: self.recorder.set_note(session.id, note.strip(), file=listed_in)):
            self._changed(session.id, note=note.strip())

    def _made(self, change: Callable[[], None]) -> bool:
        """Make a change in the file the list was read from; False (said, the list read again) if
        it was refused: that file replaced since, or nothing can be written now."""
        try:
            change()
        except (FileReplaced, RecordingUnavailable) as exc:
            self._refused(f"Not changed: {exc}")
            return False
        return True

    def _delete(self) -> None:
        session, listed_in = self.chosen(), self.file
        if session is None:
            return
        if session.id == self.recorder.session_id:
            QMessageBox.information(self, "Delete session", "This session is being recorded. Start a new "
                                                            "session first, then delete this one.")
            return
        answer = QMessageBox.question(
            self, "Delete session", f"Delete session {session.id} ({session.messages:,} messages)? "
                                    "This cannot be undone.")
        if answer == QMessageBox.StandardButton.Yes and self._made(
                lambda: self.recorder.delete_session(session.id, file=listed_in)):
            self._changed(session.id)

    def _import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import track", "", "Tracks (*.gpx *.csv);;All files (*)")
        if path:
            self.import_path(Path(path))

    def import_path(self, path: Path) -> threading.Thread:
        """Import a file as a new session in a worker thread (the window and live recording go
        on); the table refreshes when it is done and errors are shown, not raised."""
        self._import_note = f"Importing {path.name}…"
        self.file_label.setText(self._import_note)
        self.actions["Import GPX/CSV…"].setEnabled(False)

        done = ThreadBridge(self._import_done)
        thread = threading.Thread(target=_import_file, args=(self.recorder, path, done), name="trackmon-import",
                                  daemon=True)
        thread.start()
        return thread

    def _import_done(self, error: str, summary: str = "") -> None:
        self.actions["Import GPX/CSV…"].setEnabled(True)
        self.last_import_summary = summary
        # What was imported and what was not, over the table (plain text), until the user changes a session.
        self._import_note = summary
        if summary:
            self.file_label.setText(summary)
        self.refresh()
        if error:
            box = QMessageBox(QMessageBox.Icon.Warning, "Import", error, parent=self)
            box.setTextFormat(Qt.TextFormat.PlainText)  # the message can quote a file's name or content
            box.open()
        self.import_finished.emit(error)


def _import_file(recorder: Recorder, path: Path, done: ThreadBridge) -> None:
    """The import, in its worker thread; it holds no Qt object and reports through ``done``."""
    try:
        # Parsed in a child process whatever its size: a parse in this process holds the GIL the
        # GUI thread needs to paint (soak stalls, docs/benchmarks.md); starting one costs ~0.1 s.
        summary = import_with(recorder, path, child_from=0)
    except (ImportError_, OSError, UnicodeDecodeError) as exc:
        done.send(str(exc))
    except Exception as exc:  # e.g. the recording became unavailable: said, never a dialog stuck at "Importing…"
        done.send(f"Import failed: {exc}")
    else:
        done.send("", summary.text())
