"""The main window: device table, map, message log, requests, inspector and status bar.

The listener runs on this window's asyncio loop (qasync). Committed batches are folded into the
`Fleet` as they arrive; the views refresh from the fleet's changes on a 10 Hz frame timer, and
the map gets one JavaScript call per frame carrying only the devices that changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import ssl
import time
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QSplitter,
    QStackedWidget,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.fleet import DeviceState, Fleet, LogEntry, StatusThresholds
from app.core.fleet_frames import MirrorFleet
from app.core.view_lag import catching_up, lag_text
from app.server.addresses import listening_urls
from app.server.auth import HeaderAuth
from app.server.emulator import EmulatorOptions, run_emulator
from app.server.error_words import listen_problem, plain, send_problem
from app.server.listener import Listener, ListenerConfig, RequestEvent
from app.server.listener_state import ListenerState
from app.server.service import ListenerService, PortInUse
from app.server.stream_client import StreamSender
from app.server.tls import fingerprint
from app.server.tunnels import ExternalTunnel, SshTunnel, TunnelState
from app.store.mbtiles import MBTiles, MBTilesError
from app.store.queries import raw_message_bytes
from app.store.recorder import Recorder
from app.store.schema import NotTheFile, RecordingConnection, connect
from app.ui.bounded_model import ITEM_ROLE
from app.ui.chart_panel import ChartPanel
from app.ui.connection_panel import ConnectionPanel
from app.ui.device_model import IDENT_ROLE, DeviceFilterProxy, DeviceTableModel, SortHold
from app.ui.flespi_status import FlespiStatus
from app.ui.frame_pace import FramePace
from app.ui.health_panel import HealthPanel
from app.ui.health_rules import load_thresholds, save_thresholds
from app.ui.inspector import Inspector, RawUnavailable
from app.ui.label_text import set_label
from app.ui.layout_memory import remember_splitter
from app.ui.listener_thread import HandOver, ThreadedService
from app.ui.live_feed import LiveFeed
from app.ui.log_model import LogFilterProxy, MessageLogModel
from app.ui.map_feed import MapFeed
from app.ui.map_view import MapView
from app.ui.menu_bar import build_menu_bar
from app.ui.mqtt_panel import MqttController
from app.ui.reachability import ReachabilityMixin
from app.ui.recording_banner import RecordingBanner
from app.ui.replay import ReplayBar, ReplayController
from app.ui.request_inspector import RequestInspector
from app.ui.requests_model import REQUEST_SAMPLES, RequestsModel
from app.ui.sessions_mode import SessionsMixin
from app.ui.settings import OSM_ATTRIBUTION, OSM_TILES, AppSettings, RunOverrides, save_settings
from app.ui.settings_dialog import SettingsDialog
from app.ui.slow_release import SlowRelease
from app.ui.stall_banner import StallBanner
from app.ui.status_bar import StatusLine
from app.ui.table_layout import (
    DEVICE_ALWAYS_SHOWN,
    arrange_device_table,
    arrange_log_table,
    fit_columns,
    leading_width,
    readable,
)
from app.ui.trip_panel import TripPanel
from app.ui.tunnel_dialog import TunnelDialog
from app.ui.view_pacing import TextViewPacer

log = logging.getLogger(__name__)
FRAME_MS = 100
TICK_MS = 1000
LOG_CAPACITY = 20_000
LOG_STEP = 2_000  # log rows added per frame step (~4 ms): the loop answers requests in between


def _table(model) -> QTableView:
    view = QTableView()
    view.setModel(model)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    view.setAlternatingRowColors(True)
    view.setWordWrap(False)
    view.verticalHeader().setVisible(False)
    view.verticalHeader().setDefaultSectionSize(22)
    view.horizontalHeader().setHighlightSections(False)
    view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    view.horizontalHeader().setStretchLastSection(True)
    return view


class MainWindow(ReachabilityMixin, SessionsMixin, QMainWindow):
    """One recording session shown live."""

    def __init__(self, settings: AppSettings, db: Path, *, store: QSettings | None = None,
                 auth_override: HeaderAuth | None = None, ssl_context: ssl.SSLContext | None = None,
                 overrides: RunOverrides | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.store = store
        self.overrides = overrides or RunOverrides({}, {})  # command-line values: this run only
        self.db = db
        self.auth_override = auth_override
        self.ssl_context = ssl_context
        self.setWindowTitle("trackmon")
        self.resize(1440, 900)

        thresholds = load_thresholds(store)
        # The live fleet is folded by the recorder's deriver process (store/live_fold), which sends
        # what changed; the window shows it (core/fleet_frames, ui/live_feed).
        self.live_fleet = MirrorFleet(trail_length=settings.trail_length, log_size=LOG_CAPACITY, health=thresholds)
        self.fleet: Fleet = self.live_fleet  # what the views show: the live fleet, or a replay's
        self.releaser = SlowRelease()  # what a new session or a replay switch let go of, freed in slices
        self.live_feed = LiveFeed(self.live_fleet, self.releaser.later, self._live_restarted,
                                  lambda: self._show_health() if self.fleet is self.live_fleet else None)
        self.recorder = Recorder(db, on_frame=self.live_feed.receiver)
        self.live_feed.attach(self.recorder, thresholds, settings.trail_length)
        self.live_feed.start(self.recorder.start_session())
        self.reader = self.recorder.open_reader()  # the views' reads: charts, raw messages, a replay's source
        self._reader_generation = self.recorder.file_generation  # which file `reader` reads
        self.replay: ReplayController | None = None
        self.mqtt = MqttController(self.recorder, store=store)  # its batches reach the fleet as a POST's do
        self.thresholds = StatusThresholds(settings.stale_after, settings.offline_after)
        self.listener: Listener | None = None
        self.service: ThreadedService | None = None
        self.hand_over: HandOver | None = None  # the listener thread's way to the views
        self.link = ListenerState()  # the one account of the listener's state every view renders
        self.pending_requests: list[RequestEvent] = []
        self.sent_trail: dict[str, int] = {}
        self.sent_status: dict[str, str] = {}
        self.selected: str | None = None
        self.inspecting_latest = True
        self.demo_stop: asyncio.Event | None = None
        self.demo_task: asyncio.Task | None = None
        self.demo_sender: StreamSender | None = None  # the running demo's sender (its URL follows the listener)
        self.closed = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._cursor_ts: float | None = None
        self.cli_ssl_context = ssl_context  # a --tls-* option wins over Settings for this run
        self._charts_due = 0  # ticks until the charts are drawn again
        self.certificate: Path | None = None
        self._fingerprint: str | None = None  # of the listener's HTTPS certificate
        self.tunnel: SshTunnel | ExternalTunnel | None = None
        self.tunnel_state = TunnelState("stopped")
        self.tunnel_dialog: TunnelDialog | None = None
        self._rate_mark = (time.monotonic(), 0)
        self.rate = 0.0

        self._build_views()
        self._build_actions()
        build_menu_bar(self)
        self._build_status_bar()
        self.flespi_status = FlespiStatus(self.connection, self.statusBar())  # stream health from flespi's side
        self._frame_task: asyncio.Task | None = None
        self._frame_in_flight: Generator[None, None, None] | None = None  # the steps of the frame being rendered
        self.text_pacer = TextViewPacer(log_limit=self.live_fleet.log.maxlen)
        self.frame_timer = QTimer(self, interval=FRAME_MS, timeout=self._next_frame)
        self.pace = FramePace()
        self.tick_timer = QTimer(self, interval=TICK_MS, timeout=self.tick)

    # -- construction ---------------------------------------------------------------------------
    def _build_views(self) -> None:
        self.device_model = DeviceTableModel(self.fleet, self.thresholds, self)
        self.device_proxy = DeviceFilterProxy(self)
        self.device_proxy.setSourceModel(self.device_model)
        self.device_table = _table(self.device_proxy)
        self.device_table.setSortingEnabled(True)
        self.device_table.sortByColumn(2, Qt.SortOrder.AscendingOrder)  # by ident
        arrange_device_table(self.device_table)  # sized from the font, name/ident/speed/heading first
        self.device_table.selectionModel().currentRowChanged.connect(self._device_row_changed)
        self.sort_hold = SortHold(self.device_table, self.device_model)  # rows stay put under the pointer
        self.device_filter = QLineEdit(placeholderText="Filter devices (ident, name, any column)…")
        self.device_filter.setClearButtonEnabled(True)
        self.device_filter.textChanged.connect(self._filter_devices)
        self.device_count = QLabel("")
        self.device_count.setStyleSheet("color: #607d8b;")
        devices = QWidget()
        devices_layout = QVBoxLayout(devices)
        devices_layout.setContentsMargins(4, 4, 4, 4)
        filter_row = QHBoxLayout()
        filter_row.addWidget(self.device_filter, 1)
        filter_row.addWidget(self.device_count)
        devices_layout.addLayout(filter_row)
        devices_layout.addWidget(self.device_table)

        self.connection = ConnectionPanel()
        self.connection.demo_requested.connect(self.toggle_demo)
        self.connection.change_port_requested.connect(self.open_settings)
        self.connection.tunnel_requested.connect(self.open_tunnel)
        self.connection.flespi_requested.connect(self.open_flespi)
        self.connection.export_certificate_requested.connect(self._export_certificate)
        self.connection.copied.connect(lambda text: self.statusBar().showMessage(text, 3000))
        self.left = QStackedWidget()
        self.left.addWidget(self.connection)
        self.left.addWidget(devices)

        self.map = MapView("")
        self._apply_tiles()
        self.map.device_clicked.connect(self._map_clicked)
        self.map.follow_changed.connect(lambda on: self.follow_action.setChecked(on))
        self.map.ready.connect(self._map_ready)
        self.map_feed = MapFeed(self.map, self._map_row)  # sliced updates, one in flight
        self.map.call("setTrailLength", self.settings.trail_length)

        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.left)
        top.addWidget(self.map)
        top.setStretchFactor(0, 0)
        top.setStretchFactor(1, 1)
        top.setSizes([max(640, leading_width(self.device_table, DEVICE_ALWAYS_SHOWN)), 800])
        remember_splitter(top, self.store, "devices-map")

        self.log_model = MessageLogModel(LOG_CAPACITY, self)
        self.log_proxy = LogFilterProxy(self)
        self.log_proxy.setSourceModel(self.log_model)
        self.log_table = _table(self.log_proxy)
        arrange_log_table(self.log_table)
        self.log_table.selectionModel().currentRowChanged.connect(self._log_row_changed)
        self.log_filter = QLineEdit(placeholderText='Filter: words, or an expression like position.speed > 100 and '
                                                    'exists(alarm.event.trigger)')
        self.log_filter.setClearButtonEnabled(True)
        self.log_filter.textChanged.connect(self._log_filter_changed)
        self.log_filter_error = QLabel("")
        self.log_filter_error.setStyleSheet("color: #b71c1c;")
        self.log_filter_error.setTextFormat(Qt.TextFormat.PlainText)
        self.log_selected_only = QCheckBox("Selected device only")
        self.log_selected_only.toggled.connect(self._log_scope_changed)
        self.autoscroll = QCheckBox("Follow newest")
        self.autoscroll.setChecked(True)
        self.log_count = QLabel("")
        self.log_count.setStyleSheet("color: #607d8b;")
        log_bar = QHBoxLayout()
        log_bar.addWidget(self.log_filter, 1)
        log_bar.addWidget(self.log_filter_error)
        log_bar.addWidget(self.log_selected_only)
        log_bar.addWidget(self.autoscroll)
        log_bar.addWidget(self.log_count)
        log_page = QWidget()
        log_layout = QVBoxLayout(log_page)
        log_layout.setContentsMargins(4, 4, 4, 4)
        log_layout.addLayout(log_bar)
        log_layout.addWidget(self.log_table)

        self.requests_model = RequestsModel(5000, self)
        self.requests_table = _table(self.requests_model)
        readable(self.requests_table)
        fit_columns(self.requests_table, REQUEST_SAMPLES)
        self.requests_table.doubleClicked.connect(self._request_details)
        requests_hint = QLabel("Every POST that reached the listener. Refused ones are red — double-click a row "
                               "for the request and our response, and to replay it.")
        requests_hint.setStyleSheet("color: #607d8b;")
        requests_page = QWidget()
        requests_layout = QVBoxLayout(requests_page)
        requests_layout.setContentsMargins(4, 4, 4, 4)
        requests_layout.addWidget(requests_hint)
        requests_layout.addWidget(self.requests_table)

        self.tabs = QTabWidget()
        self.tabs.addTab(log_page, "Messages")
        self.tabs.addTab(requests_page, "Requests")
        self.chart_panel = ChartPanel(self.reader)
        self.tabs.addTab(self.chart_panel, "Charts")
        self.tabs.currentChanged.connect(lambda _: self._show_charts(force=True))

        self.inspector = Inspector(self._load_raw)
        self.trip_panel = TripPanel()
        self.health_panel = HealthPanel(self.live_fleet.health.thresholds)
        self.health_panel.occurrence_activated.connect(self.show_log_entry)
        self.health_panel.thresholds_changed.connect(self._health_rules_changed)
        self.side_tabs = QTabWidget()
        self.side_tabs.addTab(self.inspector, "Inspector")
        self.side_tabs.addTab(self.health_panel, "Health")
        self.side_tabs.addTab(self.trip_panel, "Trip")
        self.side_tabs.currentChanged.connect(lambda _: self._show_health())
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.tabs)
        bottom.addWidget(self.side_tabs)
        bottom.setStretchFactor(0, 3)
        bottom.setStretchFactor(1, 2)
        bottom.setSizes([860, 580])
        remember_splitter(bottom, self.store, "tabs-inspector")

        main = QSplitter(Qt.Orientation.Vertical)
        main.addWidget(top)
        main.addWidget(bottom)
        main.setStretchFactor(0, 3)
        main.setStretchFactor(1, 2)
        main.setSizes([500, 400])  # the inspector shows a screenful of parameters
        remember_splitter(main, self.store, "top-bottom")
        self.recording_banner = RecordingBanner()
        self.stall_banner = StallBanner(self.store)  # the stream stuck on one refused batch
        self.replay_bar = ReplayBar()
        self.replay_bar.hide()
        self.replay_bar.back_to_live.connect(self.leave_replay)
        self.replay_bar.devices_requested.connect(self._choose_replay_devices)
        central = QWidget()
        central_layout = QVBoxLayout(central)
        central_layout.setContentsMargins(0, 0, 0, 0)
        central_layout.setSpacing(0)
        central_layout.addWidget(self.recording_banner)
        central_layout.addWidget(self.stall_banner)
        central_layout.addWidget(self.replay_bar)
        central_layout.addWidget(main, 1)
        self.setCentralWidget(central)

    def _build_actions(self) -> None:
        bar = self.addToolBar("Main")
        bar.setObjectName("main-toolbar")
        bar.setMovable(False)
        self.demo_action = QAction("Start demo feed", self, triggered=self.toggle_demo)
        self.connection_action = QAction("Connection", self, checkable=True, toggled=self._show_connection)
        self.fit_action = QAction("Fit all", self, triggered=lambda: self.map.call("fitAll"))
        self.fit_action.setShortcut(QKeySequence("Ctrl+0"))
        self.follow_action = QAction("Follow selected", self, checkable=True,
                                     toggled=lambda on: self.map.call("setFollow", on))
        self.follow_action.setShortcut(QKeySequence("Ctrl+F"))
        self.settings_action = QAction("Settings…", self, triggered=self.open_settings)
        self.sessions_action = QAction("Sessions…", self, triggered=self.open_sessions)
        self.new_session_action = QAction("New session…", self, triggered=self.ask_new_session)
        self.recording_action = QAction("Recording", self, checkable=True, checked=True,
                                        toggled=self._recording_toggled)
        self.recording_action.setToolTip("Untick to stop listening and recording; tick to start again")
        self.tunnel_action = QAction("Tunnel…", self, triggered=self.open_tunnel)
        self.flespi_action = QAction("flespi…", self, triggered=self.open_flespi)
        self.flespi_pull_action = QAction("Import from flespi…", self, triggered=self.open_flespi_pull)
        self.mqtt_action = QAction("MQTT…", self, triggered=lambda: self.mqtt.open_dialog(self))
        for action in (self.demo_action, self.connection_action, self.recording_action, self.new_session_action,
                       self.sessions_action, self.tunnel_action, self.flespi_action, self.flespi_pull_action,
                       self.mqtt_action, self.fit_action, self.follow_action, self.settings_action):
            bar.addAction(action)

    def _build_status_bar(self) -> None:
        self.status_line = StatusLine(self.statusBar())
        self.status_line.flespi_requested.connect(self.open_flespi)
        self.status_urls, self.status_totals, self.status_file = (
            self.status_line.urls, self.status_line.totals, self.status_line.file)
        self.statusBar().addPermanentWidget(self.mqtt.label)

    def _apply_tiles(self) -> None:
        """Base layer from settings: the MBTiles file if one is chosen and usable, else the URL."""
        mbtiles = None
        if self.settings.mbtiles:
            try:
                mbtiles = MBTiles(self.settings.mbtiles)
            except MBTilesError as exc:
                self.statusBar().showMessage(f"Offline map not used: {exc}", 15000)
        url = self.settings.tile_url
        self.map.set_base_layer(url, OSM_ATTRIBUTION if url == OSM_TILES else "", mbtiles)

    # -- lifetime -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the listener and the frame timers."""
        await self.start_listener()
        self.flespi_status.watch_from_environment(self.settings.flespi_api)  # FLESPI_TOKEN set: watch 'trackmon'
        await self.mqtt.start()
        self.frame_timer.start()
        self.tick_timer.start()
        self._update_status_bar()

    async def start_listener(self) -> None:
        """(Re)start the listener with the current settings; a busy port is shown, not raised."""
        if self.service is not None:
            await self.service.stop()
            self.service = None
        s = self.settings
        auth = self.auth_override or (HeaderAuth.bearer(s.auth_token) if s.auth_token else None)
        self.listener = Listener(self.recorder, ListenerConfig(path=s.path, auth=auth))
        self.hand_over = HandOver(self._on_request)  # it runs on its own thread
        self.listener.on_request(self.hand_over.request)
        self.listener.add_status("mqtt", self.mqtt.public)  # plain data: read on the listener thread
        self.stall_banner.attach(self.listener)
        try:
            self.ssl_context, self.certificate = self._server_tls()
        except (OSError, ValueError) as exc:
            self.ssl_context, self.certificate = None, None
            self.link.failed(listen_problem(exc, s.host, s.port))
            self._show_listener()
            return
        service = ThreadedService(ListenerService(self.listener, s.host, s.port, ssl_context=self.ssl_context))
        try:
            await service.start()
        except (PortInUse, OSError) as exc:
            self.link.failed(listen_problem(exc, s.host, s.port))
            log.warning("listener not started: %s", exc)
        else:
            self.service = service
            self.link.started(service.urls(), time.time())
            if self.demo_sender is not None:  # a demo feed waiting through a pause: to the new address
                self.demo_sender.url = service.urls()[0]
        self._show_listener()

    def _live_restarted(self) -> None:
        """The live fleet started over by itself (another file or session is recorded, or the
        process folding it was started again): the views show it afresh."""
        self._rate_mark = (time.monotonic(), self.live_fleet.total)
        if self.fleet is self.live_fleet:
            self._reset_views()

    def _on_request(self, event: RequestEvent) -> None:
        self.pending_requests.append(event)  # the list is swapped every frame: look it up each time
        self.link.request(event.received_at, event.peer, event.status, event.count, duplicate=event.duplicate,
                          reason=event.reason)

    @property
    def listen_error(self) -> str:
        """Why nothing listens, in words ('' while listening)."""
        return self.link.problem

    def urls(self) -> list[str]:
        """Where the listener can be reached, or where it would be once the port is free."""
        if self.service is not None:
            return self.service.urls()
        scheme = "https" if self.ssl_context else "http"
        return listening_urls(self.settings.host, self.settings.port, self.settings.path, scheme)

    def auth_header(self) -> str | None:
        """The header a stream must send, written out in full (the user needs the real token)."""
        if self.auth_override is not None:
            return f"{self.auth_override.name}: {self.auth_override.value}"
        token = self.settings.auth_token
        return f"Authorization: Bearer {token}" if token else None

    def _show_listener(self) -> None:
        self._fingerprint = fingerprint(self.certificate) if self.certificate else None
        self._update_status_bar()

    async def shutdown(self) -> None:
        """Stop the demo feed and the listener, close the session."""
        self._replay_opener.drop()  # a session still being opened for replay is not shown any more
        if self.replay is not None:
            self.replay.close()
        self.frame_timer.stop()
        self.tick_timer.stop()
        await self.stop_tunnel()
        await self.stop_demo()
        await self.flespi_status.stop()
        await self.mqtt.stop()
        if self.service is not None:
            await self.service.stop()
            self.service = None
        self.reader.close()
        self.live_feed.close()
        self.recorder.close()
        self.releaser.now()  # what views let go of and is still waiting to be freed

    def closeEvent(self, event: QCloseEvent) -> None:
        self.closed.set()
        super().closeEvent(event)

    def _background(self, coroutine) -> asyncio.Task:
        """Run ``coroutine`` on the loop, keeping a reference until it finishes."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # report it now, not at garbage collection
            task.get_loop().call_exception_handler({"message": "background task failed", "exception":
                                                    task.exception(), "task": task})

    # -- demo feed ------------------------------------------------------------------------------
    def toggle_demo(self) -> None:
        """Start the in-process stream emulator against our own listener, or stop it."""
        if self.demo_task is not None and not self.demo_task.done():
            self._background(self.stop_demo())
            return
        if self.service is None:
            self.statusBar().showMessage("The demo feed needs the listener: " + (
                self.listen_error or "tick Recording to start it"), 8000)
            return
        url = self.service.urls()[0]
        headers = {}
        header = self.auth_header()
        if header:
            name, _, value = header.partition(": ")
            headers[name] = value
        self.demo_stop = asyncio.Event()
        options = EmulatorOptions(devices=24, batch=200, rate=12.0, seed=int(time.time()) % 1000,
                                  bad_fix_rate=0.01, backfill=600.0, headers=headers)
        self.demo_task = self._background(self._run_demo(url, headers, options, self.demo_stop))
        self._demo_changed(True)

    async def _run_demo(self, url: str, headers: dict[str, str], options: EmulatorOptions,
                        stop: asyncio.Event) -> None:
        ssl_context = False if url.startswith("https") else None
        try:
            # Re-sent every 2 s at most while the listener is paused (Recording off), as flespi would.
            async with StreamSender(url, headers, ssl_context=ssl_context, max_backoff=2.0) as sender:
                self.demo_sender = sender
                await run_emulator(sender, options, stop)
        except Exception as exc:  # shown to the user, never a crash
            log.exception("demo feed failed")
            self.statusBar().showMessage(f"Demo feed stopped: {send_problem(exc, url)}", 10000)
        finally:
            self.demo_sender = None
            self._demo_changed(False)

    async def stop_demo(self) -> None:
        """Stop the demo feed if it runs."""
        if self.demo_stop is not None:
            self.demo_stop.set()
        if self.demo_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.demo_task, 10)
            self.demo_task = None

    def _demo_changed(self, running: bool) -> None:
        self.demo_action.setText("Stop demo feed" if running else "Start demo feed")
        self.connection.set_demo_running(running)
        self.link.demo_running = running

    # -- frames ---------------------------------------------------------------------------------
    def frame(self) -> None:
        """Show everything that changed since the previous frame, in one go (a frame still being
        rendered in slices is finished first, so what it took is not shown after newer data)."""
        in_flight, self._frame_in_flight = self._frame_in_flight, None
        if in_flight is not None:
            for _ in in_flight:
                pass
        for _ in self._frame_steps(force=True):
            pass

    def discard_frame_in_flight(self) -> None:
        """The views are being reset (new session, replay seek): what a frame in flight or the
        text-view pacer still holds belongs to the old state."""
        in_flight, self._frame_in_flight = self._frame_in_flight, None
        if in_flight is not None:
            in_flight.close()
        self.text_pacer.clear()

    def _next_frame(self) -> None:
        """Timer tick (≤10 Hz): render a frame in slices, letting the loop serve requests between
        them; a frame still rendering makes this tick a no-op (its changes go in the next one)."""
        if self._frame_task is None or self._frame_task.done():
            if not self.pace.due(time.monotonic(), self.fleet.total, len(self.pending_requests)):
                return  # little waiting: a few frames a second (ui/frame_pace)
            self._frame_task = self._background(self._sliced_frame())

    async def _sliced_frame(self) -> None:
        fleet = self.fleet
        steps = self._frame_in_flight = self._frame_steps()
        try:
            for _ in steps:  # ends early if `frame` finished it or `discard_frame_in_flight` closed it
                await asyncio.sleep(0)
                if self.fleet is not fleet:  # a replay seek or mode switch replaced it: views were reset
                    return
        finally:
            if self._frame_in_flight is steps:
                self._frame_in_flight = None

    def _frame_steps(self, force: bool = False) -> Generator[None, None, None]:
        """One frame as a series of short steps (table, log, requests, map in slices); the
        table and the log take their share of the changes at their own pace (`view_pacing`)."""
        changed, new_entries = self.fleet.take_changes()
        self.text_pacer.add(self.fleet, changed, new_entries)
        table_changed, entries = self.text_pacer.take(time.monotonic(), force=force)
        requests, self.pending_requests = self.pending_requests, []
        now = self.clock()
        if table_changed:
            known = self.device_model.rowCount()
            self.device_model.refresh(table_changed, now)
            if known == 0:
                self.device_model.resort()  # the first rows: sort right away
            if self.left.currentIndex() == 0 and not self.connection_action.isChecked():
                self.left.setCurrentIndex(1)
            if self.selected in table_changed and self.inspecting_latest:
                self._inspect_latest(self.selected)
            yield
        for start in range(0, len(entries), LOG_STEP):  # a backlog's thousands of rows, a step at a time
            self.log_model.append(entries[start:start + LOG_STEP])
            if self.autoscroll.isChecked():
                self.log_table.scrollToBottom()
            yield
        if requests:
            self.requests_model.append(requests)
            self.requests_table.scrollToBottom()
        if table_changed:
            self._update_status_bar()
        if changed:
            self.map_feed.set_visible(self.device_proxy.visible_idents())
            self._send_to_map(changed, now)

    def clock(self) -> float:
        """The time the views measure ages against: now, or the replay position."""
        return self.replay.t if self.replay is not None else time.time()

    def tick(self) -> None:
        """Once a second: ages, statuses and rates move on even without new messages."""
        now = self.clock()
        self.device_model.tick(now)
        self.sort_hold.resort()
        self._log_scope_changed(self.log_selected_only.isChecked())  # the selection may be gone
        moved = [ident for ident, d in self.fleet.devices.items()
                 if d.fix is not None and self.sent_status.get(ident) != self.thresholds.status(now - d.last_seen)]
        if moved:
            self._send_to_map(moved, now)
        mark_time, mark_total = self._rate_mark
        elapsed = time.monotonic() - mark_time
        self.rate = (self.live_fleet.total - mark_total) / elapsed if elapsed > 0 else 0.0
        self._rate_mark = (time.monotonic(), self.live_fleet.total)
        if self.replay is not None:
            self._show_trips()
        self._show_health()
        waiting, oldest = self.live_feed.waiting() if self.replay is None else (0, None)
        wall = time.time()
        self.status_line.show_lag(lag_text(waiting, oldest, wall))
        self.map_feed.catching_up = catching_up(oldest, wall)  # the map then draws once a second
        self._charts_due -= 1
        if self._charts_due <= 0:
            self._show_charts(force=True)
        self._update_status_bar()

    def _device_payload(self, d: DeviceState, now: float) -> list[Any] | None:
        """One device for the map, as map.js's compact array (see `unpack` there)."""
        fix = d.fix
        if fix is None:  # never drawn without a usable position
            return None
        status = self.thresholds.status(now - d.last_seen)
        self.sent_status[d.ident] = status
        sent = self.sent_trail.get(d.ident, 0)
        fresh = d.trail_total - sent
        trail = append = None
        if fresh > 0:
            if sent == 0 or fresh >= len(d.trail):
                trail = list(d.trail)
            else:
                append = list(d.trail)[-fresh:]
            self.sent_trail[d.ident] = d.trail_total
        return [d.ident, d.name, fix.lat, fix.lon, fix.direction, status, fix.ts, fix.speed, fix.satellites,
                d.count, trail, append]

    def _send_to_map(self, idents: list[str], now: float) -> None:
        self.map_feed.push(idents)  # rows are made when sent, with the clock of that moment

    def _map_row(self, ident: str) -> list[Any] | None:
        device = self.fleet.devices.get(ident)
        return None if device is None else self._device_payload(device, self.clock())

    def _map_ready(self) -> None:
        self.map_feed.page_loaded()
        self.map.call("setTrailLength", self.settings.trail_length)
        self.sent_trail.clear()  # the page is new: send whole trails again
        self._send_to_map(list(self.fleet.devices), self.clock())

    def _update_status_bar(self) -> None:
        """Render the listener's state (one `StatusView`) in the status bar and the connection panel."""
        try:
            size = sum(p.stat().st_size for p in (self.db, Path(f"{self.db}-wal")) if p.exists())
        except OSError:
            size = 0
        self._show_recording_problem()
        self.link.public_url = self.public_url()
        fleet = self.live_fleet
        view = self.link.view(time.time(), messages=fleet.total, devices=len(fleet.devices),
                              recording_problem=self.recorder.problem, file_name=self.db.name, file_bytes=size)
        self.status_line.render(view, self.rate, self.recorder.problem or str(self.db))
        if self.replay is not None:
            set_label(self.status_totals, "Live: " + view.totals)
        self.connection.show_state(view, self.auth_header(), https_fingerprint=self._fingerprint)
        set_label(self.device_count, f"{self.device_proxy.rowCount()} of {self.device_model.rowCount()}")
        set_label(self.log_count, f"{self.log_proxy.rowCount():,} shown · last {LOG_CAPACITY:,} kept")

    def _show_recording_problem(self) -> None:
        """Banner on a recorder problem; the views read the file the recorder records into."""
        self.follow_recording_file()
        self.recording_banner.show_problem(self.recorder.problem, self.recorder.problem_since)
        self.stall_banner.refresh()

    def follow_recording_file(self) -> None:
        """When the recorder has moved on to another file at the path (a restored copy, a new
        empty file), the views read that one from now on."""
        generation = self.recorder.file_generation
        if generation == self._reader_generation:
            return
        try:  # the file the recorder has moved to (replaced again since: at a later tick)
            reader = connect(self.db, readonly=True, expect=self.recorder.file_identity)
        except (NotTheFile, sqlite3.Error) as exc:
            log.debug("the recording file the recorder moved to is not readable yet: %s", exc)
        else:
            self._read_new_file(reader, generation)

    def _read_new_file(self, reader: RecordingConnection, generation: int) -> None:
        """The recorder has moved to another file: the views read that one from now on."""
        # The old connection is not closed: a replay or an open dialog may still read through it.
        self.reader = reader
        if self.replay is not None or self.replay_opening:
            # Its session was the old file's (its reads, the chart's and the views' would part ways).
            self.leave_replay()
            self.statusBar().showMessage("The recording file was replaced by another: the replay was "
                                         "closed (open the session again to replay it from this file)", 15000)
        self.chart_panel.set_reader(self.reader)
        self._reader_generation = generation

    # -- selection ------------------------------------------------------------------------------
    def select_device(self, ident: str | None, *, focus_map: bool = True) -> None:
        """Make ``ident`` the selected device everywhere (table, map, log scope, inspector, health,
        charts), whoever asked: the table, the map, or code."""
        self.selected = ident
        self.live_feed.select(ident)  # its parameters and full health report travel with the frames
        self._select_row(ident)
        self.map.call("select", ident, focus_map)
        self._log_scope_changed(self.log_selected_only.isChecked())
        self.inspecting_latest = True
        if ident is not None:
            self._inspect_latest(ident)
        self._show_health()
        self._show_charts(force=True)

    def _filter_devices(self, text: str) -> None:
        self.device_proxy.setFilterFixedString(text)
        self.map_feed.set_visible(self.device_proxy.visible_idents())  # the map shows what the list shows
        self._select_row(self.selected)  # the selection stays; its row is highlighted when shown
        self._update_status_bar()

    def _device_row_changed(self, current, previous) -> None:
        if previous.isValid() and not self.device_proxy.accepts(previous.data(IDENT_ROLE)):
            # The filter hid the current row and Qt moved on to a neighbour: not the user's choice.
            QTimer.singleShot(0, lambda: self._select_row(self.selected))
            return
        ident = current.data(IDENT_ROLE) if current.isValid() else None
        if ident != self.selected:
            self.select_device(ident)

    def _select_row(self, ident: str | None) -> None:
        """Put the table's current row on ``ident`` (without re-selecting through the table); no
        current row while the filter hides it."""
        if ident is not None and ident not in self.device_model.rows:
            return
        index = (QModelIndex() if ident is None else
                 self.device_proxy.mapFromSource(self.device_model.index(self.device_model.rows[ident], 0)))
        if not index.isValid():
            selection = self.device_table.selectionModel()
            selection.blockSignals(True)
            selection.clear()
            selection.blockSignals(False)
            self.device_table.viewport().update()
            return
        if index.isValid() and self.device_table.currentIndex().row() != index.row():
            self.device_table.selectionModel().setCurrentIndex(
                index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
            self.device_table.scrollTo(index)

    def _map_clicked(self, ident: str) -> None:
        if ident in self.device_model.rows:
            self.select_device(ident, focus_map=False)  # the map already shows it: do not jump the view

    def _show_health(self) -> None:
        """Refresh the Health tab for the selected device, when it is the tab being shown."""
        if self.side_tabs.currentWidget() is not self.health_panel:
            return
        ident = self.selected
        device = None if ident is None else self.fleet.health.devices.get(ident)
        self.health_panel.show_device(self._label(ident) if ident is not None else "", device)

    def _health_rules_changed(self, thresholds) -> None:
        self.live_feed.set_thresholds(thresholds)
        if self.fleet is not self.live_fleet:  # a replay's, checked here
            self.fleet.health.set_thresholds(thresholds)
        save_thresholds(self.store, thresholds)
        self.device_model.refresh_health()

    def _show_charts(self, force: bool = False) -> None:
        """Chart the selected device when the Charts tab is shown (again every 5 s)."""
        if self.tabs.currentWidget() is not self.chart_panel:
            return
        session = self.replay.source.session_id if self.replay is not None else self.recorder.session_id
        self.chart_panel.show_device(self.fleet, session, self.selected)
        if force:
            self.chart_panel.redraw()
            self._charts_due = 5
        self.chart_panel.set_cursor(self.replay.t if self.replay is not None else self._cursor_ts)

    def show_log_entry(self, entry: LogEntry) -> None:
        """Select a message in the log (clearing filters that hide it) and inspect it."""
        if entry.batch_id is not None:  # a health finding's, made by the folding process: the log's own
            entry = next((e for e in reversed(self.log_model.items)
                          if e.batch_id == entry.batch_id and e.index == entry.index), entry)
        if entry not in self.log_model.items:
            self.statusBar().showMessage("That message has left the log window (it is still in the recording)", 6000)
            return
        if not self.log_proxy.filterAcceptsRow(self.log_model.items.index(entry), QModelIndex()):
            self.log_filter.clear()
            self.log_selected_only.setChecked(False)
        source = self.log_model.index(self.log_model.items.index(entry), 0)
        index = self.log_proxy.mapFromSource(source)
        self.tabs.setCurrentIndex(0)
        self.autoscroll.setChecked(False)  # stay on it
        self.log_table.setCurrentIndex(index)
        self.log_table.scrollTo(index)
        self.side_tabs.setCurrentWidget(self.inspector)

    def _log_filter_changed(self, text: str) -> None:
        self.log_proxy.set_text(text)
        self.log_filter_error.setText(self.log_proxy.error)
        self._update_status_bar()

    def _log_scope_changed(self, only_selected: bool) -> None:
        ident = self.selected if only_selected else None
        if ident != self.log_proxy.ident:
            self.log_proxy.set_ident(ident)
        self.log_selected_only.setText("Selected device only" if ident is not None or not only_selected
                                       else "Selected device only (none selected: showing all)")

    def _log_row_changed(self, current, previous) -> None:
        if not current.isValid():
            return
        entry: LogEntry = current.data(ITEM_ROLE)
        self._cursor_ts = entry.message.ts
        self.chart_panel.set_cursor(entry.message.ts if self.replay is None else self.replay.t)
        self.inspecting_latest = False
        self.inspector.show_entry(entry, self._previous_of(entry), self._label(entry.message.ident))

    def _previous_of(self, entry: LogEntry):
        """The same device's message that arrived before ``entry`` (within the kept window)."""
        ident = entry.message.ident
        for other in reversed(self.fleet.log):
            if other.seq < entry.seq and other.message.ident == ident:
                return other.message
        return None

    def _label(self, ident: str) -> str:
        device = self.fleet.devices.get(ident)
        name = device.name if device else ""
        return f"{name} · {ident}" if name else (ident or "(no ident)")

    def _inspect_latest(self, ident: str) -> None:
        device = self.fleet.devices.get(ident)
        if device is None or device.latest is None:
            return
        if device.latest_at is not None:  # the live fleet's: where the folding process found it stored
            entry = LogEntry(0, device.last_seen, device.latest, *device.latest_at)
        else:
            entry = next((e for e in reversed(self.fleet.log) if e.message is device.latest), None)
            if entry is None:
                entry = LogEntry(0, device.last_seen, device.latest)
        self.inspector.show_entry(entry, device.previous, self._label(ident) + " — latest")

    def _load_raw(self, entry: LogEntry) -> Any:
        if entry.batch_id is None:
            return entry.message.params
        try:
            return raw_message_bytes(self.reader, entry.batch_id, entry.index)
        except Exception as exc:  # file moved away, session deleted, body unreadable: said in the raw view
            raise RawUnavailable(plain(exc)) from exc

    # -- panels and dialogs -----------------------------------------------------------------------
    def _show_connection(self, shown: bool) -> None:
        if shown:
            self.left.setCurrentIndex(0)
        elif self.fleet.devices:
            self.left.setCurrentIndex(1)

    def _request_details(self, index) -> RequestInspector:
        """The request and our response in detail, with Replay (non-modal; returned)."""
        event: RequestEvent = self.requests_model.data(index, ITEM_ROLE)
        url = self.service.urls()[0] if self.service is not None else None
        dialog = RequestInspector(event, self.reader, url, self.auth_header(), self._background, self)
        dialog.show()
        return dialog

    def open_settings(self) -> None:
        """Edit settings; listener changes restart it, view changes apply at once."""
        dialog = SettingsDialog(self.settings, self, overridden=self.overrides.describe())
        if not dialog.exec():
            return
        self.apply_settings(dialog.result_settings())

    def apply_settings(self, new: AppSettings) -> None:
        """Use ``new`` from now on (and save it)."""
        old, self.settings = self.settings, new
        if self.store is not None:
            save_settings(self.store, self.overrides.persistent(new))
        self.thresholds = StatusThresholds(new.stale_after, new.offline_after)
        self.device_model.thresholds = self.thresholds
        if new.trail_length != old.trail_length:
            self.live_feed.set_trail_length(new.trail_length)
            if self.fleet is not self.live_fleet:
                self.fleet.set_trail_length(new.trail_length)
            self.map.call("setTrailLength", new.trail_length)
        if (new.tile_url, new.mbtiles) != (old.tile_url, old.mbtiles):
            self._apply_tiles()
        listener_keys = ("host", "port", "path", "token", "require_token", "tls_mode", "tls_cert", "tls_key")
        if any(getattr(new, k) != getattr(old, k) for k in listener_keys):
            self._background(self.start_listener())
        self.tick()

    def with_settings(self, **changes: Any) -> AppSettings:
        """A copy of the current settings with ``changes`` (for callers and tests)."""
        return replace(self.settings, **changes)
