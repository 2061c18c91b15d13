"""Find the message array inside a decoded request body.

flespi posts a JSON array; other senders post a single message object, or wrap the array in an
object (``{"data": {"items": [...]}}``), which ``messages_path`` ("data.items") points at.
"""

from __future__ import annotations

from typing import Any


class PayloadShapeError(ValueError):
    """The body is valid JSON but not something that holds messages (HTTP 422)."""


def locate_messages(document: Any, messages_path: str = "") -> list[Any]:
    """Return the list of messages carried by ``document``, or raise PayloadShapeError."""
    if type(document) is list:
        return document
    if type(document) is not dict:
        raise PayloadShapeError(
            f"expected a JSON array of messages or an object, got {_kind(document)}")
    if not messages_path:
        return [document]
    node: Any = document
    walked: list[str] = []
    for part in messages_path.split("."):
        walked.append(part)
        if type(node) is not dict or part not in node:
            raise PayloadShapeError(f"no '{'.'.join(walked)}' in the body (messages path "
                                    f"'{messages_path}')")
        node = node[part]
    if type(node) is list:
        return node
    if type(node) is dict:
        return [node]
    raise PayloadShapeError(f"'{messages_path}' holds {_kind(node)}, not messages")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)
