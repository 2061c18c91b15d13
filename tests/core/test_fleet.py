"""The live fleet state that every view reads."""

from __future__ import annotations

from app.core.fleet import NEW_LOG_SLACK, Fleet, StatusThresholds, changed_params
from app.core.normalize import normalize


def msg(ident: str, ts: float, lat: float | None = 49.0, lon: float | None = 28.0, **extra) -> object:
    raw = {"ident": ident, "timestamp": ts, **extra}
    if lat is not None:
        raw["position.latitude"], raw["position.longitude"] = lat, lon
    return normalize(raw, 1000.0)


def test_apply_tracks_latest_fix_counts_and_changes() -> None:
    fleet = Fleet(trail_length=3)
    fleet.apply([msg("a", 1, **{"device.name": "Van"}), msg("b", 1), msg("a", 2, lat=0, lon=0)], 100.0, batch_id=7)
    changed, entries = fleet.take_changes()
    assert changed == ["a", "b"]
    assert [(e.batch_id, e.index) for e in entries] == [(7, 0), (7, 1), (7, 2)]
    a = fleet.devices["a"]
    assert a.count == 2 and a.name == "Van" and a.flagged == 1
    assert a.latest.ts == 2 and a.previous.ts == 1
    assert a.fix.ts == 1  # the 0/0 message is never the position
    assert list(a.trail) == [(49.0, 28.0)]
    assert fleet.take_changes() == ([], [])


def test_late_messages_are_history_not_the_current_state() -> None:
    fleet = Fleet()
    fleet.apply([msg("a", 10, lat=1.0)], 100.0)
    fleet.apply([msg("a", 5, lat=2.0)], 101.0)  # a buffered, older message arrives later
    a = fleet.devices["a"]
    assert a.latest.ts == 10 and a.fix.lat == 1.0 and a.count == 2 and a.last_seen == 101.0


def test_trails_are_bounded_and_count_every_position() -> None:
    fleet = Fleet(trail_length=3)
    fleet.apply([msg("a", t, lat=float(t)) for t in range(1, 6)], 1.0)
    a = fleet.devices["a"]
    assert [p[0] for p in a.trail] == [3.0, 4.0, 5.0] and a.trail_total == 5
    fleet.set_trail_length(2)
    assert [p[0] for p in fleet.devices["a"].trail] == [4.0, 5.0]


def test_rate_and_status_follow_time() -> None:
    fleet = Fleet()
    fleet.apply([msg("a", 1), msg("a", 2)], 100.0)
    fleet.apply([msg("a", 3)], 130.0)
    a = fleet.devices["a"]
    assert a.rate_per_min(130.0) == 3.0
    assert a.rate_per_min(165.0) == 1.0  # the first batch left the one-minute window
    thresholds = StatusThresholds(stale_after=60, offline_after=600)
    assert [thresholds.status(age) for age in (0, 59, 60, 599, 600)] == \
        ["online", "online", "stale", "stale", "offline"]


def test_log_window_keeps_only_the_newest() -> None:
    fleet = Fleet(log_size=4)
    fleet.apply([msg("a", t) for t in range(10)], 1.0)
    _, entries = fleet.take_changes()
    assert [e.message.ts for e in fleet.log] == [6, 7, 8, 9]
    assert [e.message.ts for e in entries] == [6, 7, 8, 9]


def test_changes_not_taken_keep_no_more_than_the_log_window() -> None:
    """While the views show a replay, nobody takes the live fleet's changes: what waits for the
    next frame stays bounded, and that frame still gets the newest log window."""
    fleet = Fleet(log_size=100)
    for start in range(0, 50_000, 500):
        fleet.apply([msg("a", t) for t in range(start, start + 500)], 1.0)
        assert len(fleet._new_log) <= 100 + NEW_LOG_SLACK
    _, entries = fleet.take_changes()
    assert [e.message.ts for e in entries] == list(range(49_900, 50_000))


def test_changed_params_names_added_removed_and_changed() -> None:
    before = msg("a", 1, speed=1, gone=True)
    after = msg("a", 2, speed=2, new="x")
    assert changed_params(after, before) == {"timestamp": "changed", "speed": "changed", "gone": "removed",
                                             "new": "added"}
    assert changed_params(after, None) == {}
