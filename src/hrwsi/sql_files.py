"""Finding the SQL shipped with hrwsi: versioned migrations and named query blocks.

All SQL lives in `sql/` (at the repository root, and inside the wheel as `hrwsi/sql`). Queries are
named blocks in `sql/queries/*.sql` (one file per area), each introduced by a line
`-- name: some_query`, and loaded by name; names are unique across the files.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

_NAME_LINE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def sql_dir() -> Path:
    packaged = Path(__file__).parent / "sql"  # inside an installed wheel
    if packaged.is_dir():
        return packaged
    repository = Path(__file__).resolve().parents[2] / "sql"  # editable install / source tree
    if repository.is_dir():
        return repository
    raise FileNotFoundError("hrwsi's sql/ directory is missing from the installation")


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


@functools.cache
def queries() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((sql_dir() / "queries").glob("*.sql")):
        for name, text in parse_named_blocks(path.read_text()).items():
            if name in found:
                raise ValueError(f"query {name!r} is defined twice (again in {path.name})")
            found[name] = text
    return found


def query(name: str) -> str:
    try:
        return queries()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in sql/queries/*.sql") from None


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
