"""The harvester: feeds inputs.

- step "chain" (on `hrwsi_product`): every product whose type some routine consumes becomes an
  input of each matching condition; the product is marked chained in the same statement.
- step "multi_input": conditions that need several inputs (same tile and day, a 7-day composite)
  get their input once the group is complete.
- side task "harvest_sources": runs every configured source (landing directory, catalogue) that is
  due by its schedule.
"""

from __future__ import annotations

import logging

import asyncpg

from hrwsi import sources, triggering
from hrwsi.config import Settings
from hrwsi.service import Service
from hrwsi.sql_files import query

logger = logging.getLogger(__name__)

BATCH = 5_000


class Harvester(Service):
    kind = "harvester"

    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        super().__init__(pool, settings)
        self.steps = {"chain": self.chain, "multi_input": self.multi_input}
        self.router.on("hrwsi_product", "chain")
        self.router.on("hrwsi_task", "multi_input", when=lambda n: n.counts.get("processed", 0) > 0)

    async def chain(self) -> bool:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(query("chain_products"), BATCH)
        if row["products"]:
            logger.info("chained %d product(s) into %d new input(s)", row["products"], row["inputs"])
            self.wake("multi_input")
        return row["products"] == BATCH

    async def multi_input(self) -> bool:
        created = await triggering.evaluate_multi_input_conditions(self.pool)
        if created:
            logger.info("created %d input(s) for multi-input conditions whose group is complete", created)
        return False

    async def harvest_sources(self) -> None:
        runs = await sources.run_due_sources(self.pool)
        for run in runs:
            logger.info("source %s: %s", run.source, run.summary())
        await self._sleep(self.settings.landing_scan_s if not runs else 0.2)

    def side_tasks(self):
        return [self.harvest_sources]
