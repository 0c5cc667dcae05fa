"""What may reach an operator's terminal: user data shown, never obeyed.

Paths, names and messages come from data engineers, routines and remote services. Printed through
rich, markup in them is interpreted unless escaped, and a control character (an escape sequence that
recolours the screen or moves the cursor, a bell) reaches the terminal as it is: rich strips some
control codes but passes ESC through. Everything the CLI prints from the database goes through
`visible` (and rich's `Text` or `escape`).
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(value: object) -> str:
    """`value` as text, its control characters shown as their escape (`\\x1b`), not obeyed."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", "" if value is None else str(value))
