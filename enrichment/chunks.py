"""Pieces of a Markdown summary as they are handed to ``on_summary_chunk``: pure string work, no I/O."""

from __future__ import annotations

import re

_HEADING = re.compile(r"(?m)^(?=#{1,6} )")


def markdown_sections(markdown: str) -> list[str]:
    """``markdown`` cut before each heading line (``#`` to ``######``): one piece per section, the text
    before the first heading (if any) a piece of its own. The pieces joined are ``markdown`` exactly (the
    blank lines between sections stay at the end of the piece before), and none is empty."""
    return [piece for piece in _HEADING.split(markdown) if piece]
