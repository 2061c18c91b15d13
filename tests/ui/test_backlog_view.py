"""After a backlog, the window shows every device's latest state.

Committed batches are folded into the fleet after the listener has answered, by the recorder's
deriver process, per device (`store/live_fold`, `core/fleet`), and reach the window as frames
(`ui/live_feed`): a backlog posted as fast as the window acknowledges, from two
streams at once, must still end with each device's newest message (by device time, even when an
older one arrived last) in the table, the log, the inspector's source and the map.
"""

from __future__ import annotations

import asyncio
import time

import orjson

from app.ui.device_model import COLUMNS
from tests.ui.conftest import map_state, post, run, wait_until

COLUMN = {name: i for i, (name, *_rest) in enumerate(COLUMNS)}
DEVICES = 60
PER_DEVICE = 40
BATCHES = (1_100, 200)  # per stream: the first's batches are folded in several slices


def backlog(stream: int, start: float) -> list[dict]:
    """Half the fleet's history, device-interleaved as a tracker platform uploads it."""
    messages = []
    for step in range(PER_DEVICE):
        for d in range(stream, DEVICES, 2):
            messages.append({"ident": f"dev{d:02d}", "device.name": f"Unit {d} v{step}",
                             "timestamp": start + step * 5.0, "position.latitude": 49.0 + d * 0.01 + step * 1e-4,
                             "position.longitude": 16.0 + step * 1e-4, "position.speed": float(step),
                             "position.valid": True, "seq": step})
    return messages


def test_a_backlog_from_two_streams_ends_with_every_device_latest_state(loop, make_window) -> None:
    window = make_window()
    start = time.time() - 3600
    streams = [backlog(0, start), backlog(1, start)]
    # A late upload of old history for one device, after its newest message: it must not become
    # the latest (it is counted and logged).
    stale = {"ident": "dev07", "device.name": "Unit 7 stale", "timestamp": start - 60, "position.latitude": 10.0,
             "position.longitude": 10.0, "position.speed": 99.0, "position.valid": True, "seq": -1}
    streams[1].append(stale)
    total = sum(len(s) for s in streams)

    async def deliver(messages: list[dict], size: int) -> None:  # one request in flight, next after the 200
        for first in range(0, len(messages), size):
            assert await post(window.urls()[0], messages[first:first + size]) == 200

    async def scenario() -> None:
        await asyncio.gather(*(deliver(s, size) for s, size in zip(streams, BATCHES, strict=True)))
        await wait_until(lambda: window.live_fleet.total == total and window.live_feed.caught_up(),
                         what="the whole backlog folded in")

    run(loop, scenario())
    window.frame()
    fleet = window.live_fleet
    model = window.device_model
    assert model.rowCount() == DEVICES == len(fleet.devices)
    last = PER_DEVICE - 1
    for d in range(DEVICES):
        ident = f"dev{d:02d}"
        state = fleet.devices[ident]
        extra = 1 if ident == "dev07" else 0
        assert state.count == PER_DEVICE + extra
        assert state.latest is not None and state.latest.params["seq"] == last, ident
        assert state.previous is not None and state.previous.params["seq"] == last - 1, ident
        assert state.fix is state.latest and state.name == f"Unit {d} v{last}"
        assert state.trail_total == PER_DEVICE and list(state.trail)[-1] == (state.latest.lat, state.latest.lon)
        row = model.rows[ident]
        shown = {name: model.index(row, COLUMN[name]).data() for name in ("Name", "Msgs", "Speed", "Position")}
        assert shown["Name"] == f"Unit {d} v{last}" and shown["Msgs"] == str(PER_DEVICE + extra), shown
        assert shown["Speed"].startswith(f"{last}") and shown["Position"] != "no fix", shown
    # The log holds every message once, in the order they were committed per stream.
    seqs = [(e.message.ident, e.message.params["seq"]) for e in fleet.log]
    assert len(seqs) == len(set(seqs)) == total
    for d in range(DEVICES):
        mine = [seq for ident, seq in seqs if ident == f"dev{d:02d}"]
        assert mine[:PER_DEVICE] == list(range(PER_DEVICE))
    assert window.log_model.rowCount() == total
    assert window.log_model.items[-1].message.params["seq"] in (last, -1)
    # The inspector's raw JSON for the newest log entry is that very message, from the recording.
    entry = fleet.log[-1]
    sent = {(m["ident"], m["seq"]): m for stream in streams for m in stream}
    assert orjson.loads(window._load_raw(entry)) == sent[entry.message.ident, entry.message.params["seq"]]

    async def on_the_map() -> dict:
        await wait_until(lambda: not window.map_feed.pending and not window.map_feed.in_flight, what="map fed")
        return await map_state(window)

    state = run(loop, on_the_map())
    assert state["devices"] == DEVICES
    for d in range(DEVICES):
        latest = fleet.devices[f"dev{d:02d}"].latest
        assert state["positions"][f"dev{d:02d}"] == [latest.lat, latest.lon]
