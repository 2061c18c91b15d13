"""A new session, and leaving a replay, empty the views at once and free what they held over the
loop's next turns (a full log is a million objects: freeing it in one go froze the window for a
quarter to half a second under load), and every one of those objects is let go."""

from __future__ import annotations

import sys

from tests.ui.conftest import enter_replay, health_shown, post, run, wait_until


def batch(devices: int, per_device: int, start: float = 1_700_000_000.0) -> list[dict]:
    return [{"ident": f"dev-{d}", "timestamp": start + 10.0 * i, "position.latitude": 50.0 + d * 0.01,
             "position.longitude": 14.0 + i * 0.001, "position.speed": 30, "device.name": f"Truck {d}"}
            for i in range(per_device) for d in range(devices)]


def test_a_new_session_empties_the_views_now_and_frees_the_old_one_over_later_turns(loop, make_window) -> None:
    window = make_window()

    async def fill() -> None:
        assert await post(window.urls()[0], batch(200, 15)) == 200
        await wait_until(lambda: window.log_model.rowCount() == 3_000 and window.device_model.rowCount() == 200,
                         what="the batch in the log and the table")

    run(loop, fill())
    window.select_device("dev-7")  # its full health report comes to the window
    health_shown(loop, window, "dev-7")
    entry = window.log_model.items[0]
    device = window.live_fleet.devices["dev-7"]
    health = window.live_fleet.health.devices["dev-7"]
    assert sys.getrefcount(entry) > 2 and sys.getrefcount(device) > 2

    window.new_session()
    assert window.log_model.rowCount() == 0 and window.device_model.rowCount() == 0  # the views: at once
    assert window.live_fleet.total == 0 and not window.live_fleet.devices
    assert window.releaser.pending() > 0  # the objects: not in this turn of the loop

    run(loop, wait_until(lambda: window.releaser.pending() == 0, what="the old session freed"))
    # Nothing else holds them: only this test's names (and getrefcount's argument).
    assert sys.getrefcount(entry) == 2 and sys.getrefcount(device) == 2 and sys.getrefcount(health) == 2

    async def record_again() -> None:  # the new session records and shows as before
        assert await post(window.urls()[0], batch(3, 2, start=1_700_100_000.0)) == 200
        await wait_until(lambda: window.device_model.rowCount() == 3 and window.log_model.rowCount() == 6,
                         what="the new session's first batch")

    run(loop, record_again())


def test_leaving_a_replay_frees_the_replayed_fleet(loop, make_window) -> None:
    window = make_window()

    async def fill() -> None:
        assert await post(window.urls()[0], batch(20, 30)) == 200
        await wait_until(lambda: window.live_fleet.total == 600, what="the batch folded")

    run(loop, fill())
    session = window.recorder.session_id
    window.new_session()
    enter_replay(loop, window, session)
    run(loop, wait_until(lambda: window.fleet is window.replay.fleet and window.fleet.devices,
                         what="the first instant"))
    replayed = next(iter(window.fleet.devices.values()))
    window.replay.step_forward()
    run(loop, wait_until(lambda: window.log_model.rowCount() > 20, what="a step of the replay in the log"))
    stepped = window.log_model.items[-1]

    window.leave_replay()
    assert window.fleet is window.live_fleet and window.log_model.rowCount() == 0
    run(loop, wait_until(lambda: window.releaser.pending() == 0, what="the replay freed"))
    assert sys.getrefcount(replayed) == 2 and sys.getrefcount(stepped) == 2
