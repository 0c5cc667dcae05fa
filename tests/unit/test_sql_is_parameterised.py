"""Only parameterised SQL: no query text built by string formatting anywhere in hrwsi."""

import ast
import re
from pathlib import Path

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
