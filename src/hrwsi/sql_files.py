"""Finding the SQL shipped with hrwsi: the current schema, versioned migrations, named query blocks.

All SQL lives in `sql/` (at the repository root, and inside the wheel as `hrwsi/sql`):
- `sql/schema.sql`: the current schema, what a fresh install runs;
- `sql/migrations/NNNN_name.sql`: the changes, in order, for databases installed before them;
- `sql/queries/*.sql`: named blocks, each introduced by a line `-- name: some_query`, loaded by
  name; names are unique across the files. Each file uses one placeholder style: asyncpg's `$1`
  (the services) or psycopg's `%(name)s` (the CLI and other synchronous callers). A line
  `-- include: other_block` stands for that block's text (indented as the line is): rules two
  statements share are written once (a part of a statement, which no caller loads alone).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

_NAME_LINE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_INCLUDE_LINE = re.compile(r"^([ \t]*)--\s*include:\s*([a-z_][a-z0-9_]*)[ \t]*$", re.MULTILINE)

ASYNCPG = "asyncpg"  # $1, $2 ...
PSYCOPG = "psycopg"  # %(name)s or %s
# Quoted text and comments first, so that a `$1` or `%s` inside them is not taken for a placeholder.
_PLACEHOLDER_OR_SKIPPED = re.compile(r"'(?:[^']|'')*'|--[^\n]*|(?<![\w$])\$[1-9][0-9]*|%\(\w+\)s|%s")


def sql_dir() -> Path:
    packaged = Path(__file__).parent / "sql"  # inside an installed wheel
    if packaged.is_dir():
        return packaged
    repository = Path(__file__).resolve().parents[2] / "sql"  # editable install / source tree
    if repository.is_dir():
        return repository
    raise FileNotFoundError("hrwsi's sql/ directory is missing from the installation")


def schema_sql() -> str:
    """The current schema (sql/schema.sql): what a fresh install runs."""
    return (sql_dir() / "schema.sql").read_text()


def parse_named_blocks(text: str) -> dict[str, str]:
    blocks: dict[str, str] = {}
    matches = list(_NAME_LINE.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        name = match.group(1)
        if name in blocks:
            raise ValueError(f"query {name!r} is defined twice")
        blocks[name] = text[match.end() : end].strip()
    return blocks


def query_files() -> list[Path]:
    return sorted((sql_dir() / "queries").glob("*.sql"))


@functools.cache
def queries() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in query_files():
        for name, text in parse_named_blocks(path.read_text()).items():
            if name in found:
                raise ValueError(f"query {name!r} is defined twice (again in {path.name})")
            found[name] = text
    return expand_includes(found)


def expand_includes(blocks: dict[str, str]) -> dict[str, str]:
    """Each block with its `-- include: other` lines replaced by that block's own (expanded) text."""
    return {name: _with_includes(blocks, name, (name,)) for name in blocks}


def _with_includes(blocks: dict[str, str], name: str, seen: tuple[str, ...]) -> str:
    def included(line: re.Match) -> str:
        indent, other = line.group(1), line.group(2)
        if other not in blocks:
            raise ValueError(f"query {name!r} includes {other!r}, which no file defines")
        if other in seen:
            raise ValueError(f"queries include each other: {' -> '.join((*seen, other))}")
        return "\n".join(indent + text if text else text
                         for text in _with_includes(blocks, other, (*seen, other)).split("\n"))
    return _INCLUDE_LINE.sub(included, blocks[name])


def query(name: str) -> str:
    try:
        return queries()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in sql/queries/*.sql") from None


def placeholder_styles(text: str) -> set[str]:
    """The placeholder styles a piece of SQL uses: {"asyncpg"}, {"psycopg"}, none, or both (a mistake)."""
    styles = set()
    for match in _PLACEHOLDER_OR_SKIPPED.finditer(text):
        token = match.group()
        if token.startswith("$"):
            styles.add(ASYNCPG)
        elif token.startswith("%"):
            styles.add(PSYCOPG)
    return styles


def placeholder_style(path: Path) -> str | None:
    """The one placeholder style of a query file (None: it has no parameters); a file mixing styles is refused."""
    styles = placeholder_styles(path.read_text())
    if len(styles) > 1:
        blocks = parse_named_blocks(path.read_text())
        by_style = {style: sorted(n for n, text in blocks.items() if style in placeholder_styles(text))
                    for style in sorted(styles)}
        raise ValueError(f"{path.name} mixes placeholder styles: {by_style}; move the blocks of one style "
                         "to a file of their own")
    return next(iter(styles), None)


def migrations() -> list[tuple[int, str, Path]]:
    """(version, name, path) of every migration, in order."""
    found = []
    for path in sorted((sql_dir() / "migrations").glob("*.sql")):
        match = re.match(r"^(\d{4})_(.+)\.sql$", path.name)
        if not match:
            raise ValueError(f"migration file {path.name} is not named NNNN_description.sql")
        found.append((int(match.group(1)), match.group(2), path))
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a version number: {versions}")
    return found
