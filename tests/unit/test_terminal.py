"""What reaches an operator's terminal (hrwsi.terminal): user data shown, never obeyed."""

from __future__ import annotations

import io

from hrwsi.terminal import one_line, print_anywhere, visible


def test_control_characters_are_shown_as_their_escapes_and_text_is_kept():
    assert visible("a\x1b[31mb\x07c\x9bd é\tx\ny") == "a\\x1b[31mb\\x07c\\x9bd é\tx\ny"
    assert visible(None) == ""


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
