"""Whole numbers written in ASCII decimal digits, and nothing else: the one rule for reading a count, an
id, a port, a size or a status code from text that hrwsi did not write itself (an environment variable,
a command-line argument, an HTTP answer, a file, a URL).

`text.isdigit()` then `int(text)` is not that rule: isdigit is true of '\u00b2' (superscript two), which
int() refuses with a ValueError, and of other scripts' digits ('\u0661\u0662', Arabic-Indic), which int()
reads as 12; and int() of more than 4,300 digits raises a ValueError of its own. A value like these
ended in a traceback, or was silently read as another number (found by review).

It lives here, beside local_supervisor, because the supervisor imports nothing but its own directory's
modules and the standard library's smallest (it is started as `python -I -S` with that directory on
sys.path): no imports here, not even `from __future__`.
"""

# Digits of the largest number ascii_decimal reads unless told otherwise: a bigint (2**63 - 1) has 19.
MAX_DIGITS = 18


def is_ascii_decimal(text: str) -> bool:
    """True when text is one or more of the ASCII digits 0-9 and nothing else (no sign, space or '_')."""
    return text.isascii() and text.isdigit()


def ascii_decimal(text: str, max_digits: int = MAX_DIGITS) -> int | None:
    """The number text writes in ASCII decimal digits alone, or None: also when it has more than
    max_digits digits (leading zeros count), so that int() never reads thousands of them."""
    return int(text) if len(text) <= max_digits and is_ascii_decimal(text) else None
