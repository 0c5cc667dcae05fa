"""What reaches an operator's terminal (hrwsi.terminal): user data shown, never obeyed."""

from __future__ import annotations

from hrwsi.terminal import one_line, visible


def test_control_characters_are_shown_as_their_escapes_and_text_is_kept():
    assert visible("a\x1b[31mb\x07c\x9bd é\tx\ny") == "a\\x1b[31mb\\x07c\\x9bd é\tx\ny"
    assert visible(None) == ""


def test_directional_overrides_are_shown_so_that_a_name_reads_as_it_is_stored():
    """"Trojan Source" (CVE-2021-42574): /in/abc<RLO>gnp.exe displays as /in/abcexe.png."""
    assert visible("/in/abc\u202egnp.exe") == "/in/abc\\u202egnp.exe"
    assert visible("\u2066x\u2069 \u200f") == "\\u2066x\\u2069 \\u200f"


def test_one_line_escapes_line_breaks_too():
    assert one_line("a\nb\u2028c\u202e") == "a\\x0ab\\u2028c\\u202e"
