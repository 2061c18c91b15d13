"""The filter language: what it matches, what it refuses, and hostile input."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.filters import MAX_DEPTH, FilterError, compile_filter, looks_like_expression

TRUCK = {"ident": "352625333222111", "position.speed": 120.5, "position.valid": True, "position.satellites": 9,
         "alarm.event.trigger": True, "custom.state": "Parked", "ain#1": 0, "can.fuel": None}
VAN = {"ident": "42", "position.speed": 30, "position.valid": False, "custom.state": "driving"}


def matches(expression: str) -> list[str]:
    predicate = compile_filter(expression)
    return [m["ident"] for m in (TRUCK, VAN) if predicate(m)]


@pytest.mark.parametrize(("expression", "expected"), [
    ('ident == "352625333222111" and position.speed > 100', ["352625333222111"]),
    ("exists(alarm.event.trigger)", ["352625333222111"]),
    ("position.valid == false", ["42"]),
    ("not position.valid == false", ["352625333222111"]),
    ("position.speed >= 30 and position.speed <= 30", ["42"]),
    ("position.satellites < 4", []),  # missing is null, and null < 4 is false, not an error
    ('contains(custom.state, "park")', ["352625333222111"]),
    ("ain#1 == 0", ["352625333222111"]),
    ("exists(can.fuel)", []),  # present but null counts as absent
    ("can.fuel == null", ["352625333222111", "42"]),
    ("(position.speed > 100 or position.valid == false) and not exists(nothing)", ["352625333222111", "42"]),
    ("position.speed > '100'", []),  # number vs text: false, not an error
    ('ident == 42', []),  # the text "42" is not the number 42
    ("position.valid", ["352625333222111"]),  # a bare name is its truth value
    ("position.speed > 1e2", ["352625333222111"]),
    ("ident == 'with \\' quote'", []),
])
def test_expressions_match_what_they_say(expression, expected) -> None:
    assert matches(expression) == expected


@pytest.mark.parametrize(("expression", "message", "column"), [
    ("position.speed >", "expected a value, found 'the end'", 17),
    ("speed > 100 and", "expected a value", 16),
    ("(a == 1", "expected ')'", 8),
    ("a == 1)", "unexpected ')'", 7),
    ("a === 1", "unexpected character '='", 5),
    ("exec(a)", "unknown function 'exec'", 1),
    ("exists(1)", "exists() takes a parameter name", 8),
    ('contains(a, b)', "second argument", 13),
    ("a == @", "unexpected character '@'", 6),
    ("", "empty expression", 1),
    ("__import__('os').system('x')", "unexpected character '.'", 17),
    ("__import__('os')", "unknown function '__import__'", 1),
])
def test_bad_expressions_are_refused_with_a_position(expression, message, column) -> None:
    with pytest.raises(FilterError, match=re.escape(message)) as error:
        compile_filter(expression)
    assert error.value.column == column


def test_hostile_sizes_are_bounded() -> None:
    with pytest.raises(FilterError, match="nested more than"):
        compile_filter("(" * (MAX_DEPTH + 5) + "a" + ")" * (MAX_DEPTH + 5))
    with pytest.raises(FilterError, match="nested more than"):
        compile_filter("not " * (MAX_DEPTH + 5) + "a")
    with pytest.raises(FilterError, match="longer than"):
        compile_filter("a == 1 or " * 500)
    compile_filter(" or ".join(f"p{i} == {i}" for i in range(100)))  # long but flat is fine


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_either_compiles_or_raises_filter_error(text) -> None:
    try:
        predicate = compile_filter(text)
    except FilterError:
        return
    predicate(TRUCK)
    predicate({})


def test_telling_expressions_from_words() -> None:
    assert looks_like_expression("position.speed > 100")
    assert looks_like_expression("exists(alarm)")
    assert not looks_like_expression("Truck 7")
    assert not looks_like_expression("no_position")
