"""The harvester: feeds inputs.

- step "chain" (on `hrwsi_product`): every product whose type some routine consumes becomes an
  input of each matching condition; the product is marked chained in the same statement.
- step "multi_input": conditions that need several inputs (same tile and day, a 7-day composite)
  get their one input once the group is complete (rules as data: hrwsi.multi_input_rule). New
  inputs, products and ended tasks wake it only while a rule is active (as its last run found):
  otherwise it would find nothing, and `hrwsi_input` and `hrwsi_task` are not listened to. A rule
  added meanwhile is found by the backstop poll.
- side task "harvest_sources": starts every source (landing directory, catalogue) due by its
  schedule, each in a task of its own with its own timeout, a few at once
  (hrwsi.harvest.sources.SourceRunner); a slow or failing source never holds up the others.
"""

from __future__ import annotations

import logging
import time

import asyncpg

from hrwsi.harvest import multi_input, sources
from hrwsi.harvest.corrections import CorrectionUnderWay, corrector, wait_for_corrections
from hrwsi.service import (
    BUSY_RETRY_S,
    BUSY_SQLSTATE,
    UNREACHABLE_LOG_EVERY_S,
    AdaptiveBatch,
    Service,
    SideTask,
    is_lock_timeout,
    timed_statement,
)
from hrwsi.settings import Settings
from hrwsi.sql_files import query

logger = logging.getLogger(__name__)

BATCH = 5_000


class Harvester(Service):
    kind = "harvester"

    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        super().__init__(pool, settings)
        # Validated here, at start-up: a wrong landing root or limit stops the harvester with its reason.
        self.sources = sources.SourceRunner(pool, sources.HarvestOptions.from_settings(settings),
                                            lambda: self.instance_id, lease_held=self.lease_held,
                                            lease_s=settings.lease_timeout_s, clock=self.clock.now)
        self.chain_batch = AdaptiveBatch(BATCH)
        # Since when (monotonic) products wait for a time series another transaction holds, and when
        # that was last said: chaining goes around such series until none waits (None: no series busy).
        self.busy_series_since: float | None = None
        self.busy_series_told = 0.0
        # Since when (monotonic) chaining waits for a correction of an input under way, and when that was last
        # said (None: none waited for); told apart from a busy time series (migration 0102).
        self.correction_since: float | None = None
        self.correction_told = 0.0
        self.steps = {"chain": self.chain, "multi_input": self.multi_input}
        # Whether a multi-input rule was active at the step's last run (True until it has run).
        self.multi_input_rules = True
        self.router.on("hrwsi_product", "chain")
        # While no rule is active, `hrwsi_input` and `hrwsi_task` are not listened to at all: each
        # input woke the harvester (and its listener's server process) two or three times for
        # nothing, beside the launcher's reaction to the same commit (Service.listen_as_routes_need).
        self.router.on("hrwsi_input", "multi_input", active=lambda: self.multi_input_rules)
        self.router.on("hrwsi_task", "multi_input", active=lambda: self.multi_input_rules,
                       when=lambda n: any(s in n.counts for s in ("processed", "terminated", "cancelled")))

    async def chain(self) -> bool:
        try:
            more = await self._chain_step()
        except CorrectionUnderWay:
            # The wait for a correction ran out: no product was taken, nor any series tried. Said as what it is: it
            # was taken for a busy time series, and the end of the correction said "no product waits for a time
            # series any more" (found by review).
            await self._tell_correction_under_way()
            self.wake_later("chain", BUSY_RETRY_S)
            return False
        self._correction_ended()
        return more

    def _correction_ended(self) -> None:
        if self.correction_since is not None:
            logger.info("harvester: chaining goes on: the correction of an input it waited for ended (after %.0f s)",
                        time.monotonic() - self.correction_since)
            self.correction_since = None

    async def _chain_step(self) -> bool:
        batch = self.chain_batch.size
        if self.busy_series_since is None:
            started = time.monotonic()
            try:
                row = await self._chain("chain_products", batch)
            except asyncpg.PostgresError as error:
                if error.sqlstate != BUSY_SQLSTATE or not is_lock_timeout(error):
                    raise
                # A lock another transaction holds, most often a time series' (a data engineer's INSERT
                # not committed yet): its products wait, every other product is chained meanwhile.
                self.busy_series_since = started
                row = await self._chain("chain_products_around_busy_series", batch)
        else:
            row = await self._chain("chain_products_around_busy_series", batch)
        if self.busy_series_since is not None:
            self._tell_busy_series(row["waiting"])
        self.chain_batch.succeeded()
        if row["products"]:
            # (a product nothing consumes, every leaf routine's, said "into 0 new input(s)": debug)
            logger.log(logging.INFO if row["inputs"] else logging.DEBUG, "chained %d product(s) into %d new input(s)",
                       row["products"], row["inputs"])
            if self.multi_input_rules:
                self.wake("multi_input")
        return row["products"] == batch

    async def _chain(self, statement: str, batch: int) -> asyncpg.Record:
        # (in a transaction with the lock a correction takes exclusively: neither runs while the other does,
        # and this statement sees what a correction marked; migration 0097)
        async with self.pool.acquire() as conn, timed_statement(statement), conn.transaction():
            await wait_for_corrections(conn)
            return await conn.fetchrow(query(statement), batch)

    async def _tell_correction_under_way(self) -> None:
        """Say at once, then every UNREACHABLE_LOG_EVERY_S while it lasts, that chaining waits for a correction of an
        input, naming the session that corrects (it may have ended since the wait: then said so)."""
        now = time.monotonic()
        if self.correction_since is None:
            self.correction_since = now
        elif now - self.correction_told < UNREACHABLE_LOG_EVERY_S:
            return
        self.correction_told = now
        who = await corrector(self.pool)
        logger.warning("harvester: chaining waits for the correction of an input under way (hrwsi.correct_input in %s), "
                       "for %.0f s now: no product is chained until it commits or rolls back (`hrwsi status` names a "
                       "session left open)", who.describe() if who is not None else "a session that has ended since",
                       now - self.correction_since)

    def _tell_busy_series(self, waiting: int) -> None:
        """While products wait for a time series another transaction holds, say so at once and then
        every UNREACHABLE_LOG_EVERY_S, and look again at the backstop poll; once none waits, say so."""
        now = time.monotonic()
        if waiting == 0:
            logger.info("harvester: no product waits for a time series any more (after %.0f s)",
                        now - self.busy_series_since)
            self.busy_series_since = None
            return
        if self.busy_series_told < self.busy_series_since or now - self.busy_series_told >= UNREACHABLE_LOG_EVERY_S:
            self.busy_series_told = now
            logger.warning("harvester: %d product(s) wait to be chained: another transaction holds the time series "
                           "their inputs join, for %.0f s now (a data engineer's INSERT not committed? `hrwsi status` "
                           "names the session); the other products are chained meanwhile", waiting,
                           now - self.busy_series_since)
        self.wake_later("chain", self.settings.backstop_poll_s)

    def on_statement_timeout(self, statement: str) -> str:
        if statement in ("chain_products", "chain_products_around_busy_series"):
            return f"it runs again on {self.chain_batch.shrink()} product(s) at a time"
        return super().on_statement_timeout(statement)

    async def multi_input(self) -> bool:
        try:
            created, rules = await multi_input.evaluate_multi_input_conditions(self.pool, now=self.clock.now())
        except CorrectionUnderWay:  # (groups wait for a correction as chaining does)
            await self._tell_correction_under_way()
            self.wake_later("multi_input", BUSY_RETRY_S)
            return False
        self._correction_ended()
        if created:
            logger.info("created %d input(s) for multi-input conditions whose group is complete", created)
        if self.multi_input_rules == (rules > 0):
            return False
        self.multi_input_rules = rules > 0
        await self.listen_as_routes_need()
        # Listened to again (a rule is active now): run again, for what came between this run's read
        # and the LISTEN. (Quiet now: nothing to run.)
        return self.multi_input_rules

    async def harvest_sources(self) -> None:
        await self.sources.start_due()  # each run logs its outcome when it ends

    async def stop(self) -> None:
        await self.sources.stop()

    async def drop_claims(self) -> None:
        # Paused past its lease: another harvester may run its sources now.
        self.sources.abandon()

    def side_tasks(self):
        return [SideTask("harvest_sources", self.harvest_sources, self.settings.landing_scan_s)]
