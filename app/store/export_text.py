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
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import orjson

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


def _cells(text: str, before: str, after: str) -> list[str]:
    """A JSON array of numbers (from orjson) → cells, each non-null one between ``before`` and
    ``after``, null → ''; done with C string methods when the column has no null."""
    inner = text[1:-1]
    if "null" not in inner:
        if before or after:
            return (before + inner.replace(",", after + "," + before) + after).split(",")
        return inner.split(",")
    cells = inner.split(",")
    if before or after:
        return ["" if cell == "null" else before + cell + after for cell in cells]
    return ["" if cell == "null" else cell for cell in cells]


def plain_column(values: Sequence[Any], before: str = "", after: str = "") -> list[str]:
    """`plain` over a column of numbers (None → ''), formatted in one orjson call; each non-empty
    cell between ``before`` and ``after`` (XML tags).

    orjson spells a float as its shortest round-trip digits, as ``repr`` does (checked on
    random doubles in tests/store/test_export_text.py); a column whose text has an exponent
    anywhere goes through `plain` value by value."""
    if not values:
        return []
    try:
        text = orjson.dumps(values if isinstance(values, list) else list(values)).decode()
    except (TypeError, orjson.JSONEncodeError):  # an integer beyond 64 bits
        text = "e"
    if "e" in text or "E" in text:
        cells = ["" if v is None else plain(v) if isinstance(v, float) else str(v) for v in values]
        return [before + cell + after if cell else "" for cell in cells] if before or after else cells
    return _cells(text, before, after)


def rounded_column(values: Sequence[Any], digits: int, scale: float = 1.0, modulo: float | None = None,
                   before: str = "", after: str = "") -> list[str]:
    """`rounded` over a column: ``value / scale`` (``% modulo``) to at most ``digits`` decimals,
    None → ''. numpy rounds (``rint(x·10ⁿ)/10ⁿ``, the double nearest the decimal), orjson
    spells the shortest digits, so no 16-digit noise and no exponent."""
    if not values:
        return []
    array = np.array(values, dtype=np.float64)  # None → nan
    if scale != 1.0:
        array = array / scale
    if modulo is not None:
        array = np.mod(array, modulo)
    array = np.round(array, digits) + 0.0  # + 0.0: -0.0 → 0.0
    text = orjson.dumps(array.tolist()).decode()  # nan → null
    if "e" in text:
        cells = ["" if v != v else rounded(v, digits) for v in array.tolist()]
        return [before + cell + after if cell else "" for cell in cells] if before or after else cells
    text = text.replace(".0,", ",").replace(".0]", "]")  # 12.0 → 12, as `rounded` spells it
    return _cells(text, before, after)


def integer_column(values: Sequence[Any], before: str = "", after: str = "") -> list[str]:
    """Counts (satellites) as integers, None → ''."""
    if not values:
        return []
    if None in values:
        return ["" if v is None else before + str(int(v)) + after for v in values]
    return _cells(orjson.dumps(np.array(values, dtype=np.float64).astype(np.int64).tolist()).decode(),
                  before, after)


def iso_time_column(values: Sequence[float]) -> list[str]:
    """ISO 8601 UTC times (``…T03:04:05Z``, ``….250Z`` with milliseconds) for a column of
    epoch seconds, spelled by numpy's datetime64 (proleptic Gregorian UTC, as ``time.gmtime``);
    milliseconds rounded half to even, as `exporters.iso_time` does."""
    if not values:
        return []
    ts = np.asarray(values, dtype=np.float64)
    whole = np.floor(ts)
    millis = whole.astype(np.int64) * 1000 + np.rint((ts - whole) * 1000.0).astype(np.int64)
    if not (millis % 1000).any():
        texts = np.datetime_as_string((millis // 1000).astype("datetime64[s]"), unit="s").tolist()
        return ("Z ".join(texts) + "Z").split(" ")
    texts = np.datetime_as_string(millis.astype("datetime64[ms]"), unit="ms").tolist()
    return ("Z ".join(texts) + "Z").replace(".000Z", "Z").split(" ")
