"""What the database refuses of an input's path, asked before the harvester's INSERTs."""

from hrwsi.harvest import input_checks


def test_a_relative_path_is_refused_as_the_database_does():
    name = "S2A_MSIL1C_20240105T103421_N0510_R108_T32TPR_20240105T123456.SAFE"
    assert input_checks.path_problem(name) == "its path is not absolute"
    assert input_checks.path_problem("") == "its path is not absolute"
    assert input_checks.path_problem(f"/eodata/{name}") is None


def test_a_file_name_is_checked_for_its_characters_only():
    assert input_checks.name_problem("S2A.SAFE") is None  # relative, as a name in a directory is
    assert input_checks.name_problem("a\tb.SAFE").startswith("its name holds a control character")
    assert input_checks.path_problem("/eodata/a.SAFE ") == "its name begins or ends with white space"


def test_a_name_with_an_invisible_character_is_refused_as_the_database_does():
    """Migration 0079 refuses Unicode's line and paragraph separators and its format characters in a
    path: a landing file named so would fail the harvester's whole INSERT unless set aside first."""
    for name in ("a\u2028b.SAFE", "a\u2029b.SAFE", "a\u200b.SAFE", "\u202eFAS.a", "a\ufeff.SAFE", "a\U000e0041.SAFE"):
        assert input_checks.name_problem(name) == "its name holds an invisible character (shown here as its \\u escape)"
    assert input_checks.escaped("a\u2028b\tc\U000e0041") == "a\\u2028b\\x09c\\U000e0041"
    assert input_checks.name_problem("Été 中文 한글 😀 a b.SAFE") is None


def test_a_name_with_a_character_that_looks_like_a_space_or_nothing_is_refused_as_the_database_does():
    """Found by exploratory testing: a no-break space (U+00A0) looks like a space, a Hangul filler like
    nothing; the database refuses them (migration 0083), so a landing file named so is set aside."""
    for character in ("\u00a0", "\u115f", "\u1160", "\u3164", "\uffa0", "\u2007", "\u3000"):
        assert input_checks.name_problem(f"a{character}b.SAFE") == (
            "its name holds a character that looks like a space or nothing (shown here as its \\u escape)")
    assert input_checks.escaped("a\u00a0b\u3164") == "a\\u00a0b\\u3164"
