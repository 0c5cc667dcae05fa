"""hrwsi.sql_files: every named query is used, and the schema and migrations are found."""

import re
from pathlib import Path

from hrwsi.sql_files import migrations, queries, schema_sql

ROOT = Path(__file__).resolve().parents[2]


def test_every_named_query_is_used():
    """A query nobody loads is dead text that a reader still has to read and keep up to date."""
    code = "\n".join(path.read_text() for folder in ("src", "benchmarks") for path in (ROOT / folder).rglob("*.py"))
    # Any string literal naming it counts: some callers pick the name from a table (hrwsi.schema).
    used = set(re.findall(r"""["']([a-z_][a-z0-9_]*)["']""", code))
    assert sorted(set(queries()) - used) == []


def test_the_schema_and_the_migrations_are_found():
    assert "CREATE TABLE hrwsi.processing_task" in schema_sql()
    versions = [version for version, _, _ in migrations()]
    assert versions == list(range(1, len(versions) + 1))
