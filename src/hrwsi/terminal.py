"""What may reach an operator's terminal: user data shown, never obeyed.

Paths, names and messages come from data engineers, routines and remote services. Printed through
rich, markup in them is interpreted unless escaped, and a control character (an escape sequence that
recolours the screen or moves the cursor, a bell) reaches the terminal as it is: rich strips some
control codes but passes ESC through. Everything the CLI prints from the database goes through
`visible` (and rich's `Text` or `escape`).
"""

from __future__ import annotations

import re

# Control characters, and Unicode's directional formatting characters: a right-to-left override in a
# path shows its end first ("Trojan Source", CVE-2021-42574), so what an operator reads is not the name.
# (The marks too: U+200E, U+200F and the Arabic letter mark U+061C.)
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_BIDI}]")
# (a line break too, and Unicode's line and paragraph separators, which some viewers break lines at)
_LINE_BREAKING = re.compile(f"[\\x00-\\x08\\x0a-\\x1f\\x7f-\\x9f{_BIDI}\u2028\u2029]")
# In a web page (the dashboard): a line break and a tab are the text's own layout (a log's lines), and so
# is a carriage return before a line break (a log written with CRLF); a carriage return alone is shown,
# not taken as one more line break (a page shows "ok\rFAILED" as two lines, where a terminal overwrites).
_IN_PAGE = re.compile(f"[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f{_BIDI}]|\\r(?!\\n)")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: object) -> str:
    """`value` as text, its control characters shown as their escape (`\\x1b`), not obeyed."""
    return _CONTROL.sub(_escape, "" if value is None else str(value))


def one_line(value: object) -> str:
    """`value` as one line of text: as `visible`, its line breaks shown as their escape (`\\x0a`) too."""
    return _LINE_BREAKING.sub(_escape, "" if value is None else str(value))


def in_page(value: str) -> str:
    """`value` for a web page (the dashboard, before its HTML escaping): as `visible`, with its line
    breaks and tabs kept."""
    return _IN_PAGE.sub(_escape, value)
