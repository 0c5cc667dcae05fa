"""What the database refuses of an input path (hrwsi.input's checks), asked before the INSERT: the
harvester registers many inputs in one statement, and one refused row failed all of them, scan
after scan (a landing file's name with a tab in it, 2026-12-05). A landing file or a catalogue
product whose path would be refused is set aside with this reason; the others go on."""

from __future__ import annotations

import re

# The checks of hrwsi.input.input_path (sql/schema.sql): at most 2,000 bytes, no control character
# ([[:cntrl:]], a tab too) nor invisible one (Unicode's line and paragraph separators and its format
# characters: input_path_has_no_control_or_invisible_characters, migration 0079), no white space
# around it, no `..` segment, absolute (only a multi-input group, which no harvest source makes, may
# be relative). INVISIBLE is that constraint's list beyond [[:cntrl:]], character for character.
MAX_PATH_BYTES = 2000
MAX_SCENE_ID_BYTES = 500  # (input_scene_id_is_at_most_500_bytes)
# And the characters that look like a space or nothing though they are not the ASCII space (migration
# 0083): the no-break space U+00A0 and Unicode's other spaces, and the Hangul fillers.
INVISIBLE = ("\u00a0\u00ad\u061c\u115f\u1160\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000"
             "\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f")
REFUSED_CHARACTER = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{INVISIBLE}]")
SPACE_LIKE = re.compile("[\u00a0\u115f\u1160\u2000-\u200a\u202f\u205f\u3000\u3164\uffa0]")
_DOT_DOT = re.compile(r"(^|/)\.\.(/|$)")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0xa0 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escaped(text: str) -> str:
    """`text` with its control and invisible characters as escapes (`\\x09`, `\\u200b`): how a refused path
    is shown."""
    return REFUSED_CHARACTER.sub(_escape, text)


def name_problem(name: str) -> str | None:
    """Why the database would refuse a path with this file name in it (its characters, its
    length), or None: for a name listed in a directory, before its path is known."""
    if (found := REFUSED_CHARACTER.search(name)) is not None:
        if ord(found.group()) < 0xa0:
            return "its name holds a control character (shown here as its \\x escape)"
        if SPACE_LIKE.match(found.group()):
            return "its name holds a character that looks like a space or nothing (shown here as its \\u escape)"
        return "its name holds an invisible character (shown here as its \\u escape)"
    if name != name.strip():
        return "its name begins or ends with white space"
    if _DOT_DOT.search(name):
        return "its path has a `..` segment"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        return f"its path is longer than {MAX_PATH_BYTES} bytes"
    return None


def path_problem(path: str) -> str | None:
    """Why the database would refuse `path` as an input's path, or None."""
    if (problem := name_problem(path)) is not None:
        return problem
    if not path.startswith("/"):
        # A catalogue product without an S3Path had its relative Name taken as its path: refused by
        # the CHECK input_path_is_absolute_or_a_multi_input_group, it failed its whole page.
        return "its path is not absolute"
    return None
