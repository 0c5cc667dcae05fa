"""What the database refuses of an input path (hrwsi.input's checks), asked before the INSERT: the
harvester registers many inputs in one statement, and one refused row failed all of them, scan
after scan (a landing file's name with a tab in it, 2026-12-05). A landing file or a catalogue
product whose path would be refused is set aside with this reason; the others go on."""

from __future__ import annotations

import re

# The checks of hrwsi.input.input_path (sql/schema.sql): at most 2,000 bytes, no control character
# ([[:cntrl:]], a tab too), no white space around it, no `..` segment.
MAX_PATH_BYTES = 2000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DOT_DOT = re.compile(r"(^|/)\.\.(/|$)")


def escaped(text: str) -> str:
    """`text` with its control characters as \\x escapes (a tab too): how a refused path is shown."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def path_problem(path: str) -> str | None:
    """Why the database would refuse `path` as an input's path, or None."""
    if _CONTROL.search(path):
        return "its name holds a control character (shown here as its \\x escape)"
    if path != path.strip():
        return "its name begins or ends with white space"
    if _DOT_DOT.search(path):
        return "its path has a `..` segment"
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        return f"its path is longer than {MAX_PATH_BYTES} bytes"
    return None
