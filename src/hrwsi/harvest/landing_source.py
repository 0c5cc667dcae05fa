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
