"""The window while a stream is stuck on one refused batch: the banner says so and what to change,
and its setting accepts the batch as flagged so the stream moves on."""

from __future__ import annotations

import sqlite3

from app.store.stuck import list_stuck
from tests.ui.conftest import post, run, wait_until

POISON = b"[1, 2, 3, 4]"  # an array, but not of message objects: refused 422 every time


def test_the_banner_shows_a_stuck_stream_and_accepting_lets_it_move_on(loop, make_window) -> None:
    window = make_window()
    url = window.urls()[0]

    async def refused_three_times() -> None:
        for _ in range(3):
            assert await post(url, raw=POISON) == 422
        window.tick()
        await wait_until(lambda: window.stall_banner.isVisible(), what="the stall banner")

    run(loop, refused_three_times())
    text = window.stall_banner.label.text()
    assert "stuck" in text and "refused 3 times" in text and "HTTP 422" in text
    assert "format settings" in text  # what to change
    assert window.stall_banner.accept.isVisible() and not window.listener.stalls.accept

    window.stall_banner.accept.setChecked(True)  # the setting, applied to the running listener

    async def accepted() -> None:
        assert await post(url, raw=POISON) == 200
        window.tick()
        await wait_until(lambda: not window.stall_banner.isVisible(), what="the banner to go")

    run(loop, accepted())
    conn = sqlite3.connect(window.db)
    stuck = list_stuck(conn)
    conn.close()
    assert [s["body"] for s in stuck] == [POISON] and window.listener.stats.stuck == 1
