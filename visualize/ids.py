"""How the report and the pictures show an id: unambiguously, whatever characters it holds.

Ids are opaque strings (recsys_contract.events): they may hold NUL, CR/LF, tabs, zero-width
or right-to-left override characters, which a page or a picture would hide, drop or let reorder
the text around them. `visible_id` shows every character that is not printable (Python's
str.isprintable: controls, format characters, separators other than the space) as an escape
`\\xHH`, `\\uHHHH` or `\\UHHHHHHHH`, and a backslash as `\\\\`; `parse_visible_id` is its
inverse, so a shown id names exactly one id.
"""

from __future__ import annotations

import re

_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def visible_id(text: str) -> str:
    """`text` with its invisible characters (and the backslash) escaped."""
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for char in text:
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def parse_visible_id(shown: str) -> str:
    """The id that `visible_id` showed as `shown`."""

    def unescape(match: re.Match[str]) -> str:
        body = match.group(1)
        return "\\" if body == "\\" else chr(int(body[1:], 16))

    return _ESCAPE.sub(unescape, shown)
