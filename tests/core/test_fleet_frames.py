"""Frames of the live fleet (`core/fleet_frames`): what a mirror built from them holds is what the
fleet they were built from holds — whatever the order batches were committed in, however many
positions arrived between two frames, and without the folding side keeping more than it needs."""

from __future__ import annotations

import pickle

from app.core.fleet import Fleet
from app.core.fleet_frames import FrameBuilder, MirrorFleet
from app.core.normalize import normalize

T0 = 1_700_000_000.0


class NoParams:
    def params(self, batch_id, index):
        return None


def fix(ident: str, t: float, lat: float = 50.0) -> dict:
    return {"ident": ident, "timestamp": t, "position.latitude": lat, "position.longitude": 14.0}


def mirrored(fleet: Fleet, builder: FrameBuilder, mirror: MirrorFleet) -> None:
    for frame in builder.build(folded=1, log_limit=20_000):
        mirror.apply_frame(pickle.loads(pickle.dumps(frame)), NoParams())


def test_arrivals_reach_the_mirror_whatever_order_batches_were_committed_in() -> None:
    fleet, mirror = Fleet(), MirrorFleet()
    mirror.start(1)
    builder = FrameBuilder(fleet, 1, process=7)
    fleet.apply([normalize(fix("a", T0 + 1), T0 + 10)], T0 + 10)
    mirrored(fleet, builder, mirror)
    # A batch received earlier but committed later (another stream, a large body parsed aside).
    fleet.apply([normalize(fix("a", T0 + 2), T0 + 9)], T0 + 9)
    fleet.apply([normalize(fix("a", T0 + 3), T0 + 11)], T0 + 11)
    mirrored(fleet, builder, mirror)
    assert list(mirror.devices["a"].arrivals) == list(fleet.devices["a"].arrivals)
    assert mirror.devices["a"].rate_per_min(T0 + 12) == fleet.devices["a"].rate_per_min(T0 + 12) == 3.0


def test_the_folding_side_keeps_a_minute_of_arrivals_only() -> None:
    fleet = Fleet()
    builder = FrameBuilder(fleet, 1, process=7)
    for second in range(600):  # ten minutes, a batch a second
        fleet.apply([normalize(fix("a", T0 + second), T0 + second)], T0 + second)
        builder.build(folded=second, log_limit=100)
    assert len(fleet.devices["a"].arrivals) <= 61


def test_a_trail_longer_than_the_positions_between_two_frames_arrives_whole() -> None:
    fleet, mirror = Fleet(trail_length=500), MirrorFleet(trail_length=500)
    mirror.start(1)
    builder = FrameBuilder(fleet, 1, process=7)
    fleet.apply([normalize(fix("a", T0 + i, 50.0 + i * 1e-4), T0 + 500) for i in range(400)], T0 + 500)
    mirrored(fleet, builder, mirror)
    fleet.apply([normalize(fix("a", T0 + 400 + i, 50.1 + i * 1e-4), T0 + 900) for i in range(300)], T0 + 900)
    mirrored(fleet, builder, mirror)
    assert list(mirror.devices["a"].trail) == list(fleet.devices["a"].trail)
    assert mirror.devices["a"].trail_total == fleet.devices["a"].trail_total == 700


def test_a_new_run_starts_the_mirror_over_and_says_so() -> None:
    fleet, mirror = Fleet(), MirrorFleet()
    mirror.start(1)
    fleet.apply([normalize(fix("a", T0), T0), normalize(fix("b", T0), T0)], T0)
    mirrored(fleet, FrameBuilder(fleet, 1, process=7), mirror)
    again = Fleet()  # the folding process started again: it folds the session from its start
    again.apply([normalize(fix("a", T0), T0), normalize(fix("b", T0), T0)], T0)
    (frame,) = FrameBuilder(again, 1, process=8).build(folded=1, log_limit=100)
    held = mirror.apply_frame(frame, NoParams())
    assert held  # what was shown before: let go of, and the views told to start over
    assert len(mirror.log) == 2 and mirror.total == 2  # not doubled
    assert mirror.apply_frame((2, (8, 0), 1, 0, [], [], [], None), NoParams()) is None  # another session: ignored


def test_a_session_folded_again_from_its_start_by_the_same_process_is_not_held_twice() -> None:
    # The folding process told to fold the session it folds already (as `LiveFold.start` does).
    fleet, mirror = Fleet(), MirrorFleet()
    mirror.start(1)
    builder = FrameBuilder(fleet, 1, process=7)
    builder.forget(1)
    batch = [normalize(fix("a", T0), T0), normalize(fix("b", T0 + 1), T0)]
    fleet.apply(batch, T0)
    mirrored(fleet, builder, mirror)
    fleet.clear()
    builder.forget(1)
    fleet.apply(batch, T0)
    (frame,) = builder.build(folded=1, log_limit=100)
    assert mirror.apply_frame(frame, NoParams())  # started over: what it held goes
    assert [e.message.ident for e in mirror.log] == ["a", "b"] and mirror.total == 2


def test_the_mirror_keeps_the_full_health_report_of_the_selected_device_only() -> None:
    fleet, mirror = Fleet(), MirrorFleet()
    mirror.start(1)
    builder = FrameBuilder(fleet, 1, process=7)
    fleet.apply([normalize(fix("a", T0), T0), normalize(fix("b", T0), T0)], T0)
    builder.select("a")
    mirrored(fleet, builder, mirror)
    builder.select("b")  # another device selected: its report comes, the other's goes
    mirrored(fleet, builder, mirror)
    assert list(mirror.health.devices) == ["b"]
