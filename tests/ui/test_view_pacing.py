"""The table and the log get every change, at most four times a second."""

from __future__ import annotations

from app.ui.view_pacing import TextViewPacer


def test_changes_are_gathered_and_handed_over_once_the_period_has_passed() -> None:
    pacer = TextViewPacer(period=0.25)
    fleet = object()
    pacer.add(fleet, ["a", "b"], [1, 2])
    assert pacer.take(10.0) == (["a", "b"], [1, 2])  # the first changes show at once
    pacer.add(fleet, ["b"], [3])
    pacer.add(fleet, ["c", "b"], [4])
    assert pacer.take(10.1) == ([], [])  # too soon: kept, not lost
    assert pacer.take(10.3) == (["b", "c"], [3, 4])  # each device once, entries in order
    assert pacer.take(10.6) == ([], [])  # nothing new


def test_forced_frames_and_resets() -> None:
    pacer = TextViewPacer(period=0.25, log_limit=3)
    fleet, other = object(), object()
    pacer.add(fleet, ["a"], [1])
    assert pacer.take(1.0) == (["a"], [1])
    pacer.add(fleet, ["b"], [2, 3, 4, 5])
    assert pacer.take(1.01, force=True) == (["b"], [3, 4, 5])  # forced; the log keeps its newest
    pacer.add(fleet, ["stale"], [9])
    pacer.add(other, ["x"], [10])  # another fleet (replay): the old one's changes mean nothing
    assert pacer.take(2.0) == (["x"], [10])
    pacer.add(other, ["y"], [11])
    pacer.clear()
    assert pacer.take(3.0) == ([], [])
