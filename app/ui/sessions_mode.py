"""Sessions in the window: new session, recording on/off, the session browser, export,
re-sending, and switching between live and replay.

A mixin of `MainWindow` (it swaps the fleet the window's views show).
"""

from __future__ import annotations

import asyncio
import time
from functools import cached_property, partial

from app.core.fleet import Fleet
from app.server.replay_sender import replay_session
from app.server.stream_client import StreamSender
from app.store.replay import OpenedSession, open_session
from app.store.schema import connect
from app.ui.background_read import BackgroundRead
from app.ui.device_picker import DevicePicker
from app.ui.export_dialog import ExportDialog
from app.ui.new_session_prompt import confirm_new_session
from app.ui.replay import DENSITY_BINS, ReplayController
from app.ui.send_dialog import SendDialog
from app.ui.session_browser import SessionBrowser
from app.ui.trip_panel import duration_text


class SessionsMixin:
    """Session management and replay mode for the main window."""

    def open_sessions(self) -> SessionBrowser:
        """Show the session browser (non-modal); returns it."""
        browser = SessionBrowser(self.recorder, self)
        browser.replay_requested.connect(self.enter_replay)
        browser.export_requested.connect(self.open_export)
        browser.send_requested.connect(self._ask_send)
        browser.show()
        return browser

    def open_export(self, session_id: int) -> ExportDialog:
        """Show the export dialog for a session (it reads the session itself, off the GUI thread);
        returns it."""
        dialog = ExportDialog(self.recorder, session_id, self)
        dialog.show()
        return dialog

    def _ask_send(self, session_id: int) -> None:
        dialog = SendDialog(session_id, self)
        if dialog.exec():
            token = dialog.token.text().strip()
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            self.send_session(session_id, dialog.url.text().strip(), headers, dialog.chosen_speed())

    def send_session(self, session_id: int, url: str, headers: dict[str, str], speed: float | None) -> asyncio.Task:
        """Re-send a recorded session to a listener, like `trackmon replay`; progress in the status bar."""
        async def send() -> None:
            self.statusBar().showMessage(f"Sending session {session_id} to {url}…")
            ssl_context = False if url.startswith("https") else None
            try:
                async with StreamSender(url, headers, ssl_context=ssl_context, max_attempts=20,
                                        on_error=lambda e: self.statusBar().showMessage(f"Re-sending: {e}")) as sender:
                    stats = await replay_session(self.reader, session_id, sender, speed=speed)
            except Exception as exc:  # shown, never a crash
                self.statusBar().showMessage(f"Sending session {session_id} failed: {exc}", 15000)
                return
            self.statusBar().showMessage(f"Sent {stats.messages:,} messages of session {session_id} to {url}", 15000)
        return self._background(send())

    def ask_new_session(self) -> None:
        """*New session* from the toolbar or menu: only after the user confirms it."""
        if confirm_new_session(self, self.recorder.session_id, self.live_fleet.total, len(self.live_fleet.devices)):
            self.new_session()

    def new_session(self) -> None:
        """Close the current session and record into a fresh one."""
        session = self.recorder.start_session()
        self.releaser.later(self.live_feed.start(session))  # the views empty now, the objects go in slices
        self._rate_mark = (time.monotonic(), 0)  # the rate counts from the cleared fleet's zero
        if self.replay is None:
            self._reset_views()
        self.statusBar().showMessage(f"Recording into new session {session}", 5000)

    def _recording_toggled(self, on: bool) -> None:
        if on:
            self._background(self.start_listener())
            self._background(self.mqtt.start())  # the MQTT source too, if it is set up
        elif self.service is not None or self.mqtt.source is not None:
            self._background(self._stop_listening())

    async def _stop_listening(self) -> None:
        """Recording off: the listener stops. A running demo feed keeps running, as a flespi stream
        would: it re-sends its batch until the listener answers again (tick Recording)."""
        if self.service is not None:
            await self.service.stop()
            self.service = None
        self.link.paused_by_user()
        await self.mqtt.stop()  # unacknowledged publishes wait at the broker
        self._show_listener()

    def _reset_views(self) -> None:
        """Point every view at ``self.fleet`` afresh (a mode switch or a replay seek); the
        selected device stays selected if it is still there."""
        selected = self.selected
        self.discard_frame_in_flight()
        self.device_model.fleet = self.fleet
        self.device_model.reset()
        self.releaser.later(self.log_model.reset())
        self.map.call("clear")
        self.sent_trail.clear()
        self.sent_status.clear()
        self.selected = None
        self.inspector.show_entry(None, None)
        self.fleet.mark_all_changed()  # everything shows in the next frame
        self.frame()
        if selected in self.device_model.rows:
            self._map_clicked(selected)

    @property
    def replay_opening(self) -> bool:
        """A session is being opened for replay (read in a file reader thread)."""
        return self._replay_opener.busy

    @cached_property
    def _replay_opener(self) -> BackgroundRead:
        opener = BackgroundRead(self.recorder.open_reader, self._replay_opened, self._replay_open_failed,
                                "trackmon-replay-open")
        self.destroyed.connect(lambda *_: opener.drop())  # a session opened after the window is gone is not shown
        return opener

    def enter_replay(self, session_id: int, idents: tuple[str, ...] | None = None) -> None:
        """Show a recorded session from its start, with the timeline bar (live recording goes on).
        The session is read in a file reader thread (seconds for a long one); the window switches
        when it has been read, and the last session asked for is the one shown."""
        self.statusBar().showMessage(f"Opening session {session_id} for replay…")
        self._replay_opener.request(partial(open_session, session_id, idents, self.settings.trail_length,
                                            DENSITY_BINS))

    def _replay_open_failed(self, why: str) -> None:
        if self.replay_opening:  # a session asked for later is on its way: this one is not wanted any more
            return
        self.statusBar().showMessage(f"Could not open the session for replay: {why}", 15000)

    def _replay_opened(self, opened: OpenedSession) -> None:
        if self.replay_opening:  # the user asked for another session meanwhile: that one is shown
            return
        self.follow_recording_file()  # the session may have been read from a file the recorder just moved to
        if opened.file is not None and opened.file != self.reader.file:
            self.statusBar().showMessage("The recording file was replaced while the session was being opened: "
                                         "open it again to replay it from the file now recorded", 15000)
            return
        self.statusBar().clearMessage()
        self.leave_replay(show_live=False)
        source = opened.source.on(self.reader)
        fleet = Fleet(trail_length=self.settings.trail_length, log_size=self.live_fleet.log.maxlen or 20_000,
                      health=self.live_fleet.health.thresholds)
        # Its seeks read the file it was opened from (`reader`'s); one that has replaced it since is never read for it.
        opener = partial(connect, self.recorder.path, readonly=True, expect=self.reader.file)
        self.replay = ReplayController(source, fleet, self.settings.trail_length, opener, self.releaser, self)
        self.replay_everyone = opened.everyone
        self.replay.moved.connect(lambda _: self._replay_moved())
        self.replay.seeked.connect(lambda _: self._reset_views())
        self.replay.seek_failed.connect(
            lambda why: self.statusBar().showMessage(f"Could not read the recording at that instant: {why}", 15000))
        self.fleet = fleet
        self.replay.show(source.start, opened.start)  # the views start over from the session's first instant
        self.map.call("fitAll")
        label = f"session {source.session_id}" + (f" · {opened.name}" if opened.name else "")
        if source.filter.idents is not None:
            label += f" · {len(source.idents)} of {len(opened.everyone)} devices"
        self.replay_bar.attach(self.replay, label, opened.density)
        self.replay_bar.show()
        self.left.setCurrentIndex(1)
        self.side_tabs.setCurrentWidget(self.trip_panel)
        self.setWindowTitle(f"trackmon — REPLAY {label}")

    def leave_replay(self, show_live: bool = True) -> None:
        """Back to the live view (a session still being opened for replay is not shown)."""
        if self.replay_opening:
            self.statusBar().clearMessage()  # "Opening session N…" is not true any more
        self._replay_opener.drop()
        if self.replay is None:
            return
        self.replay.close()
        self.releaser.later(self.replay.fleet.clear())  # not all at once when the controller is deleted
        self.replay.deleteLater()
        self.replay = None
        self.replay_bar.controller = None
        self.replay_bar.hide()
        self.map.call("setStops", [])
        self.trip_panel.show_trips({}, {})
        if self.side_tabs.currentWidget() is self.trip_panel:  # trips are a replay's: live shows the inspector
            self.side_tabs.setCurrentWidget(self.inspector)
        self.setWindowTitle("trackmon")
        if show_live:
            self.fleet = self.live_fleet
            self._reset_views()

    def _replay_moved(self) -> None:
        """The replay clock moved: statuses and the chart cursor follow it."""
        self.device_model.now = self.clock()
        self.chart_panel.set_cursor(self.clock())

    def _show_trips(self) -> None:
        if self.replay is None:
            return
        names = {ident: d.name for ident, d in self.fleet.devices.items()}
        self.trip_panel.show_trips(self.replay.trips, names)
        stops = []
        for ident, trip in self.replay.trips.items():
            for stop in [*trip.stops, *filter(None, [trip.open_stop()])]:
                stops.append([stop.lat, stop.lon, f"{names.get(ident) or ident}: stopped "
                                                  f"{duration_text(stop.duration)}"])
        self.map.call("setStops", stops)

    def _choose_replay_devices(self) -> None:
        if self.replay is None:
            return
        replay = self.replay
        session = replay.source.session_id
        known = set(self.replay_everyone)
        if session == self.recorder.session_id:  # still being recorded: devices may have joined since it opened
            known |= set(self.live_fleet.devices)
        everyone = sorted(known)
        current = set(replay.source.idents)
        names = {i: d.name for i, d in self.fleet.devices.items()}
        chosen = DevicePicker.pick(self, everyone, current, names)
        if self.replay is not replay:  # another session opened while the picker was up: it stays
            return
        if chosen is not None and set(chosen) != current:
            self.enter_replay(session, None if len(chosen) == len(everyone) else tuple(chosen))

