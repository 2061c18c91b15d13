"""The map finds the devices: it follows the fleet until the user moves the view, says so on the
map, clusters a crowded fleet, shows what the device list's filter shows, and never lets a queue
of updates stand between the user and *Fit all*. Real window, real page, real loopback HTTP."""

from __future__ import annotations

import asyncio
import time

import orjson

from tests.ui.conftest import js, map_state, post, run, wait_until

T0 = 1_700_000_000.0


def device(i: int, lat: float, lon: float, t: float = T0, name: str | None = None) -> dict:
    return {"ident": f"d{i:04d}", "timestamp": t, "device.name": name or f"Unit {i:04d}",
            "position.latitude": lat, "position.longitude": lon, "position.speed": 30, "position.direction": 90,
            "position.satellites": 11}


def grid(n: int, t: float = T0) -> list[dict]:
    """``n`` devices on a grid of about 4 × 3 km (a city's streets)."""
    return [device(i, 49.05 + (i % 40) * 0.001, 28.60 + (i // 40) * 0.0015, t,
                   name=("Van" if i % 10 == 0 else "Truck") + f" {i:04d}") for i in range(n)]


async def state_until(window, predicate, what: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = await map_state(window)
        if predicate(state):
            return state
        brief = {k: state[k] for k in ("devices", "shown", "view", "zoom", "bounds", "markerIcons")}
        assert time.monotonic() < deadline, f"map never showed {what}: {brief}"
        await asyncio.sleep(0.1)


def inside(state: dict, lat: float, lon: float) -> bool:
    (south, west), (north, east) = state["bounds"]
    return south <= lat <= north and west <= lon <= east


async def user_wheel_zoom(window, steps: int = 1) -> None:
    """Turn the mouse wheel over the map, as a user does (Leaflet's own wheel handler zooms)."""
    for _ in range(steps):
        await js(window, "(() => { const c = document.querySelector('.leaflet-container'); const r = "
                         "c.getBoundingClientRect(); c.dispatchEvent(new WheelEvent('wheel', {deltaY: -240, "
                         "deltaMode: 0, clientX: r.left + r.width / 2, clientY: r.top + r.height / 2, "
                         "bubbles: true, cancelable: true})); return true; })()")
        await asyncio.sleep(0.3)  # the handler zooms after a short debounce


def test_the_map_fits_the_first_fixes_and_follows_the_fleet_until_the_user_zooms(loop, make_window) -> None:
    window = make_window()
    url = window.urls()[0]

    async def scenario() -> None:
        start = await map_state(window)
        assert start["view"] == "fleet" and "waiting" in start["viewText"]
        assert await post(url, grid(3)) == 200
        state = await state_until(window, lambda s: s["devices"] == 3 and s["zoom"] >= 12, "the first fixes fitted")
        assert all(inside(state, lat, lon) for lat, lon in state["positions"].values())
        assert state["view"] == "fleet" and state["viewText"] == "Following the fleet"
        # The fleet grows: a device 30 km away is brought into view.
        assert await post(url, [device(900, 49.30, 28.90, T0 + 1)]) == 200
        state = await state_until(window, lambda s: s["devices"] == 4 and inside(s, 49.30, 28.90),
                                  "the new device in view")
        assert all(inside(state, lat, lon) for lat, lon in state["positions"].values())
        wide = state["zoom"]
        # It drives back into town: the fleet fits a closer view, and the view follows.
        assert await post(url, [device(900, 49.051, 28.601, T0 + 1.5)]) == 200
        state = await state_until(window, lambda s: s["zoom"] > wide, "the view closing in on the fleet")
        assert all(inside(state, lat, lon) for lat, lon in state["positions"].values())
        # The user zooms with the wheel: the view is theirs, and the map says how to get back.
        await user_wheel_zoom(window, 2)
        state = await state_until(window, lambda s: s["view"] == "fixed", "the view fixed after a wheel zoom")
        assert state["viewText"] == "View fixed — Fit all to resume"
        zoom = state["zoom"]
        assert await post(url, [device(901, 48.80, 28.20, T0 + 2)]) == 200
        state = await state_until(window, lambda s: s["devices"] == 5, "the fifth device")
        await asyncio.sleep(0.5)
        state = await map_state(window)
        assert state["zoom"] == zoom and not inside(state, 48.80, 28.20)  # not pulled away from the user
        # Fit all (the toolbar action) follows the fleet again.
        window.fit_action.trigger()
        state = await state_until(window, lambda s: s["view"] == "fleet", "following again after Fit all")
        assert all(inside(state, lat, lon) for lat, lon in state["positions"].values())
        assert state["viewText"] == "Following the fleet"

    run(loop, scenario())


def test_dragging_the_map_fixes_the_view_and_clicking_the_notice_resumes(loop, make_window) -> None:
    window = make_window()
    url = window.urls()[0]

    async def scenario() -> None:
        assert await post(url, grid(20)) == 200
        await state_until(window, lambda s: s["devices"] == 20 and s["zoom"] >= 12, "the fleet fitted")
        await js(window, "(() => { const c = document.querySelector('.leaflet-container'); const r = "
                         "c.getBoundingClientRect(); const x = r.left + 200, y = r.top + 200; "
                         "const opts = (dx) => ({clientX: x + dx, clientY: y + dx, button: 0, buttons: 1, "
                         "bubbles: true}); c.dispatchEvent(new MouseEvent('mousedown', opts(0))); "
                         "for (const dx of [5, 20, 60, 120]) document.dispatchEvent(new MouseEvent('mousemove', "
                         "opts(dx))); document.dispatchEvent(new MouseEvent('mouseup', opts(120))); return 1; })()")
        state = await state_until(window, lambda s: s["view"] == "fixed", "the view fixed after a drag")
        await js(window, "document.getElementById('tm-view').click()")
        state = await state_until(window, lambda s: s["view"] == "fleet", "following after clicking the notice")
        assert all(inside(state, lat, lon) for lat, lon in state["positions"].values())

    run(loop, scenario())


def test_a_thousand_devices_in_a_few_streets_are_clustered(loop, make_window) -> None:
    window = make_window()
    url = window.urls()[0]

    async def scenario() -> None:
        assert await post(url, grid(1000)) == 200
        state = await state_until(window, lambda s: s["devices"] == 1000 and s["zoom"] >= 10, "1,000 devices fitted")
        assert state["clustered"] and state["inView"] == 1000  # every device is in the view...
        assert 0 < state["markerIcons"] <= 100  # ...drawn as far fewer markers: numbered clusters
        counts = orjson.loads(await js(window, "JSON.stringify([...document.querySelectorAll('.tm-cluster')]"
                                               ".map(n => +n.textContent))"))
        assert sum(counts) + state["onScreen"] == 1000  # every device counted once
        # Zoomed in on a corner, the clusters open into single, labelled devices.
        window.select_device("d0000")
        state = await state_until(window, lambda s: s["onScreen"] > 0 and s["zoom"] >= 16, "single markers")
        assert state["inView"] < 1000 and "Van 0000" in state["visibleLabels"]

    run(loop, scenario())


def test_filtering_the_device_list_filters_the_map(loop, make_window) -> None:
    window = make_window()
    url = window.urls()[0]

    async def scenario() -> None:
        assert await post(url, [*grid(40), device(900, 49.3, 28.9, T0, name="Van far away")]) == 200
        await state_until(window, lambda s: s["devices"] == 41 and s["shown"] == 41, "all devices")
        window.device_filter.setText("van")
        state = await state_until(window, lambda s: s["shown"] == 5, "only the vans")
        assert window.device_proxy.rowCount() == 5
        assert inside(state, 49.30, 28.90)  # following the fleet: fitted to what is shown
        assert sum(1 for n in state["trails"] if n) <= 41
        # Hidden devices that move stay hidden.
        moved = [device(i, 49.05 + (i % 40) * 0.001 + 0.002, 28.60, T0 + 1) for i in range(1, 10)]
        assert await post(url, moved) == 200
        await wait_until(lambda: window.fleet.total == 50, what="the moves")
        await asyncio.sleep(0.4)
        state = await map_state(window)
        assert state["shown"] == 5 and abs(state["positions"]["d0001"][0] - 49.053) < 1e-9
        # A new device that the filter hides stays off the map.
        assert await post(url, [device(901, 49.06, 28.61, T0 + 1, name="Truck new")]) == 200
        await wait_until(lambda: window.device_model.rowCount() == 42, what="the new row")
        await asyncio.sleep(0.4)
        assert (await map_state(window))["shown"] == 5
        window.device_filter.clear()
        await state_until(window, lambda s: s["shown"] == 42, "everything again")

    run(loop, scenario())


def test_fit_all_is_not_queued_behind_map_updates_at_a_high_rate(loop, make_window) -> None:
    """At 2,000 msg/s the window used to send every frame's changes into the page whether or not it
    had drawn the previous ones; *Fit all* then waited behind that queue (~90 s measured). Now at
    most one update call is outstanding, and the page still ends with every device's latest fix."""
    window = make_window()
    url = window.urls()[0]

    async def scenario() -> None:
        await map_state(window)
        for k in range(12):  # 12,000 messages from 1,000 moving devices, as fast as they are taken
            batch = grid(1000, T0 + k)
            for m in batch:
                m["position.latitude"] += k * 1e-4
            assert await post(url, batch) == 200
            window.fit_action.trigger()
        await wait_until(lambda: window.fleet.total == 12_000, what="all messages in the fleet")
        final = {f"d{i:04d}": [49.05 + (i % 40) * 0.001 + 11 * 1e-4, 28.60 + (i // 40) * 0.0015] for i in range(1000)}
        state = await state_until(window, lambda s: s["devices"] == 1000 and all(
            abs(s["positions"][k][0] - v[0]) < 1e-9 for k, v in final.items()), "every latest fix")
        assert state["view"] == "fleet"
        assert window.map_feed.max_in_flight == 1 and window.map_feed.sent_calls >= 4
        # Markers moved in bulk are all still there, once each: clusters and single markers add up.
        counts = orjson.loads(await js(window, "JSON.stringify([...document.querySelectorAll('.tm-cluster')]"
                                               ".map(n => +n.textContent))"))
        assert sum(counts) + state["onScreen"] == state["inView"] == 1000

    run(loop, scenario(), timeout=120)
