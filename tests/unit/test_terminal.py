"""What reaches an operator's terminal (hrwsi.terminal): user data shown, never obeyed."""

from __future__ import annotations

import io

from hrwsi.terminal import SHOWN_MAX, in_page, one_line, print_anywhere, quoted, shown, visible


def test_control_characters_are_shown_as_their_escapes_and_text_is_kept():
    assert visible("a\x1b[31mb\x07c\x9bd é\tx\ny") == "a\\x1b[31mb\\x07c\\x9bd é\tx\ny"
    assert visible(None) == ""


def test_a_byte_that_is_not_utf8_is_shown_as_that_byte_wherever_text_is_shown():
    """(Python keeps it as a lone surrogate: printed, the byte went out as it came, 0x9b a control in Latin-1, and a
    repr() said `\\udcff`, a character nobody typed; found by review)"""
    import os

    text = os.fsdecode(b"a\xff\x9bb")
    assert visible(text) == one_line(text) == "a\\xff\\x9bb" and quoted(text) == "'a\\xff\\x9bb'"
    assert in_page(text) == "a\\xff\\x9bb"


def test_directional_overrides_are_shown_so_that_a_name_reads_as_it_is_stored():
    """"Trojan Source" (CVE-2021-42574): /in/abc<RLO>gnp.exe displays as /in/abcexe.png."""
    assert visible("/in/abc\u202egnp.exe") == "/in/abc\\u202egnp.exe"
    assert visible("\u2066x\u2069 \u200f") == "\\u2066x\\u2069 \\u200f"


def test_one_line_escapes_line_breaks_too():
    assert one_line("a\nb\u2028c\u202e") == "a\\x0ab\\u2028c\\u202e"


def _written(text: str, encoding: str) -> bytes:
    buffer = io.BytesIO()
    stream = io.TextIOWrapper(buffer, encoding=encoding)
    print_anywhere(stream)
    stream.write(text)
    stream.flush()
    return buffer.getvalue()


def test_a_stream_that_lacks_a_character_prints_one_as_wide_instead_of_failing():
    # (the … rich cuts a cell with, the ’ and — of hrwsi's own sentences, user data in any script)
    assert _written("rou… — the routine’s own ▲ café ☃ 雪", "ascii") == b"rou. - the routine's own ^ caf? ? ??"
    assert _written("café ☃", "iso-8859-15") == "café ?".encode("iso-8859-15")
    assert _written("café ☃", "utf-8") == "café ☃".encode()


def test_a_byte_kept_as_a_surrogate_is_written_back_as_that_byte():
    assert _written("x\udce9y", "ascii") == b"x\xe9y"


def test_invisible_characters_are_shown_so_that_two_names_that_differ_look_different():
    """"/eodata/X.SAFE" and "/eodata/X\u200b.SAFE" looked the same in `hrwsi tasks` and on the
    dashboard (found by exploratory testing)."""
    assert visible("/eodata/X\u200b.SAFE") == "/eodata/X\\u200b.SAFE"
    assert visible("\ufeff/a\u2060b\u00adc") == "\\ufeff/a\\u2060b\\xadc"
    assert visible("/tag\U000e0041") == "/tag\\U000e0041"
    assert in_page("/x\u200d.SAFE\nnext") == "/x\\u200d.SAFE\nnext"
    assert visible("/data/snow_cover_é.tif") == "/data/snow_cover_é.tif", "letters are kept"


def test_json_says_directional_and_invisible_characters_as_its_own_escapes_and_reads_back_the_same():
    import json

    from hrwsi.terminal import json_unseen_escaped
    data = {"name": "evil\u202egnp.exe", "tag": "x\U000e0041", "plain": "é\n"}
    text = json_unseen_escaped(json.dumps(data, ensure_ascii=False))
    assert "\u202e" not in text and "\\u202e" in text and "\\udb40\\udc41" in text and "é" in text
    assert json.loads(text) == data


def test_a_quoted_name_is_as_it_is_between_single_quotes_with_a_quote_doubled_and_controls_escaped():
    """hrwsi.quoted_name's rule (a backslash as it is: repr() doubled it), control and invisible characters as
    escapes, never obeyed."""
    assert quoted("snow\\cover's") == "'snow\\cover''s'"
    assert quoted("a\tb\n\x1b[2J\u202e") == "'a\\x09b\\x0a\\x1b[2J\\u202e'"


def test_a_long_value_is_cut_in_an_error_line_with_a_marker_of_its_length_and_escaped_as_a_short_one():
    """A 5,000-character value made a 5,000-character error line (found by review): cut, its escapes whole."""
    assert quoted("a" * 5000) == "'" + "a" * (SHOWN_MAX - 2) + "'... (5,000 characters)"
    assert shown("b" * 5000) == "'" + "b" * (SHOWN_MAX - 2) + "'... (5,000 characters)"
    escaped = quoted("\x1b" * 300)
    assert escaped.startswith("'\\x1b") and escaped.endswith("\\x1b'... (300 characters)")
    assert len(escaped.partition("...")[0]) <= SHOWN_MAX, "the value's form is bounded, its escapes included"
    assert quoted("it's") == "'it''s'" and shown("it's") == '"it\'s"' and shown(2.5) == "2.5", "a short one is whole"
    assert quoted("x" * (SHOWN_MAX - 2)) == "'" + "x" * (SHOWN_MAX - 2) + "'", "as long as the bound: whole"
