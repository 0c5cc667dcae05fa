"""hrwsi.sql_files: every named query is used, and the schema and migrations are found."""

import re
from pathlib import Path

import pytest

from hrwsi.sql_files import expand_includes, migrations, queries, query_files, schema_sql

ROOT = Path(__file__).resolve().parents[2]


def test_every_named_query_is_used():
    """A query nobody loads is dead text that a reader still has to read and keep up to date."""
    code = "\n".join(path.read_text() for folder in ("src", "benchmarks") for path in (ROOT / folder).rglob("*.py"))
    # Any string literal naming it counts: some callers pick the name from a table (hrwsi.schema).
    used = set(re.findall(r"""["']([a-z_][a-z0-9_]*)["']""", code))
    # (and a block another includes: a part of a statement)
    used |= {m for path in query_files() for m in re.findall(r"--\s*include:\s*([a-z_][a-z0-9_]*)", path.read_text())}
    assert sorted(set(queries()) - used) == []


def test_the_schema_and_the_migrations_are_found():
    assert "CREATE TABLE hrwsi.processing_task" in schema_sql()
    versions = [version for version, _, _ in migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_a_block_included_by_another_stands_in_it_indented_as_the_line_that_includes_it():
    """chain_products and chain_products_around_busy_series make inputs by the same rules: written once."""
    blocks = {"part": "SELECT 1\n-- a comment\nFROM t", "whole": "WITH x AS (\n    -- include: part\n)\nSELECT * FROM x"}
    assert expand_includes(blocks)["whole"] == "WITH x AS (\n    SELECT 1\n    -- a comment\n    FROM t\n)\nSELECT * FROM x"
    assert "-- include" not in queries()["chain_products"]
    conflict = "ON CONFLICT (processing_condition, input_path) WHERE superseded_by IS NULL DO NOTHING"
    assert queries()["chain_products"].count(conflict) == 1
    with pytest.raises(ValueError, match="includes 'gone', which no file defines"):
        expand_includes({"a": "-- include: gone"})
    with pytest.raises(ValueError, match="queries include each other: a -> b -> a"):
        expand_includes({"a": "-- include: b", "b": "-- include: a"})


def test_the_schema_and_the_migrations_are_ascii_so_that_a_database_of_another_encoding_hears_why_it_is_refused():
    """schema.sql and migration 0079 refuse a database that is not UTF8 in their first statement; the text
    after it reaches the server only as its client encoding allows (a SQL_ASCII session could not be sent
    a comment's "ß"), so they are ASCII: code points are written as escapes."""
    from hrwsi.sql_files import sql_dir

    for path in [sql_dir() / "schema.sql", *sorted((sql_dir() / "migrations").glob("*.sql"))]:
        assert path.read_bytes().isascii(), path.name
