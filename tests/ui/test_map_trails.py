"""A device's trail and arrow on the map follow its messages: the trail holds exactly its latest
positions (as many as the trail length setting), in order, however the updates were sliced; the
arrow points the latest way, one marker per device; the selected device stands out. Real window,
real page, real loopback HTTP."""

from __future__ import annotations

import asyncio
import time

import orjson

from tests.ui.conftest import js, map_state, post, run

T0 = 1_700_000_000.0
IDENT = "van-7"


def fix(i: int) -> dict:
    return {"ident": IDENT, "timestamp": T0 + i, "position.latitude": 49.05 + i * 0.0005,
            "position.longitude": 28.60 + i * 0.0002, "position.direction": (i * 37) % 360,
            "position.speed": 40, "position.satellites": 9}


async def page_until(window, script: str, expected, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        value = await js(window, script)
        if value == expected:
            return value
        assert time.monotonic() < deadline, f"the map never showed {what}: {value!r} != {expected!r}"
        await asyncio.sleep(0.1)


def test_the_trail_holds_the_latest_positions_and_the_arrow_the_latest_heading(loop, make_window) -> None:
    window = make_window(trail_length=5)
    url = window.urls()[0]

    def expected_trail(upto: int) -> list[list[float]]:
        return [[fix(i)["position.latitude"], fix(i)["position.longitude"]] for i in range(max(0, upto - 4), upto + 1)]

    async def trail() -> list[list[float]]:
        return (await drawn())["points"]

    async def drawn() -> dict:
        return orjson.loads(await js(window, f"trackmon.trail({orjson.dumps(IDENT).decode()})"))

    arrow = (f"(() => {{ const ms = document.querySelectorAll('.tm-marker[data-id=\"{IDENT}\"]'); "
             "return ms.length + ' ' + (ms.length ? ms[0].querySelector('.tm-arrow').style.transform : '') "
             "+ (ms.length && ms[0].classList.contains('tm-selected') ? ' selected' : ''); })()")

    async def scenario() -> None:
        await map_state(window)  # the page is loaded
        # Three fixes in one batch, then one at a time while the page draws, then four in one go.
        assert await post(url, [fix(0), fix(1), fix(2)]) == 200
        await page_until(window, arrow, f"1 rotate({fix(2)['position.direction']}deg)", "the third heading")
        assert await trail() == expected_trail(2)
        for i in (3, 4, 5):
            assert await post(url, [fix(i)]) == 200
            await page_until(window, arrow, f"1 rotate({fix(i)['position.direction']}deg)", f"heading {i}")
        assert await post(url, [fix(i) for i in range(6, 10)]) == 200
        await page_until(window, arrow, f"1 rotate({fix(9)['position.direction']}deg)", "the last heading")
        deadline = time.monotonic() + 10
        while (points := await trail()) != expected_trail(9):
            assert time.monotonic() < deadline, f"trail {points} is not the latest five positions"
            await asyncio.sleep(0.1)
        plain = (await drawn())["color"]
        # Selected (as from the device table): the marker is marked and the trail turns blue; a
        # heading that arrives meanwhile still turns the arrow; another selection puts it back.
        window.select_device(IDENT)
        await page_until(window, arrow, f"1 rotate({fix(9)['position.direction']}deg) selected", "the selection")
        assert (await drawn())["color"] == "#1e88e5" != plain
        assert await trail() == expected_trail(9)  # selecting adds no point (it once re-added the last ones)
        assert await post(url, [fix(10)]) == 200
        await page_until(window, arrow, f"1 rotate({fix(10)['position.direction']}deg) selected", "heading 10")
        assert await post(url, [{**fix(0), "ident": "other"}]) == 200
        await page_until(window, "trackmon.state().includes('\"devices\":2')", True, "the second device")
        window.select_device("other")
        await page_until(window, arrow, f"1 rotate({fix(10)['position.direction']}deg)", "the selection moved on")
        assert (await drawn())["color"] == plain
        assert await trail() == expected_trail(10)

    run(loop, scenario())
