"""The status bar says how far the live view is behind the recording — only when it is worth saying."""

from __future__ import annotations

from app.core.view_lag import LAG_SHOWN_AFTER, lag_text

NOW = 1_800_000_000.0


def test_nothing_is_said_while_the_view_is_current_or_only_a_frame_behind() -> None:
    assert lag_text(0, None, NOW) == ""
    assert lag_text(5_000, NOW - 0.3, NOW) == ""  # a backlog's first frame is on its way
    assert lag_text(5_000, NOW - LAG_SHOWN_AFTER + 0.01, NOW) == ""


def test_a_view_behind_says_how_many_messages_and_how_long() -> None:
    assert lag_text(52_000, NOW - 4.2, NOW) == "Catching up: 52,000 recorded messages not shown yet (4 s behind)"
    assert lag_text(1, NOW - 90, NOW) == "Catching up: 1 recorded message not shown yet (90 s behind)"
