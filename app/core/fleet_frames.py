"""The live fleet across a process boundary: the process that folds every committed message
(`store/live_fold`, beside the track chunks it derives) sends the window a frame a few times a
second with what changed, and the window's `MirrorFleet` takes it in. Pure: no Qt, no I/O.

Why: folding — normalizing, fleet state, health checks — is most of the work per message; in the
window's process it shared one interpreter lock with the listener, the recorder and the drawing.
A frame carries, per changed device, its state (latest, previous and last fix as messages, new
trail points and arrivals, its worst health finding), and per logged message a compact row: what
the log shows, plus where the message is stored. A logged message's parameters are read from the
recording when something asks for them (`LoggedMessage`), except for the selected device's, which
come with the frame (the inspector and the chart want them at once). The selected device's full
health report comes with every frame that changed it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.core.fleet import NAME_KEY, NEW_LOG_SLACK, DeviceState, Fleet, LogEntry
from app.core.health import DeviceHealth, HealthThresholds
from app.core.normalize import Message

#: A device row's previous message when it is the latest the window was sent before.
SAME_AS_SENT = "same as the latest sent before"

#: Devices and log rows in one frame at most (unpickling one in the window took ~3 ms, see `build`).
PART_DEVICES = 200
PART_ROWS = 2_000

#: Which fold a frame comes from: (the folding process's pid, how many times it started a fold).
#: A new run — the process started again, or told to fold a session from its first batch again —
#: sends the session again from its start: the mirror starts over rather than holding it twice.
Run = tuple[int, int]

#: A frame: (session id, the folding run, the newest batch folded, total messages, device rows, log
#: rows, health summaries, the selected device's health).
Frame = tuple[int, Run, int, int, list[tuple], list[tuple], list[tuple[str, int, str]],
              tuple[str, DeviceHealth] | None]


@dataclass(slots=True)
class FrameBuilder:
    """The folding side: what changed in ``fleet`` since the last frame, as frames."""

    fleet: Fleet
    session_id: int
    process: int  # the folding process's pid
    selected: str | None = None
    #: Every device's health summary is sent again (new thresholds judge all of them anew).
    resend_health: bool = False
    _sent_trail: dict[str, int] = field(default_factory=dict)
    _sent_arrival: dict[str, int] = field(default_factory=dict)
    _latest_at: dict[str, tuple[Message, tuple[int | None, int]]] = field(default_factory=dict)
    _sent_latest: dict[str, Message | None] = field(default_factory=dict)
    _folded: int = 0  # as the window was last told
    _total: int = 0
    _starts: int = 0  # folds started (`forget`)

    @property
    def run(self) -> Run:
        """The fold the frames built now belong to."""
        return self.process, self._starts

    def build(self, folded: int, log_limit: int) -> list[Frame]:
        """What changed since the last call, as frames of at most `PART_DEVICES` devices and
        `PART_ROWS` log rows each (none if nothing changed): the window unpickles each in one call
        that holds its interpreter lock, so none may take long. At most the newest ``log_limit``
        log rows; ``folded``: the newest batch taken in."""
        fleet = self.fleet
        changed, entries = fleet.take_changes()
        if self.resend_health:
            changed = list(dict.fromkeys([*changed, *fleet.devices]))
        if not changed and not entries and not self.resend_health:
            return []
        entries = entries[-log_limit:] if log_limit else []
        where = {id(e.message): e for e in entries}
        devices = []
        health = fleet.health
        summaries = []
        selected = self.selected
        full_health = None
        for ident in changed:
            d = fleet.devices[ident]
            sent = self._sent_trail.get(ident, 0)
            fresh = min(d.trail_total - sent, len(d.trail))
            self._sent_trail[ident] = d.trail_total
            trail = list(d.trail)[-fresh:] if fresh > 0 else []
            d.rate_per_min(d.last_seen)  # the arrivals of the last minute only: this process keeps no more
            fresh = min(d.arrivals_total - self._sent_arrival.get(ident, 0), len(d.arrivals))
            self._sent_arrival[ident] = d.arrivals_total
            arrivals = list(d.arrivals)[-fresh:] if fresh > 0 else []
            entry = where.get(id(d.latest))
            if entry is not None:
                self._latest_at[ident] = (entry.message, (entry.batch_id, entry.index))
            known = self._latest_at.get(ident)
            latest_at = known[1] if known is not None and known[0] is d.latest else None
            # The previous message is, as a rule, the latest the window was sent last time: said so,
            # not sent again (a message is most of what a frame weighs).
            previous = SAME_AS_SENT if d.previous is not None and self._sent_latest.get(ident) is d.previous \
                else d.previous
            self._sent_latest[ident] = d.latest
            devices.append((ident, d.first_seen, d.last_seen, d.count, d.flagged, d.name, d.latest, previous,
                            d.fix, d.trail_total, trail, arrivals, latest_at))
            summaries.append((ident, *health.worst(ident)))
            if ident == selected:
                device = health.devices.get(ident)
                full_health = (ident, device) if device is not None else None
        self.resend_health = False
        rows = [(e.seq, e.received_at, e.batch_id, e.index, m.ident, m.ts, m.server_ts, m.lat, m.lon, m.alt, m.speed,
                 m.direction, m.satellites, m.hdop, m.valid, m.flags, m.params.get(NAME_KEY), len(m.params),
                 m.params if m.ident == selected else None)
                for e in entries for m in (e.message,)]
        parts = max(1, -(-len(devices) // PART_DEVICES), -(-len(rows) // PART_ROWS))
        frames: list[Frame] = []
        for part in range(parts):
            last = part == parts - 1
            devices_part = slice(part * PART_DEVICES, (part + 1) * PART_DEVICES)
            frames.append((self.session_id, self.run, folded if last else self._folded,
                           fleet.total if last else self._total, devices[devices_part],
                           rows[part * PART_ROWS:(part + 1) * PART_ROWS], summaries[devices_part],
                           full_health if last else None))
        self._folded, self._total = folded, fleet.total
        return frames

    def empty(self, folded: int) -> Frame:
        """A frame with nothing changed: how far the fold is (and which session it folds)."""
        self._folded = folded
        return self.session_id, self.run, folded, self.fleet.total, [], [], [], None

    def select(self, ident: str | None) -> None:
        """The window selected ``ident``: its parameters and full health report travel from now on."""
        self.selected = ident
        if ident is not None and ident in self.fleet.devices:
            self.fleet._changed[ident] = None  # its report goes with the next frame

    def forget(self, session_id: int) -> None:
        """A fold from a session's first batch: frames about ``session_id`` from now on, in a new
        run (even for the same session: the window then drops what it holds of it), every device new."""
        self.session_id = session_id
        self._starts += 1
        self._folded = self._total = 0  # a frame in parts says how far the new run is only in its last
        self._sent_trail.clear()
        self._sent_arrival.clear()
        self._latest_at.clear()
        self._sent_latest.clear()


class ParamsSource(Protocol):
    """Where a logged message's parameters are read from (the recording, `store/stored_params`)."""

    def params(self, batch_id: int | None, index: int) -> dict[str, Any] | None:
        """The stored message's parameters; None when they cannot be read now."""


class LoggedMessage(Message):
    """A logged message as a frame row carries it: everything but its parameters, which are read
    from ``source`` the first time they are asked for (a filter over parameters, the inspector,
    the chart) and kept. The log shows its name and parameter count without reading them."""

    __slots__ = ("_batch_id", "_index", "_source", "name", "param_count")

    def __init__(self, row: tuple, source: ParamsSource) -> None:
        (_seq, _received_at, self._batch_id, self._index, ident, ts, server_ts, lat, lon, alt, speed, direction,
         satellites, hdop, valid, flags, self.name, self.param_count, params) = row
        self._source = source
        Message.__init__(self, ident, ts, server_ts, lat, lon, alt, speed, direction, satellites, hdop, valid, flags,
                         params)  # type: ignore[arg-type]

    @property  # type: ignore[override]
    def params(self) -> dict[str, Any]:
        params = _PARAMS.__get__(self)
        if params is None:
            params = self._source.params(self._batch_id, self._index)
            if params is None:  # not readable now: shown without, asked again next time
                return {}
            _PARAMS.__set__(self, params)
        return params

    @params.setter
    def params(self, value: dict[str, Any] | None) -> None:
        _PARAMS.__set__(self, value)

    @property
    def loaded(self) -> bool:
        """Whether the parameters are here (a frame brought them, or they were read)."""
        return _PARAMS.__get__(self) is not None


_PARAMS = Message.__dict__["params"]  # the slot behind LoggedMessage.params


class LoggedEntry(LogEntry):
    """A log entry as a frame row carries it; its `LoggedMessage` is made the first time it is
    asked for (a log holds thousands of rows per second under a backlog, and the table shows a
    few dozen)."""

    __slots__ = ("_row", "_source")

    def __init__(self, row: tuple, source: ParamsSource) -> None:
        self.seq, self.received_at, self.batch_id, self.index = row[0], row[1], row[2], row[3]
        self._row, self._source = row, source

    @property  # type: ignore[override]
    def message(self) -> Message:
        row = self._row
        if row is not None:
            _MESSAGE.__set__(self, LoggedMessage(row, self._source))
            self._row = None
        return _MESSAGE.__get__(self)

    @message.setter
    def message(self, value: Message) -> None:
        _MESSAGE.__set__(self, value)
        self._row = None


_MESSAGE = LogEntry.__dict__["message"]  # the slot behind LoggedEntry.message


def message_name(m: Message) -> str:
    """The device name a message carries, "" if none (without reading a logged message's
    parameters)."""
    name = m.name if type(m) is LoggedMessage else m.params.get(NAME_KEY)
    return "" if name is None else str(name)


def param_count(m: Message) -> int:
    """How many parameters a message has (without reading a logged message's)."""
    return m.param_count if type(m) is LoggedMessage else len(m.params)


class HealthMirror:
    """The window's view of health checked elsewhere: each device's worst finding, and the full
    report of the devices the folding process sent one for (the selected one). Stands where a
    `HealthMonitor` stands for the views."""

    def __init__(self, thresholds: HealthThresholds | None = None) -> None:
        self.thresholds = thresholds or HealthThresholds()
        self.devices: dict[str, DeviceHealth] = {}  # the full report: the selected device's
        self._worst: dict[str, tuple[int, str]] = {}

    def worst(self, ident: str) -> tuple[int, str]:
        """``ident``'s most severe warning now: (severity, check id), (0, '') when none."""
        return self._worst.get(ident, (0, ""))

    def set_thresholds(self, thresholds: HealthThresholds) -> None:
        """Judged by ``thresholds`` from now on: the folding process re-judges and sends them."""
        self.thresholds = thresholds

    def clear(self) -> list[Any]:
        held: list[Any] = list(self.devices.values())
        self.devices.clear()
        self._worst.clear()
        return held


class MirrorFleet(Fleet):
    """The window's live fleet when the folding is done elsewhere: the same state the views read,
    taken from frames (`apply_frame`) rather than folded here."""

    def __init__(self, *, trail_length: int = 200, log_size: int = 20_000,
                 health: HealthThresholds | None = None) -> None:
        super().__init__(trail_length=trail_length, log_size=log_size, health=health)
        self.health = HealthMirror(health)  # type: ignore[assignment]
        self.session_id: int | None = None
        self.run: Run | None = None
        self.folded = 0  # the newest batch of the file the folding process has taken in

    def apply(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a mirrored fleet takes frames (apply_frame), not batches")

    def apply_frame(self, frame: Frame, source: ParamsSource, current: int | None = None) -> list[Any] | None:
        """Take a frame in. ``current`` is the session being recorded now: a frame about it when
        this fleet shows another (the recorder moved on: a new session, another file) makes this
        fleet show it; a frame about any other session is ignored (None). Else what the fleet let
        go of (a new session, or the folding process started again: everything so far), for the
        caller to free when it suits."""
        session_id, run, folded, total, devices, rows, summaries, full_health = frame
        held: list[Any] = []
        if session_id != self.session_id:
            if session_id != current:
                return None
            held = self.start(session_id)
        if run != self.run:
            held += self.clear()
            self.run = run
        changed = self._changed
        for (ident, first_seen, last_seen, count, flagged, name, latest, previous, fix, trail_total, trail, arrivals,
             latest_at) in devices:
            state = self.devices.get(ident)
            if state is None:
                state = self.devices[ident] = DeviceState(ident, first_seen, last_seen,
                                                          trail=deque(maxlen=self.trail_length))
            state.last_seen, state.count, state.flagged, state.name = last_seen, count, flagged, name
            if previous == SAME_AS_SENT:
                previous = state.latest
            state.latest, state.previous, state.fix = latest, previous, fix
            state.latest_at = latest_at
            state.trail.extend(trail)  # the newest, up to a trail's length
            state.trail_total = trail_total
            state.note_arrivals(arrivals)
            changed[ident] = None
        health = self.health
        for ident, severity, check in summaries:
            health._worst[ident] = (severity, check)  # type: ignore[attr-defined]
        if full_health is not None:  # the selected device's: another's, selected before, is not kept
            health.devices.clear()
            health.devices[full_health[0]] = full_health[1]
        entries = [LoggedEntry(row, source) for row in rows]
        self.total = total
        self.folded = folded
        self.log.extend(entries)
        self._new_log.extend(entries)
        if len(self._new_log) > self.log.maxlen + NEW_LOG_SLACK:  # type: ignore[operator]
            del self._new_log[:len(self._new_log) - self.log.maxlen]  # type: ignore[operator]
        return held

    def start(self, session_id: int) -> list[Any]:
        """Show ``session_id`` from now on (empty until its frames come); what was held, to free later."""
        self.session_id, self.run = session_id, None
        return self.clear()
