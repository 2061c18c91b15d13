"""A small expression language for picking messages: the log, exports and replay use it.

    ident == "352625333222111" and position.speed > 100
    exists(alarm.event.trigger)
    position.valid == false or position.satellites < 4
    not (engine.ignition.status == true) and contains(custom.state, "park")

Names are flat parameter keys (``ain#1``, ``can.fuel.level``...). Comparisons never raise: a
missing parameter is ``null``; ordering between a number and a string is simply false. The text
is parsed by a recursive-descent parser into closures — nothing is ever evaluated as Python —
with limits on length and nesting, and errors that say what was expected where.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

MAX_LENGTH = 2000
MAX_DEPTH = 40

Predicate = Callable[[dict[str, Any]], bool]
Getter = Callable[[dict[str, Any]], Any]


class FilterError(ValueError):
    """A bad expression; ``column`` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} at column {column}")
        self.column = column


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|,)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.#\-]*)
""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "true", "false", "null"}
_FUNCTIONS = {"exists", "contains"}


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise FilterError(f"unexpected character {text[position]!r}", position + 1)
        kind = match.lastgroup or ""
        if kind != "space":
            out.append((kind, match.group(), position + 1))
        position = match.end()
    out.append(("end", "", len(text) + 1))
    return out


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    numeric = (int, float)
    if isinstance(left, bool) or isinstance(right, bool):
        return False
    both_numbers = isinstance(left, numeric) and isinstance(right, numeric)
    if not (both_numbers or (isinstance(left, str) and isinstance(right, str))):
        return False
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    return left == right


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, str, int]:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, value: str, what: str) -> None:
        _kind, text, column = self.take()
        if text != value:
            raise FilterError(f"expected {what}, found {text or 'the end'!r}", column)

    def enter(self, column: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"nested more than {MAX_DEPTH} levels deep", column)

    def parse(self) -> Predicate:
        predicate = self.or_()
        kind, text, column = self.peek()
        if kind != "end":
            raise FilterError(f"unexpected {text!r}", column)
        return predicate

    def or_(self) -> Predicate:
        parts = [self.and_()]
        while self.peek()[1] == "or":
            self.take()
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else (lambda m, ps=tuple(parts): any(p(m) for p in ps))

    def and_(self) -> Predicate:
        parts = [self.not_()]
        while self.peek()[1] == "and":
            self.take()
            parts.append(self.not_())
        return parts[0] if len(parts) == 1 else (lambda m, ps=tuple(parts): all(p(m) for p in ps))

    def not_(self) -> Predicate:
        if self.peek()[1] == "not":
            _, _, column = self.take()
            self.enter(column)
            inner = self.not_()
            self.depth -= 1
            return lambda m: not inner(m)
        return self.comparison()

    def comparison(self) -> Predicate:
        left = self.operand()
        kind, op, _column = self.peek()
        if kind == "op" and op in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            right = self.operand()
            return lambda m: _compare(op, left(m), right(m))
        return lambda m: bool(left(m))

    def operand(self) -> Getter:
        kind, text, column = self.take()
        if kind == "number":
            value: Any = float(text) if any(c in text for c in ".eE") else int(text)
            return lambda m: value
        if kind == "string":
            value = _unquote(text)
            return lambda m: value
        if text == "(":
            self.enter(column)
            inner = self.or_()
            self.expect(")", "')'")
            self.depth -= 1
            return inner
        if kind == "name":
            if text in ("true", "false"):
                flag = text == "true"
                return lambda m: flag
            if text == "null":
                return lambda m: None
            if text in ("and", "or", "not"):
                raise FilterError(f"expected a value, found {text!r}", column)
            if self.peek()[1] == "(":
                return self.function(text, column)
            return lambda m, key=text: m.get(key)
        raise FilterError(f"expected a value, found {text or 'the end'!r}", column)

    def function(self, name: str, column: int) -> Getter:
        if name not in _FUNCTIONS:
            raise FilterError(f"unknown function {name!r} (known: {', '.join(sorted(_FUNCTIONS))})", column)
        self.take()  # "("
        kind, key, key_column = self.take()
        if kind != "name" or key in _KEYWORDS:
            raise FilterError(f"{name}() takes a parameter name", key_column)
        if name == "exists":
            self.expect(")", "')'")
            return lambda m: key in m and m[key] is not None
        self.expect(",", "','")
        kind, needle, needle_column = self.take()
        if kind != "string":
            raise FilterError("contains() takes a quoted text as its second argument", needle_column)
        text = _unquote(needle).lower()
        self.expect(")", "')'")
        return lambda m: isinstance(m.get(key), str) and text in m[key].lower()


def compile_filter(text: str) -> Predicate:
    """A predicate over a message's flat parameters; raises FilterError for a bad expression."""
    if len(text) > MAX_LENGTH:
        raise FilterError(f"expression longer than {MAX_LENGTH} characters", MAX_LENGTH + 1)
    if not text.strip():
        raise FilterError("empty expression", 1)
    return _Parser(text).parse()


_EXPRESSION_HINTS = re.compile(r"==|!=|<|>|\bexists\s*\(|\bcontains\s*\(|\band\b|\bor\b|\bnot\b")


def looks_like_expression(text: str) -> bool:
    """Whether a filter box's text is meant as an expression rather than words to search for."""
    return bool(_EXPRESSION_HINTS.search(text))
