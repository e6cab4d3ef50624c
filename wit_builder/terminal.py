"""Text from the web on a terminal: shown as the characters it holds, never as commands.

Captions, URLs, page and file names are untrusted. Printed through Rich they would be
read as markup (``[link=http://evil.example]click[/link]`` shows "click" linking
elsewhere; a stray ``[/url]`` is an error), and their control characters would reach the
terminal (``ESC [2J`` clears the screen, OSC 8 plants hyperlinks). `safe` turns every C0
and C1 control, DEL and the invisible Unicode format characters that reorder or hide
text into a visible escape (``\\x1b``, ``\\u202e``) and escapes Rich markup; everything
that interpolates such a value into a printed line goes through it.
"""

from __future__ import annotations

import re
from typing import Any

from rich.markup import escape

# C0 (but tab), DEL, C1, and format characters that hide or reorder text: bidi
# embeddings/overrides/isolates, zero-width and line/paragraph separators.
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e"
                       "\u2060-\u2069\ufeff]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: Any) -> str:
    """`value` as text with every control character shown as an escape."""
    return _CONTROLS.sub(_visible, str(value))


def safe(value: Any) -> str:
    """`value` ready to interpolate into a Rich-printed line: controls visible, markup
    escaped (the text reads exactly as stored, escapes aside)."""
    return escape(visible(value))
