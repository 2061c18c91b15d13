"""Times in imported files: every form RFC 3339 allows, and ISO 8601's basic form.

GPX and CSV files from other tools write ``2025-05-01T06:00:00Z``, but also a lowercase ``t``/``z``
(RFC 3339 §5.6 allows both), a space for the ``T``, any number of fraction digits, offsets, a
leap second (``23:59:60``) and ``20250501T060000Z``. Python's ``fromisoformat`` refuses some of
these, and the points then silently took the import time. Here the calendar day is cached (the
points of a file share a few days), so a time costs one regex match and a few integer operations.
"""

from __future__ import annotations

import calendar
import re

_TIME = re.compile(
    r"\s*(\d{4})-?(\d\d)-?(\d\d)[Tt ](\d\d):?(\d\d)(?::?(\d\d)(?:[.,](\d+))?)?"
    r"(?:([Zz])|([+-])(\d\d)(?::?(\d\d))?)?\s*\Z")
_DAYS: dict[tuple[int, int, int], int] = {}


class ParsedTime(float):
    """Unix seconds, remembering whether the text said a leap second (``:60``)."""

    leap = False


_MINUTES: dict[str, float] = {}


def parse_time(text: str) -> float | None:
    """`parse_full`, with a fast path for the common ``YYYY-MM-DDTHH:MM:SS[.fff]Z`` (any case):
    the minute is cached, only the seconds are read."""
    size = len(text)
    if (size == 20 or (size > 21 and text[19] == ".")) and text[-1] in "Zz" and text[10] in "Tt" \
            and text[16] == ":":
        base = _MINUTES.get(text[:16])
        if base is None:
            whole = parse_full(text[:16] + ":00Z")
            if whole is None:
                return None
            if len(_MINUTES) > 65_536:
                _MINUTES.clear()
            base = _MINUTES[text[:16]] = float(whole)
        seconds = text[17:19]
        fraction = text[20:-1]
        if seconds.isdigit() and (size == 20 or fraction.isdigit()) and seconds <= "60":
            value = ParsedTime(base + int(seconds) + (int(fraction) / 10 ** len(fraction) if fraction else 0.0))
            value.leap = seconds == "60"
            return value
    return parse_full(text)


def parse_full(text: str) -> float | None:
    """Unix seconds from an RFC 3339 / ISO 8601 date-time (UTC when no offset is given), or None.

    A leap second ``23:59:60`` is the same instant as the next ``00:00:00`` in Unix time (which
    has no leap seconds); the result then has ``leap`` set so the importer can say so."""
    match = _TIME.match(text)
    if match is None:
        return None
    year, month, day, hour, minute = (int(match.group(i)) for i in range(1, 6))
    second = int(match.group(6) or 0)
    if not (1 <= month <= 12 and hour <= 23 and minute <= 59 and second <= 60):
        return None
    key = (year, month, day)
    days = _DAYS.get(key)
    if days is None:
        if not 1 <= day <= calendar.monthrange(year, month)[1]:
            return None
        if len(_DAYS) > 4096:
            _DAYS.clear()
        days = _DAYS[key] = calendar.timegm((year, month, day, 0, 0, 0)) // 86400
    seconds = days * 86400 + hour * 3600 + minute * 60 + second
    fraction = match.group(7)
    value = ParsedTime(seconds + (int(fraction) / 10 ** len(fraction) if fraction else 0.0))
    if match.group(9):
        offset = int(match.group(10)) * 3600 + int(match.group(11) or 0) * 60
        value = ParsedTime(value - offset if match.group(9) == "+" else value + offset)
    value.leap = second == 60
    return value
