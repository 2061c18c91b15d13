"""Cutting messages out of bodies as received, and laying them out without re-spelling a value."""

from __future__ import annotations

import json
import re

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.raw_json import element_bytes, indent_exact, message_array, select_elements

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                    max_leaves=20)
TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[^\s"]+')


def without_layout(text: str) -> str:
    """The text with whitespace outside strings removed: '49.10' and '49.1' still differ."""
    return "".join(TOKENS.findall(text))


@settings(max_examples=200, deadline=None)
@given(JSON, st.sampled_from([None, 0, 1, 3]))
def test_layout_changes_whitespace_only(value, indent) -> None:
    raw = json.dumps(value, indent=indent, ensure_ascii=False).encode()
    laid_out = indent_exact(raw)
    assert orjson.loads(laid_out) == orjson.loads(raw)
    assert without_layout(laid_out) == without_layout(raw.decode())


def test_numbers_keep_their_spelling() -> None:
    laid_out = indent_exact(b'{"a":49.10,"b":[1E5, -0.0],"c":{}}')
    assert "49.10" in laid_out and "1E5" in laid_out and "-0.0" in laid_out and '"c": {}' in laid_out


@given(st.lists(JSON, max_size=6), st.data())
def test_elements_are_cut_out_exactly(values, data) -> None:
    parts = [json.dumps(v, indent=data.draw(st.sampled_from([None, 2]))).encode() for v in values]
    body = b"[ " + b" ,\n".join(parts) + b" ]"
    for i, part in enumerate(parts):
        assert element_bytes(body, i) == part
    keep = data.draw(st.lists(st.integers(0, max(len(parts) - 1, 0)), unique=True)) if parts else []
    assert select_elements(body, keep) == b"[" + b",".join(parts[i] for i in keep) + b"]"


def test_message_array_finds_the_path_and_refuses_to_guess() -> None:
    body = b'{"items": 1, "data": {"x": "items", "items": [{"v": 1.50}, {"v": 2}]}}'
    assert message_array(body, "data.items", 2) == b'[{"v": 1.50}, {"v": 2}]'
    assert message_array(b'{"data": {"items": {"v": 1.50}}}', "data.items", 1) == b'[{"v": 1.50}]'
    assert message_array(b' {"v": 1.50}\n', "", 1) == b'[{"v": 1.50}]'
    assert message_array(body, "data.items", 3) is None  # not what the parser read: no guess
    assert message_array(body, "data.nothing", 1) is None
