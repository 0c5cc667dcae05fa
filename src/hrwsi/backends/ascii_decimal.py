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


_DECIMAL_CHARACTERS = frozenset("0123456789+-.eE")


def ascii_number(text: str, max_length: int = 40) -> float | None:
    """The finite number text writes in ASCII decimal notation (12, -0.5, 1e-3), or None. float() alone is not
    that rule: it reads '1_0' as 10.0, ' 7 ' as 7.0, other scripts' digits ('\u0663' as 3.0), 'inf', 'nan' and
    'infinity'. Only the characters of decimal notation are let through to it, and float() then refuses a
    malformed arrangement of them ('1e', '--1', '.')."""
    if not 0 < len(text) <= max_length or not set(text) <= _DECIMAL_CHARACTERS:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value - value == 0 else None  # (finite: '1e999' is inf)


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def ascii_hexadecimal(text: str, max_digits: int = 16) -> int | None:
    """The number text writes in ASCII hexadecimal digits alone (an HTTP chunk's size, RFC 9112: 1*HEXDIG), or
    None. int(text, 16) is not that rule: it reads '-a' as -10 (a chunk of negative size, which read the stream to
    its end), '0x1a', '1_0' and spaces around the digits."""
    return int(text, 16) if 0 < len(text) <= max_digits and set(text) <= _HEX_DIGITS else None


def signed_ascii_decimal(text: str, max_digits: int = MAX_DIGITS) -> int | None:
    """As ascii_decimal, perhaps after a minus ('-9': an exit code, a signal)."""
    digits = text[1:] if text[:1] == "-" else text
    value = ascii_decimal(digits, max_digits)
    return None if value is None else (-value if len(digits) < len(text) else value)
