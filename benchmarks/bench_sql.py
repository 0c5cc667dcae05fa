"""The benchmark's own SQL: named blocks in benchmarks/sql/bench.sql, read as hrwsi reads sql/queries."""

from __future__ import annotations

import functools
from pathlib import Path

from hrwsi.sql_files import parse_named_blocks

BENCH_SQL = Path(__file__).resolve().parent / "sql" / "bench.sql"


@functools.cache
def _blocks() -> dict[str, str]:
    return parse_named_blocks(BENCH_SQL.read_text())


def bench_query(name: str) -> str:
    try:
        return _blocks()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in {BENCH_SQL}") from None
