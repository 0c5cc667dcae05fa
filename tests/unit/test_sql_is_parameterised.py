"""Only parameterised SQL: no query text built by string formatting anywhere in hrwsi, and one
placeholder style per query file."""

import ast
import re
from pathlib import Path

import pytest

from hrwsi.sql_files import ASYNCPG, PSYCOPG, placeholder_style, placeholder_styles, query_files

SOURCE = Path(__file__).resolve().parents[2] / "src" / "hrwsi"
SQL = Path(__file__).resolve().parents[2] / "sql"
SQL_METHODS = {"execute", "executemany", "fetch", "fetchrow", "fetchval", "cursor", "copy"}


def formatted(node: ast.AST) -> bool:
    """An f-string, a `%` on a string, a .format() call, or a + with a string: text built from values."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        return any(isinstance(side, (ast.Constant, ast.JoinedStr)) and isinstance(getattr(side, "value", ""), str)
                   for side in (node.left, node.right)) or formatted(node.left) or formatted(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return isinstance(node.func.value, (ast.Constant, ast.JoinedStr))
    return False


def offending_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_METHODS
                and node.args and formatted(node.args[0])):
            yield node.lineno


def test_the_checker_catches_formatted_sql():
    bad = ast.parse('conn.execute(f"SELECT * FROM t WHERE id = {x}")\n'
                    'conn.fetch("SELECT %s" % x)\n'
                    'conn.fetchval("SELECT {}".format(x))\n'
                    'conn.execute("SELECT " + x)\n')
    assert list(offending_calls(bad)) == [1, 2, 3, 4]
    good = ast.parse('conn.execute("SELECT %s", (x,))\nconn.fetch(query("q"), x)\n')
    assert list(offending_calls(good)) == []


def test_no_string_formatted_sql_in_the_package():
    found = []
    for path in SOURCE.rglob("*.py"):
        for line in offending_calls(ast.parse(path.read_text(), str(path))):
            found.append(f"{path.relative_to(SOURCE)}:{line}")
    assert found == [], f"SQL built by string formatting: {found}"


def test_no_dynamic_sql_in_plpgsql():
    found = [str(p.relative_to(SQL)) for p in SQL.rglob("*.sql")
             if re.search(r"\bEXECUTE\s+(format|'|\w+\s*\|\|)", p.read_text(), re.IGNORECASE)]
    assert found == []


def test_each_query_file_uses_one_placeholder_style():
    """asyncpg takes $1, psycopg takes %(name)s: a file of both is a file whose reader must check
    each block's caller. Blocks of the other style go to a file of their own (e.g. harvest_cli.sql)."""
    styles = {path.name: placeholder_style(path) for path in query_files()}  # raises on a mixed file
    assert styles["core.sql"] == ASYNCPG and styles["harvest.sql"] == ASYNCPG
    assert styles["reports.sql"] == PSYCOPG and styles["harvest_cli.sql"] == PSYCOPG


def test_the_style_check_refuses_a_file_mixing_styles(tmp_path):
    mixed = tmp_path / "mixed.sql"
    mixed.write_text("-- name: a\nSELECT $1;\n\n-- name: b\nSELECT %(x)s;\n")
    with pytest.raises(ValueError, match=r"mixed.sql mixes placeholder styles: \{'asyncpg': \['a'\], 'psycopg': \['b'\]\}"):
        placeholder_style(mixed)


@pytest.mark.parametrize(
    ("text", "styles"),
    [
        ("SELECT $1, $2::int", {ASYNCPG}),
        ("SELECT %(name)s", {PSYCOPG}),
        ("SELECT %s", {PSYCOPG}),
        ("SELECT 1", set()),
        ("-- takes $1\nSELECT %(name)s", {PSYCOPG}),                   # a comment is not a placeholder
        ("SELECT format('%s items', $1)", {ASYNCPG}),                  # nor is text in quotes
        ("SELECT 'it''s %s' || $1", {ASYNCPG}),
        ("DO $q$ BEGIN END $q$; SELECT $$x$$", set()),                 # dollar quotes are not $1
    ],
)
def test_placeholder_styles_are_read_outside_comments_and_quotes(text, styles):
    assert placeholder_styles(text) == styles
