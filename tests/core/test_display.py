"""How values read on screen."""

from __future__ import annotations

from app.core.display import speed_text


def test_speeds_carry_their_unit_and_no_si_prefix() -> None:
    assert speed_text(76.4) == "76 km/h"
    assert speed_text(1076.0) == "1076 km/h"
    assert speed_text(4.56) == "4.6 km/h"
    assert speed_text(0) == "0 km/h" and speed_text(5.0) == "5 km/h"
    assert speed_text(None) == "" and speed_text(float("nan")) == ""
