"""Multi-input triggering rules: a condition that needs several products at once.

A processing condition with a row in hrwsi.multi_input_rule gets no input per product; it gets
one input per *complete group* (one tile, window_days days ending on a day), once its
requirements (hrwsi.multi_input_requirement: product type and minimum count, over the window or
on every day of it) are met and, when wait_for_open_tasks, no task that would add a member is
still waiting or running. The input's path is `multi_input/<condition>/<tile>/<YYYY-MM-DD>`; its
members (what the routine reads) are in hrwsi.multi_input_member. All of it is one set-based
statement (sql/queries/harvest.sql), idempotent: rerunning it creates nothing twice. Examples:

    -- GFSC: a snow cover (FSC) and a wet-snow product (SWS) of the same tile and day
    INSERT INTO hrwsi.multi_input_rule (processing_condition) VALUES ('gfsc_daily');
    INSERT INTO hrwsi.multi_input_requirement VALUES ('gfsc_daily', 'FSC', 1), ('gfsc_daily', 'SWS', 1);

    -- a composite of the last 7 days, once every day has its FSC and all of them are processed
    INSERT INTO hrwsi.multi_input_rule (processing_condition, window_days, every_day_of_window)
    VALUES ('fsc_weekly', 7, true);
    INSERT INTO hrwsi.multi_input_requirement VALUES ('fsc_weekly', 'FSC', 1);
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

import asyncpg

from hrwsi.harvest.corrections import wait_for_corrections
from hrwsi.sql_files import query


class Evaluation(NamedTuple):
    inputs: int  # created for the groups that became complete
    rules: int  # active multi-input conditions (none: nothing can make a group)


async def evaluate_multi_input_conditions(pool: asyncpg.Pool, *, now: datetime | None = None) -> Evaluation:
    """Create the inputs of the groups that became complete; say how many, and how many rules are active."""
    now = now or datetime.now(UTC)
    # (after the lock a correction takes exclusively: a group made while one ran took a product of the old
    # version the correction had not marked outdated yet; migration 0097)
    async with pool.acquire() as conn, conn.transaction():
        await wait_for_corrections(conn)
        row = await conn.fetchrow(query("multi_input_create_complete_groups"), now)
    return Evaluation(row["inputs"], row["rules"])
