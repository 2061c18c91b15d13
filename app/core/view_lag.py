"""How far the live view is behind what was recorded, in words for the status bar.

The window shows the live session as the folding process (`store/live_fold`) sends it; during a
backlog, or while that process is being started again, the recording can be well ahead of what the
views show. Said only once it is worth saying: a frame is ~0.1 s behind as a rule.
"""

from __future__ import annotations

#: Seconds the oldest message not shown yet must have waited before the lag is shown.
LAG_SHOWN_AFTER = 2.0
#: ... and before the views are taken to be catching up (the map then draws less often, `ui/map_feed`).
CATCHING_UP_AFTER = 1.0


def catching_up(oldest_received_at: float | None, now: float) -> bool:
    """Whether the views are well behind the recording (a backlog), not just a frame or two: what
    they would draw now is a moment long past, soon replaced."""
    return oldest_received_at is not None and now - oldest_received_at >= CATCHING_UP_AFTER


def lag_text(messages: int, oldest_received_at: float | None, now: float) -> str:
    """'' while the views are (nearly) current; else how many recorded messages they do not show
    yet and how long the oldest of them has waited."""
    if messages <= 0 or oldest_received_at is None:
        return ""
    waited = now - oldest_received_at
    if waited < LAG_SHOWN_AFTER:
        return ""
    noun = "message" if messages == 1 else "messages"
    return f"Catching up: {messages:,} recorded {noun} not shown yet ({waited:,.0f} s behind)"
