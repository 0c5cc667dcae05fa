"""A failed attempt's last line of output, as its message ends with it (backends.base.log_last_line)."""

from hrwsi.backends.base import LAST_LINE_CHARACTERS, LAST_LINE_READ_BYTES, JobOutcome, log_last_line, with_last_line


def test_the_last_line_that_is_not_blank_is_the_routines_last_word(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("reading B04\nTraceback (most recent call last):\n  File \"x.py\", line 7\nKeyError: 'B11'\n\n  \n")
    assert log_last_line(str(log)) == "KeyError: 'B11'"


def test_hrwsis_own_lines_in_a_log_are_not_the_routines_words(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("=== Nomad job j, allocation a on node n: stdout ===\nwrote 3 tiles\n"
                   "=== Nomad job j, allocation a on node n: stderr ===\nno space left for tile 4\n"
                   "[hrwsi supervisor 2026-12-07T09:00:00Z] the log reached its cap\n")
    assert log_last_line(str(log)) == "no space left for tile 4"


def test_a_huge_log_is_read_from_its_end_only_and_a_long_line_is_cut(tmp_path):
    log = tmp_path / "a.log"
    with log.open("w") as file:
        file.write("x" * 5_000_000 + "\n")
        file.write("y" * 1000 + "\n")
    line = log_last_line(str(log))
    assert line == "y" * (LAST_LINE_CHARACTERS - 1) + "\u2026"


def test_a_line_longer_than_what_is_read_shows_its_end(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("z" * (LAST_LINE_READ_BYTES * 3) + "END")
    assert log_last_line(str(log)) == "\u2026" + ("z" * LAST_LINE_CHARACTERS + "END")[-(LAST_LINE_CHARACTERS - 1):]


def test_control_characters_are_escaped_and_a_line_carriage_returns_rewrote_shows_its_last_part(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"10%\r50%\rfailed at 50%: \x1b[2J\x07bad\ttile\r\n")
    assert log_last_line(str(log)) == "failed at 50%: \\x1b[2J\\x07bad\\x09tile"


def test_a_log_that_is_not_utf8_shows_its_bytes_escaped(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes("erreur: fichier ferm\u00e9\n".encode("latin-1"))
    assert log_last_line(str(log)) == "erreur: fichier ferm\\xe9"


def test_a_missing_empty_or_binary_log_has_no_last_line(tmp_path):
    assert log_last_line(str(tmp_path / "missing.log")) is None
    assert log_last_line(None) is None
    (tmp_path / "empty.log").write_text("\n\n")
    assert log_last_line(str(tmp_path / "empty.log")) is None
    (tmp_path / "core.log").write_bytes(b"started\n\x7fELF\x02\x01\x00\x00\x00junk")
    assert log_last_line(str(tmp_path / "core.log")) is None
    assert log_last_line(str(tmp_path)) is None  # (a directory)


def test_the_last_line_ends_the_message_after_the_exit_code():
    outcome = JobOutcome("internal_error", 3, "exit code 3")
    assert with_last_line(outcome, "KeyError: 'B11'").message == "exit code 3: KeyError: 'B11'"
    assert with_last_line(outcome, None) is outcome
    nomad = JobOutcome("internal_error", 3, "exit code 3 (allocation 1234abcd on node n1)")
    assert with_last_line(nomad, "KeyError: 'B11'").message == \
        "exit code 3 (allocation 1234abcd on node n1); its log ends: KeyError: 'B11'"
