"""How values are spelled in export files: numbers, capped device strings, spreadsheet-safe cells.

Other tools read these files (the GPX 1.1 XSD, GDAL, gpsbabel, spreadsheets), so:

* numbers are never in exponent notation: ``xs:decimal`` (GPX) has none, and CSV readers that
  type columns treat ``1e-05`` as text. Values as the device sent them keep their shortest
  exact spelling (``plain``); values we derive (m/s from km/h, course modulo 360) are rounded to
  what the quantity can mean (``rounded``), so no 16-digit noise;
* device strings are capped (``cap``): a 100 KB device name stops GDAL's GPX reader, and no
  reader needs more than a few hundred characters of a name;
* text cells of a CSV that a spreadsheet would run as a formula get OWASP's treatment
  (``spreadsheet_text``).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

#: Characters kept of a device name or ident in names, descriptions and text cells.
MAX_TEXT = 1024
_ELLIPSIS = "…"

#: OWASP "CSV Injection": a cell starting with one of these is run as a formula by Excel,
#: LibreOffice or Google Sheets (tab and carriage return are stripped by some before the test).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: A plain decimal number is no formula even with a sign: left as it is.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")


def plain(value: float) -> str:
    """A float's shortest exact spelling, in fixed-point (``1e-05`` → ``0.00001``); '' if not finite."""
    text = repr(float(value))
    if "e" in text or "E" in text:
        if not math.isfinite(value):
            return ""
        text = format(Decimal(text), "f")
    return text


def rounded(value: float, digits: int) -> str:
    """``value`` to at most ``digits`` decimals, fixed-point, without trailing zeros."""
    if not math.isfinite(value):
        return ""
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def cap(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis says so)."""
    return text if len(text) <= limit else text[: limit - 1] + _ELLIPSIS


def spreadsheet_text(text: str) -> str:
    """A text cell a spreadsheet shows as text, never runs (OWASP CSV injection guidance: a
    leading single quote before ``=``, ``+``, ``-``, ``@``, tab or carriage return). Plain
    decimal numbers in text (``-12.5``) are left alone: no formula can hide in them."""
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text
