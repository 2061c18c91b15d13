"""How values read on screen: relative ages, coordinates, units. Pure, shared by all views."""

from __future__ import annotations

import math
import time
from typing import Any


def age_text(seconds: float) -> str:
    """'3 s', '4 min', '2 h', '5 d' — how long ago, in the largest sensible unit."""
    if seconds < 0:
        return "in future"
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def utc_text(ts: float | None, millis: bool = False) -> str:
    """A Unix time as 'YYYY-MM-DD HH:MM:SS' UTC (with milliseconds if asked)."""
    if ts is None or not math.isfinite(ts):
        return ""
    try:
        text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))  # no per-call import, unlike datetime
    except (OverflowError, OSError, ValueError):
        return str(ts)
    return f"{text}.{int(ts * 1000) % 1000:03d}" if millis else text


def position_text(lat: float | None, lon: float | None) -> str:
    """'49.069782, 28.632826' or '' when there is no usable position."""
    if lat is None or lon is None:
        return ""
    return f"{lat:.6f}, {lon:.6f}"


def number_text(value: float | None, unit: str = "", digits: int = 0) -> str:
    """A number with its unit, or '' when absent."""
    if value is None:
        return ""
    return f"{value:.{digits}f}{(' ' + unit) if unit else ''}"


def speed_text(kmh: float | None) -> str:
    """'76 km/h' (whole km/h; '4.5 km/h' below 10, where a tenth matters): always the unit written
    out, never an SI prefix or a clipped '76 k'; '' when the message has no speed."""
    if kmh is None or not math.isfinite(kmh):
        return ""
    return f"{kmh:.1f} km/h" if 0 < abs(kmh) < 10 and round(kmh, 1) != round(kmh) else f"{kmh:.0f} km/h"


def value_text(value: Any) -> str:
    """Any parameter value as the inspector shows it (JSON-like: true/false/null)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        import orjson
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    return str(value)
