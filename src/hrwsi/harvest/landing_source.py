"""A landing-directory source: its configuration (a hrwsi.harvest_source row of kind
landing_directory), loading it, and adding one from Python (the demo)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import psycopg

from hrwsi.harvest.source_config import ConfigUnreadable, config_of, json_number, source_may_read
from hrwsi.sql_files import query
from hrwsi.terminal import quoted

# The longest settle time and scan interval a landing directory takes: a week. A file that must sit
# unchanged for longer is never taken in practice (a writer that pauses that long has stopped), and a
# directory looked at less often than weekly wants a schedule (frequency, cron), which says when. The database's checks took any
# positive number: scan_interval_s = 1e12 (31,700 years) was accepted, the scan did its work, and the
# run ended in "OverflowError: date value out of range" reckoning its next run (1e400 is infinity to
# Python); found by review. Such a source is set aside before it runs, naming the key.
MAX_LANDING_DURATION_S = 7 * 86_400


def refuse_absurd_durations(config: dict) -> None:
    """Raise ConfigUnreadable naming config.settle_s or config.scan_interval_s when it is not a number of
    seconds from 0 (settle) or above 0 (interval) to a week."""
    for key, least in (("settle_s", 0.0), ("scan_interval_s", None)):
        if key not in config:
            continue
        value = config[key]
        number = json_number(value)
        if not ((number >= 0 if least is not None else number > 0) and number <= MAX_LANDING_DURATION_S):
            bound = "from 0" if least is not None else "above 0"
            raise ConfigUnreadable(f"config.{key} = {json.dumps(value)[:40]} is not a number of seconds {bound} to "
                                   f"{MAX_LANDING_DURATION_S:,} (a week: a directory looked at less often wants a "
                                   "schedule, frequency or cron): correct it (the source is set aside until then)")


def _bracket_problem(pattern: str, start: int) -> tuple[str | None, int]:
    """Why the set that opens at pattern[start] ('[') matches what its writer did not mean, or None; and where it
    ends. The sets as fnmatch.translate reads them (Python 3.11), which the harvester's listing uses."""
    end = start + 1
    if end < len(pattern) and pattern[end] == "!":
        end += 1
    if end < len(pattern) and pattern[end] == "]":
        end += 1
    while end < len(pattern) and pattern[end] != "]":
        end += 1
    if end >= len(pattern):
        return (f"its '[' at character {start + 1} opens a set that is never closed, so it matches '[' itself: close "
                "the set, or write [[] for a '[' in the names"), len(pattern)
    body = pattern[start + 1:end]
    if body.startswith("^"):
        return (f"its set [{body}] starts with '^', which a glob takes as a character of the set, not as 'not' (a "
                f"regular expression's): write [!{body[1:]}] for the names without them"), end + 1
    # (fnmatch.translate's chunks: a '-' between two characters makes a range; it drops one whose first
    # character comes after its last, so that [z-a] is a set of nothing and the pattern matches no name)
    chunks, first, k = [], start + 1, start + (3 if pattern[start + 1:start + 2] == "!" else 2)
    while (k := pattern.find("-", k, end)) >= 0:
        chunks.append(pattern[first:k])
        first, k = k + 1, k + 3
    chunks.append(pattern[first:end])
    for low, high in zip(chunks, chunks[1:]):
        if low and high and low[-1] > high[0]:
            return (f"its range {low[-1]}-{high[0]} in [{body}] runs backwards ({quoted(low[-1])} comes after "
                    f"{quoted(high[0])}), so it matches no character: write {high[0]}-{low[-1]}"), end + 1
    return None, end + 1


def pattern_problem(pattern: str) -> str | None:
    """Why a landing directory's glob pattern is malformed, or None. fnmatch and pathlib's glob take any text and
    make something of it: [z-a] matched nothing, so that a source with it found no file and said nothing (found by
    exploratory testing); [^a]* took the names starting with ^ or a, a regular expression's habit read the other
    way round; an unclosed '[' and a backslash stood for themselves; and a '**' inside a component failed every
    scan as it came."""
    index = 0
    while index < len(pattern):
        character = pattern[index]
        if character == "[":
            problem, index = _bracket_problem(pattern, index)
            if problem is not None:
                return problem
            continue
        if character == "\\":
            return (f"its backslash at character {index + 1} is taken as itself, not as an escape: write [*], [?] "
                    "or [[] for a '*', '?' or '[' in the names")
        index += 1
    if any("**" in part and part != "**" for part in pattern.split("/")):
        return "its '**' is not a whole path component (write it as in S2/**/*.zip), which the glob refuses"
    return None


def refuse_malformed_pattern(config: dict) -> None:
    """Raise ConfigUnreadable naming config.pattern when it is not text or is malformed (pattern_problem)."""
    if "pattern" not in config:
        return
    pattern = config["pattern"]
    problem = "it is not text" if not isinstance(pattern, str) else pattern_problem(pattern)
    if problem is not None:
        raise ConfigUnreadable(f"config.pattern = {quoted(json.dumps(pattern, ensure_ascii=False)[:200])} is "
                               f"malformed: {problem} (the source is set aside until it is corrected)")


@dataclass(frozen=True)
class LandingSource:
    name: str
    directory: str
    work_directory: str
    product_type: str
    settle_s: float = 2.0
    unzip: bool = True
    zip_password: str | None = field(default=None, repr=False)  # from the environment, never stored
    pattern: str = "*"
    zip_password_env: str | None = None    # the variable's name, for messages
    scan_interval_s: float | None = None   # unscheduled sources: rescan after this (default: settle time)

    @classmethod
    def from_row(cls, name: str, product_type: str, config: dict | str) -> LandingSource:
        config = config_of(config)
        password_env = config.get("zip_password_env")
        refused = source_may_read(password_env) if password_env else None
        if refused is not None:  # (the rule of a catalogue's auth: one for every source)
            raise ConfigUnreadable(f"zip_password_env refused: {refused}")
        refuse_absurd_durations(config)
        refuse_malformed_pattern(config)
        return cls(name=name, directory=config["directory"], work_directory=config["work_directory"],
                   product_type=product_type, settle_s=float(config.get("settle_s", 2.0)),
                   unzip=bool(config.get("unzip", True)),
                   zip_password=os.environ.get(password_env) if password_env else None,
                   pattern=config.get("pattern", "*"), zip_password_env=password_env,
                   scan_interval_s=float(config["scan_interval_s"]) if "scan_interval_s" in config else None)

    @property
    def rescan_after_s(self) -> float:
        """How long an unscheduled source waits between scans: its settle time, at least 1 s."""
        return self.scan_interval_s if self.scan_interval_s else max(self.settle_s, 1.0)


async def load_landing_sources(pool: asyncpg.Pool, name: str | None = None) -> list[LandingSource]:
    """The active landing-directory sources (or the one named)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(query("landing_sources"), name)
    return [LandingSource.from_row(r["name"], r["product_type"], r["config"]) for r in rows]


def register_source(conn: psycopg.Connection, *, name: str, directory: Path | str, product_type: str,
                    work_directory: Path | str | None = None, pattern: str = "*", settle_s: float = 1.0,
                    interval_s: float | None = None, unzip: bool = True,
                    zip_password_env: str | None = None) -> None:
    """Add (or update) a landing-directory source scanned continuously (every interval_s seconds)."""
    if work_directory is None:
        raise ValueError(f"landing source {name}: a work directory is needed (prepared files are moved there)")
    config = {"directory": str(Path(directory).resolve()), "work_directory": str(Path(work_directory).resolve()),
              "pattern": pattern, "settle_s": settle_s, "unzip": unzip}
    if interval_s is not None:
        config["scan_interval_s"] = interval_s
    if zip_password_env:
        config["zip_password_env"] = zip_password_env
    conn.execute(query("cli_upsert_landing_source"),
                 {"name": name, "product_type": product_type, "config": json.dumps(config)})
