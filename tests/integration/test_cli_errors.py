"""hrwsi.cli.errors against the real server: what a command says when the database refuses or goes away."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from hrwsi.cli.errors import explain
from hrwsi.terminal import quoted


@pytest.mark.parametrize("name, shown", [("snow\tcover", "'snow\\x09cover'"), ("snow\ncover", "'snow\\x0acover'"),
                                         ("snow  cover", "'snow  cover'")])
def test_a_refusal_quoting_a_name_shows_it_as_it_is_its_layout_characters_escaped(db, database_url, name, shown):
    """(the refusal's whitespace was collapsed: a tab or a line break in a quoted name read as a space, two spaces
    as one: another name; found by review)"""
    with pytest.raises(psycopg.Error) as refused:
        db.execute("SELECT hrwsi.hold_routine(%s)", (name,))
    said, code = explain(refused.value, database_url)
    assert said == f"the database refused it: no routine {shown}" and code == 1


def test_a_session_the_server_ends_is_one_line_with_the_cause_and_not_the_statements_context(db, database_url):
    """(the line carried the server's whole CONTEXT, the statement and each function it ran in, before the advice;
    found by review)"""
    victim = psycopg.connect(database_url, autocommit=True)
    victim.execute("CREATE FUNCTION pg_temp.waits() RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(30); END $$")
    pid = victim.info.backend_pid

    def end_it() -> None:
        while not db.execute("SELECT wait_event = 'PgSleep' FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]:
            time.sleep(0.05)
        db.execute("SELECT pg_terminate_backend(%s)", (pid,))

    ender = threading.Thread(target=end_it)
    ender.start()
    with victim, pytest.raises(psycopg.OperationalError) as ended:
        victim.execute("SELECT pg_temp.waits()")
    ender.join()
    said, code = explain(ended.value, database_url)
    assert said.startswith("cannot reach the database (") and code == 2
    assert ": terminating connection due to administrator command; check HRWSI_DATABASE_URL" in said, said
    assert "CONTEXT" not in said and "pg_sleep" not in said and "\n" not in said


@pytest.mark.parametrize("name", ["snow_cover", "it's" * 20, "b" * 118, "c" * 119, "a" * 5000, "d" * 1_234_567])
def test_the_database_quotes_a_name_as_the_cli_does_a_long_one_cut_with_its_length_said(db, name):
    """(a 5,000-character name made a 5,000-character refusal; found by review) hrwsi.quoted_name and
    hrwsi.terminal.quoted give one form."""
    assert db.execute("SELECT hrwsi.quoted_name(%s)", (name,)).fetchone()[0] == quoted(name)


@pytest.mark.parametrize("name, shown", [
    ("x\n\x1b[2Jforged", "'x\\x0a\\x1b[2Jforged'"),
    ("snow\u200b_cover", "'snow\\u200b_cover'"),
    ("it's\u202e", "'it''s\\u202e'"),
])
def test_the_database_quotes_a_name_with_its_invisible_and_control_characters_as_escapes_as_the_cli_does(
        db, name, shown):
    """psql printed a refused name's line break and escape sequence as they came (a forged line, the screen cleared),
    and 'snow\\u200b_cover' read "no routine 'snow_cover'" while snow_cover was there (found by exploratory testing)."""
    assert db.execute("SELECT hrwsi.quoted_name(%s)", (name,)).fetchone()[0] == shown == quoted(name)
    with pytest.raises(psycopg.errors.NoDataFound) as refused:
        db.execute("SELECT hrwsi.hold_routine(%s)", (name,))
    assert str(refused.value).startswith(f"no routine {shown}"), str(refused.value)

def test_a_refusal_of_a_long_name_is_a_short_line(db, database_url):
    with pytest.raises(psycopg.Error) as refused:
        db.execute("SELECT hrwsi.hold_routine(%s)", ("x" * 5000,))
    said, _ = explain(refused.value, database_url)
    assert said == "the database refused it: no routine '" + "x" * 118 + "'... (5,000 characters)"
