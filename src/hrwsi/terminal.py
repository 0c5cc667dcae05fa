"""What may reach an operator's terminal: user data shown, never obeyed.

Paths, names and messages come from data engineers, routines and remote services. Printed through
rich, markup in them is interpreted unless escaped, and a control character (an escape sequence that
recolours the screen or moves the cursor, a bell) reaches the terminal as it is: rich strips some
control codes but passes ESC through. Everything the CLI prints from the database goes through
`visible` (and rich's `Text` or `escape`).
"""

from __future__ import annotations

import codecs
import json
import re
import unicodedata

# Control characters, and Unicode's directional formatting characters: a right-to-left override in a
# path shows its end first ("Trojan Source", CVE-2021-42574), so what an operator reads is not the name.
# (The marks too: U+200E, U+200F and the Arabic letter mark U+061C.)
# And the invisible ones, which make two names that differ look the same ("/X.SAFE" and
# "/X\u200b.SAFE"; found by exploratory testing): the zero-width space, joiners and word joiner, the
# invisible operators, the soft hyphen, the byte order mark, and the tag characters.
# And the bytes of an argument or a file name that are not UTF-8, which Python keeps as lone surrogates (U+DC80 to
# U+DCFF, os.fsdecode): printed, they went out as those bytes, which a terminal shows as it likes (a replacement
# character, or in Latin-1 a control: 0x9b is CSI); shown as the byte, `\xff`, one escaping wherever a line quotes
# one ("No such option" showed the byte as it came, "No such command" `\udcff`; found by review).
_UNSEEN = ("\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
         "\u00ad\u180e\u200b-\u200d\u2060-\u2064\ufeff\U000e0000-\U000e007f\udc80-\udcff")
_CONTROL = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_UNSEEN}]")
# (a line break too, and Unicode's line and paragraph separators, which some viewers break lines at)
_LINE_BREAKING = re.compile(f"[\\x00-\\x08\\x0a-\\x1f\\x7f-\\x9f{_UNSEEN}\u2028\u2029]")
# In a web page (the dashboard): a line break and a tab are the text's own layout (a log's lines), and so
# is a carriage return before a line break (a log written with CRLF); a carriage return alone is shown,
# not taken as one more line break (a page shows "ok\rFAILED" as two lines, where a terminal overwrites).
_IN_PAGE = re.compile(f"[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f{_UNSEEN}]|\\r(?!\\n)")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # (a byte that is not UTF-8, as Python keeps it: the byte, `\xff`, not `\udcff`)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


_UNSEEN_ALONE = re.compile(f"[{_UNSEEN}]")


def json_unseen_escaped(text: str) -> str:
    """JSON text with its directional and invisible characters written as JSON's own escapes
    (`\\u202e`), which a reader reads back as the same text: printed raw, `hrwsi sources --json` on
    a terminal reordered what followed a right-to-left override. (Control characters are escaped
    by JSON itself; outside its strings JSON text is ASCII.)"""
    return _UNSEEN_ALONE.sub(lambda match: json.dumps(match.group())[1:-1], text)


def visible(value: object) -> str:
    """`value` as text, its control characters shown as their escape (`\\x1b`), not obeyed."""
    return _CONTROL.sub(_escape, "" if value is None else str(value))


def one_line(value: object) -> str:
    """`value` as one line of text: as `visible`, its line breaks shown as their escape (`\\x0a`) too."""
    return _LINE_BREAKING.sub(_escape, "" if value is None else str(value))


# In a quoted name: every control character, a tab and a line break too (a name holds none of its own layout).
_IN_QUOTES = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_UNSEEN}\u2028\u2029]")


def one_sentence(value: object) -> str:
    """A one-line sentence that quotes what a user gave (a database's refusal naming it): every control and
    invisible character as its escape, a tab and a line break too, as `quoted` shows them in a name. Printed as
    it came, a name holding a line break split the refusal into two `error:` lines, and a tab read as a space
    (found by review)."""
    return _IN_QUOTES.sub(_escape, "" if value is None else str(value))


def quoted(name: object) -> str:
    """A user-supplied name as a refusal quotes it: between single quotes, as it is, a quote in it doubled
    ('it''s'), the rule of the database's refusals (hrwsi.quoted_name), with its control and invisible characters
    as escapes (a tab as `\\x09`), not obeyed. repr() doubled a backslash ('a\\\\b') and switched to double quotes
    for a name holding a quote: one name read two ways (found by review). A long one is cut (`bounded`)."""
    return bounded("" if name is None else str(name), _quoted_whole)


def _quoted_whole(text: str) -> str:
    return "'" + one_sentence(text).replace("'", "''") + "'"


# The most characters of one value an error line repeats, escapes and quotes included. A setting's error
# repeated its value whole: a 5,000-character HRWSI_* value made a 5,000-character error line, the sentence's
# advice lost at its end (found by review).
SHOWN_MAX = 120


def bounded(text: str, shown, limit: int = SHOWN_MAX) -> str:
    """`shown(text)` (`text` quoted and escaped for an error line: `quoted`, repr) when at most `limit` characters
    long; else `shown` of the longest start of `text` whose form fits, then a marker of the whole value's length:
    `'abc...'... (5,000 characters)`. The cut is made in `text`, before escaping, so that no escape is cut in
    two; and in characters, so that one is never cut in two either."""
    whole = shown(text)
    if len(whole) <= limit:
        return whole
    low, high = 0, min(len(text), limit)  # the longest start whose form fits: at least 0 characters, fewer than all
    while low < high:
        middle = (low + high + 1) // 2
        if len(shown(text[:middle])) <= limit:
            low = middle
        else:
            high = middle - 1
    return f"{shown(text[:low])}... ({len(text):,} characters)"


def shown(value: object) -> str:
    """A value an error line repeats as Python writes it (repr: quoted, its control characters escaped), cut to
    SHOWN_MAX characters with a marker of its length when longer (`bounded`): a setting's value, a file's."""
    return bounded(value, repr) if isinstance(value, str) else bounded(repr(value), str)


def in_page(value: str) -> str:
    """`value` for a web page (the dashboard, before its HTML escaping): as `visible`, with its line
    breaks and tabs kept."""
    return _IN_PAGE.sub(_escape, value)


# What hrwsi's own text prints that a terminal which is not UTF-8 may lack, in the ASCII form it shows
# instead: a table cell cut short (rou… as rou.), dashes, apostrophes, the lineage's marks. One
# character each, as wide as what it replaces: rich laid the tables out with the originals' widths.
_ASCII_FORMS = {"\u2026": ".", "\u2014": "-", "\u2013": "-", "\u2019": "'", "\u2018": "'", "\u201c": '"',
                "\u201d": '"', "\u25b2": "^", "\u25bc": "v", "\u25cf": "*", "\u2192": ">", "\u2190": "<",
                "\u00d7": "x", "\u00a0": " "}
ANY_TERMINAL = "hrwsi-any-terminal"  # the codecs error handler `print_anywhere` gives the streams


def _ascii_form(error: UnicodeError) -> tuple[str | bytes, int]:
    """A character the stream's encoding lacks: its ASCII form, else `?` (`??` for a wide one), as
    `ls` shows a name it cannot print, so that a table's columns stay aligned; `--json` keeps every
    character (hrwsi.cli.common.print_json). (A byte a file name could not be decoded with, kept by
    Python as a surrogate, is written back as that byte, as the `surrogateescape` handler these
    streams have in the C locale does.)"""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    lacking = error.object[error.start:error.end]
    if all("\udc80" <= c <= "\udcff" for c in lacking):
        return bytes(ord(c) - 0xDC00 for c in lacking), error.end
    return "".join(_ASCII_FORMS.get(c) or "?" * (2 if unicodedata.east_asian_width(c) in "WF" else 1)
                   for c in lacking), error.end


codecs.register_error(ANY_TERMINAL, _ascii_form)


def print_anywhere(*streams) -> None:
    """Let `streams` (stdout, stderr) print any text, whatever their encoding.

    Why: on a terminal or pipe that is not UTF-8 (PYTHONIOENCODING=iso-8859-15, LC_ALL=C without
    UTF-8 mode), the first character it lacks (the … of a cut cell, the ’ of a campaign) ended the
    command with "'charmap' codec can't encode character" and exit 2, `hrwsi status` half printed
    (found by exploratory testing). Such a character is now replaced (`_ascii_form`)."""
    for stream in streams:
        reconfigure = getattr(stream, "reconfigure", None)  # (a TextIOWrapper; not every test's stand-in)
        if reconfigure is not None:
            reconfigure(errors=ANY_TERMINAL)
