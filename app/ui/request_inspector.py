"""One request in detail, like ngrok's inspector: what was sent (headers, body) and what we
answered (status, headers, body), with *Replay* to send it to this listener again."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable

import orjson
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.core.display import utc_text
from app.core.raw_json import indent_exact
from app.server.listener import RequestEvent
from app.server.request_replay import Answer, replay, replay_headers
from app.store.queries import batch_body, list_rejects

SHOWN_BODY = 256 * 1024  # bytes of a body shown as text (a replay sends all of it)
Runner = Callable[[Awaitable[None]], object]


def headers_text(headers: dict[str, str]) -> str:
    """'Name: value' lines."""
    return "\n".join(f"{name}: {value}" for name, value in headers.items()) or "(none kept)"


def body_text(body: bytes, total: int | None = None) -> str:
    """A body as text — JSON laid out one key per line, every value spelled as sent — cut at
    SHOWN_BODY with a note saying how much there was."""
    total = len(body) if total is None else total
    if len(body) <= SHOWN_BODY and total == len(body):
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # not JSON (e.g. a refused body): shown as it came
        else:
            return indent_exact(body)
    shown = body[:SHOWN_BODY].decode("utf-8", errors="replace")
    return shown + (f"\n… ({total - min(len(body), SHOWN_BODY):,} more bytes not shown)" if total > SHOWN_BODY or
                    total > len(body) else "")


def request_body(reader: sqlite3.Connection, event: RequestEvent) -> tuple[bytes | None, str]:
    """(the body to show and replay, a note): an accepted request's recorded batch, or a refused
    one's kept body; None when it was not kept in full (refusals keep a capped preview)."""
    if event.reject_id is not None:
        reject = next((r for r in list_rejects(reader) if r["id"] == event.reject_id), None)
        if reject is None:
            return None, "The refusal's record is gone (another session or file)."
        if not reject["body"] and reject["body_bytes"]:
            return None, ("Its body was not kept (a request that has not passed authentication keeps none): "
                          "nothing to replay.")
        if reject["body_bytes"] > len(reject["body"]):
            return reject["body"], (f"Only the first {len(reject['body']):,} of {reject['body_bytes']:,} bytes were "
                                    "kept: this request cannot be replayed.")
        return reject["body"], ""
    if event.batch_id is not None:
        try:
            return batch_body(reader, event.batch_id), ("The messages this request recorded (re-sent messages it "
                                                        "repeated are recorded once, in their first batch).")
        except KeyError:
            return None, "Its batch is no longer in this recording file."
    return None, "Nothing of this request's body was recorded."


def _text(text: str) -> QPlainTextEdit:
    box = QPlainTextEdit(text)
    box.setReadOnly(True)
    box.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
    return box


def _section(title: str, *widgets: QWidget) -> QWidget:
    page = QWidget()
    layout = QVBoxLayout(page)
    layout.setContentsMargins(0, 0, 0, 0)
    heading = QLabel(title)
    heading.setStyleSheet("font-weight: 700; color: #263238;")
    layout.addWidget(heading)
    for widget in widgets:
        layout.addWidget(widget, 1 if isinstance(widget, QPlainTextEdit) else 0)
    return page


class RequestInspector(QDialog):
    """Request and response side by side; *Replay* re-sends the request to ``url``."""

    def __init__(self, event: RequestEvent, reader: sqlite3.Connection, url: str | None, auth_header: str | None,
                 run: Runner, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Request {utc_text(event.received_at, True)} — HTTP {event.status}")
        self.resize(980, 640)
        self.request, self.url, self.auth_header, self._run = event, url, auth_header, run
        self.body, note = request_body(reader, event)
        messages = f"{event.count:,} message{'' if event.count == 1 else 's'}"
        summary = QLabel(f"POST {event.path} from {event.peer or 'unknown'} at {utc_text(event.received_at, True)} "
                         f"UTC · {event.wire_bytes:,} bytes · {messages} · answered in {event.process_ms:.1f} ms"
                         + (f" · {event.reason}" if event.reason else ""))
        summary.setTextFormat(Qt.TextFormat.PlainText)
        summary.setWordWrap(True)
        self.request_headers = _text(headers_text(event.request_headers))
        self.request_body = _text(body_text(self.body) if self.body is not None else "(not kept)")
        body_note = QLabel(note)
        body_note.setWordWrap(True)
        body_note.setStyleSheet("color: #607d8b;")
        self.response_status = QLabel(f"HTTP {event.status}")
        color = "#2e7d32" if event.status == 200 else "#b71c1c"
        self.response_status.setStyleSheet(f"font-weight: 700; color: {color};")
        self.response_headers = _text(headers_text(event.response_headers))
        self.response_body = _text(body_text(event.response_body) if event.response_body else "(empty)")
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(_section("Request", QLabel("Headers (secrets redacted)"), self.request_headers,
                                 QLabel("Body"), self.request_body, body_note))
        split.addWidget(_section("Response", self.response_status, QLabel("Headers"), self.response_headers,
                                 QLabel("Body"), self.response_body))
        self.with_auth = QCheckBox("Send this listener's own authorization header (the original's was not kept)")
        self.with_auth.setChecked(auth_header is not None)
        self.with_auth.setEnabled(auth_header is not None)
        self.replay_button = QPushButton("Replay")
        self.replay_button.setToolTip("Send this request to the listener again and show its answer")
        self.replay_button.setEnabled(self.body is not None and url is not None and not note.startswith("Only"))
        self.replay_button.clicked.connect(self.replay)
        self.replay_result = QLabel("Re-sent messages are recognised and never recorded twice." if
                                    self.replay_button.isEnabled() else note or "Nothing to replay.")
        self.replay_result.setTextFormat(Qt.TextFormat.PlainText)
        self.replay_result.setWordWrap(True)
        replay_row = QHBoxLayout()
        replay_row.addWidget(self.replay_button)
        replay_row.addWidget(self.with_auth, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(summary)
        layout.addWidget(split, 1)
        layout.addLayout(replay_row)
        layout.addWidget(self.replay_result)
        layout.addWidget(buttons)
        self.answer: Answer | None = None

    def replay(self) -> None:
        """Send the request again (on the loop); the answer shows below."""
        if self.body is None or self.url is None:
            return
        headers = replay_headers(self.request.request_headers,
                                 self.auth_header if self.with_auth.isChecked() else None)
        self.replay_button.setEnabled(False)
        self.replay_result.setText(f"Replaying to {self.url}…")
        self._run(self._replay(self.url, self.body, headers))

    async def _replay(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        answer = await replay(url, body, headers, ssl_context=False if url.startswith("https") else None)
        self.answer = answer
        self.replay_button.setEnabled(True)
        if answer.status == 0:
            self.replay_result.setText(f"Replay failed: {answer.error}")
        else:
            self.replay_result.setText(f"Replayed to {url}: HTTP {answer.status} "
                                       f"{answer.body[:500].decode('utf-8', errors='replace')}")
