"""Keeping untrusted text plain in Qt widgets.

Qt item views render DisplayRole as plain text, but tooltips and QLabel guess: a string that
looks like HTML is rendered as HTML. Device data goes through these helpers before it reaches
any widget that might guess.
"""

from __future__ import annotations

import html


def plain_tooltip(text: str) -> str:
    """A tooltip that shows ``text`` literally (escaped, inside an explicit rich-text block)."""
    return f"<qt>{html.escape(text).replace(chr(10), '<br>')}</qt>"
