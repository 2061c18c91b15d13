"""The window's listener runs on its own thread: a request is answered while the window's loop is
busy, a batch too (it is folded by the recorder's deriver process, not by the window), and the
batch reaches the live fleet once the window's loop is free again."""

from __future__ import annotations

import threading
import urllib.request

import orjson

from app.ui.listener_thread import ListenerThread
from tests.ui.conftest import TOKEN, run, wait_until


def test_status_and_a_batch_are_answered_while_the_window_loop_is_busy(loop, make_window) -> None:
    window = make_window()
    url = window.urls()[0]
    status_url = url.rsplit("/", 1)[0] + "/status"
    batch = [{"ident": f"d{i % 5}", "timestamp": 1_700_000_000 + i} for i in range(300)]
    seen: dict[str, object] = {}
    status_done, post_done, release = threading.Event(), threading.Event(), threading.Event()

    def post() -> None:
        request = urllib.request.Request(url, data=orjson.dumps(batch), headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=60) as reply:
            seen["post"] = reply.status
        post_done.set()

    def status() -> None:
        with urllib.request.urlopen(status_url, timeout=60) as reply:
            seen["status"] = orjson.loads(reply.read())
        status_done.set()

    def busy_window() -> None:
        """The GUI thread in one long callback (as a long frame would be), until both requests
        were given a chance: /status answered, or 30 s."""
        poster = threading.Thread(target=post)
        poster.start()
        seen["post_answered_while_busy"] = post_done.wait(30)
        threading.Thread(target=status).start()
        seen["status_answered_while_busy"] = status_done.wait(30)
        seen["folded_while_busy"] = window.live_fleet.total
        seen["poster"] = poster
        release.set()

    loop.call_soon(busy_window)

    async def scenario() -> None:
        await wait_until(lambda: release.is_set(), timeout=60, what="the busy callback")
        await wait_until(lambda: window.live_fleet.total == len(batch), what="the batch folded in")

    run(loop, scenario(), timeout=120)
    seen["poster"].join(10)  # type: ignore[attr-defined]
    assert seen["status_answered_while_busy"] is True  # the listener did not need the window's loop
    assert seen["status"]["service"] == "trackmon"  # type: ignore[index]
    assert seen["post_answered_while_busy"] is True and seen["post"] == 200
    assert seen["folded_while_busy"] == 0  # frames reach the views only on the window's loop


def test_a_listener_thread_runs_coroutines_and_stops(loop) -> None:
    thread = ListenerThread(name="trackmon-listener-test")

    async def where() -> str:
        return threading.current_thread().name

    assert run(loop, thread.run(where())) == "trackmon-listener-test"
    thread.stop()
    assert thread.loop.is_closed()
    assert "trackmon-listener-test" not in [t.name for t in threading.enumerate()]
