"""Asking before *New session*: it empties every view, so say what happens to the current one."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget


def new_session_question(session_id: int | None, messages: int, devices: int) -> str:
    """The explanation shown: the current session is closed and kept, the views start empty."""
    current = f"Session {session_id}" if session_id is not None else "The current session"
    return (f"{current} ({messages:,} messages from {devices:,} devices) is closed and kept in the recording "
            "file: open it again from Sessions… to replay or export it.\n\n"
            "The device table, map and message log start empty; the listener (and the demo feed, if it "
            "runs) keeps going into the new session.")


def confirm_new_session(parent: QWidget, session_id: int | None, messages: int, devices: int) -> bool:
    """Ask; True only when the user chose *Start new session*."""
    box = QMessageBox(QMessageBox.Icon.Question, "Start a new session?",
                      new_session_question(session_id, messages, devices), parent=parent)
    box.setObjectName("newSessionPrompt")
    start = box.addButton("Start new session", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return box.clickedButton() is start
