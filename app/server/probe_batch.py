"""The flespi dialog's *Send test batch*: a few realistic messages from devices that are clearly
not real ones.

Where it goes: the chosen stream URL, exactly as flespi will post (same URL, header, TLS, tunnel),
so it proves the whole path into the recording. It is therefore recorded in the live session like
anything the listener accepts; a separate session would need the listener to recognise test
traffic, and then the test would no longer go the way real data goes (and a public URL may lead to
another trackmon). What keeps it apart instead: its own idents (``trackmon-test-1``, ``-2``) and the
device name "TEST batch (trackmon)", so it never merges into a demo or real device, shows as a test
in every view and export, and is easy to leave out (filter ``trackmon-test``).
"""

from __future__ import annotations

from typing import Any

from app.core.simfleet import FleetSimulator

TEST_IDENT_PREFIX = "trackmon-test-"
TEST_NAME = "TEST batch (trackmon)"


def make_test_batch(now: float, messages: int = 4, devices: int = 2) -> list[dict[str, Any]]:
    """``messages`` flespi-style messages from ``devices`` test devices, the newest at ``now``."""
    fleet = FleetSimulator(devices, seed=1, start=now - 10, interval=5.0, bad_fix_rate=0)
    real_idents = [v.ident for v in fleet.vehicles]
    batch = fleet.next_messages(messages)
    for message in batch:
        message["ident"] = f"{TEST_IDENT_PREFIX}{real_idents.index(message['ident']) + 1}"
        message["device.name"] = TEST_NAME
    return batch
