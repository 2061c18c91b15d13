"""Large batches reach the live fleet in slices, in order, with the loop free in between."""

from __future__ import annotations

import asyncio
import itertools

import orjson

from app.core.normalize import normalize_batch
from app.ui.intake import SlicedIntake
from tests.ui.conftest import post, run, wait_until


def messages(ident: str, n: int) -> list:
    return normalize_batch([{"ident": ident, "timestamp": 1_700_000_000 + i} for i in range(n)], 1_700_000_000.0)


def test_batches_are_folded_after_the_callback_in_order_a_slice_at_a_time() -> None:
    applied: list[tuple[str, int, list[int]]] = []
    ticks = [0]

    async def scenario() -> None:
        async def other_work() -> None:  # stands for /status and other streams on the same loop
            while True:
                ticks[0] += 1
                await asyncio.sleep(0)

        other = asyncio.ensure_future(other_work())
        intake = SlicedIntake(lambda ms, _at, batch, idx: applied.append((ms[0].ident, ticks[0], idx)), 100)
        intake.add(messages("small-first", 10), 0.0, 1)
        assert applied == []  # not in the listener's callback: the sender's answer does not wait for it
        intake.add(messages("big", 250), 0.0, 2)
        intake.add(messages("small-after", 10), 0.0, 3)  # must wait for the big one
        assert intake.backlog == 270
        while intake.backlog:
            await asyncio.sleep(0)
        other.cancel()

    asyncio.run(scenario())
    assert [a[0] for a in applied] == ["small-first", "big", "big", "big", "small-after"]
    assert [a[2][0] for a in applied[1:4]] == [0, 100, 200] and applied[3][2][-1] == 249
    between = [a[1] for a in applied]
    assert all(later > earlier for earlier, later in itertools.pairwise(between)), between


def test_too_much_waiting_is_folded_before_the_callback_returns_and_flush_folds_the_rest() -> None:
    applied: list[tuple[str, int]] = []

    async def scenario() -> None:
        intake = SlicedIntake(lambda ms, _at, _batch, idx: applied.append((ms[0].ident, idx[0])), 100, max_waiting=300)
        intake.add(messages("a", 250), 0.0, 1)
        intake.add(messages("b", 250), 0.0, 2)  # 500 waiting: the oldest folded down to 300 at once
        assert applied == [("a", 0), ("a", 100)] and intake.backlog == 300
        intake.flush()
        assert intake.backlog == 0
        await asyncio.sleep(0)  # the drain task finds nothing left

    asyncio.run(scenario())
    assert applied == [("a", 0), ("a", 100), ("a", 200), ("b", 0), ("b", 100), ("b", 200)]


def test_a_huge_batch_shows_every_message_with_its_stored_position(loop, make_window) -> None:
    window = make_window()
    count = 12_000
    # Over 1 MiB, so the listener parses it in its worker thread and frees its own list after.
    batch = [{"ident": f"d{i % 7}", "timestamp": 1_700_000_000 + i, "seq": i, "pad": "x" * 80} for i in range(count)]
    assert len(orjson.dumps(batch)) > window.listener.config.limits.inline_bytes

    async def scenario() -> None:
        assert await post(window.urls()[0], batch) == 200
        await wait_until(lambda: window.live_fleet.total == count, what="all messages applied")

    run(loop, scenario())
    run(loop, asyncio.sleep(1.0))  # the listener's clean-up of its own list has run by now
    assert window.live_fleet.total == count
    last = window.live_fleet.log[-1]
    assert last.index == count - 1 and last.message.params["seq"] == count - 1
    assert orjson.loads(window._load_raw(last)) == batch[-1]  # the inspector's raw JSON is the right message
    assert len(window.live_fleet.devices) == 7
