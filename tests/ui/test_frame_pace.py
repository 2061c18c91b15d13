"""Frames at a few per second while little arrives, at full rate under load; software drawing
where OpenGL is itself software."""

from __future__ import annotations

from app.ui.frame_pace import FramePace
from app.ui.rendering import needs_software


def test_a_trickle_is_drawn_a_few_times_a_second_and_a_flood_at_full_rate() -> None:
    pace = FramePace(quiet_interval=0.25, busy=50)
    ticks = [i * 0.1 for i in range(20)]  # the 10 Hz frame timer for two seconds
    total = 0
    drawn = []
    for t in ticks:
        total += 1  # 10 msg/s
        drawn.append(pace.due(t, total, 0))
    assert sum(drawn) == 7  # every 0.3 s (the first tick after 0.25 s has passed), not 20
    flood = [pace.due(2.0 + i * 0.1, total + 100 * (i + 1), 0) for i in range(10)]
    assert all(flood)  # 100 messages waiting at every tick: every tick draws
    assert pace.due(3.05, 0, 0)  # the fleet was replaced (new session, replay): draw at once


def test_software_drawing_is_chosen_only_without_a_real_gpu() -> None:
    assert needs_software("llvmpipe (LLVM 15.0.6, 256 bits)")
    assert needs_software(None)
    assert not needs_software("NVIDIA GeForce RTX 3060/PCIe/SSE2")
    assert not needs_software("llvmpipe", "gpu") and needs_software("Mesa Intel(R) UHD", "software")
