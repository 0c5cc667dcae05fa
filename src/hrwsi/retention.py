"""Retention: deleting old finished work under the policy in hrwsi.retention_policy, in small
batches that never block the services (README.md, Retention; migration 0011).

One run goes rule by rule (task history and attempts, products, finished tasks and their inputs,
plans, alerts, landing files, dead service instances), each in batches of `batch_size` rows, each
batch its own short transaction whose rows are taken with SKIP LOCKED, then removes the files the
deleted rows owned (job logs, output directories of failed attempts, prepared and moved-aside
landing files) and sweeps log files and attempt directories no job refers to any more (of an
attempt, its products stay: README.md, Retention). Files are removed off the event loop
and only inside the directories hrwsi owns: this process's HRWSI_HOME/data, and the work
directories of landing sources.

The orchestrator runs it as a side task (`side_task`): every CHECK_INTERVAL_S it claims the run
when the policy's period is over, so one replica prunes at a time. `hrwsi prune` runs it at once
(`--dry-run` counts instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from hrwsi.backends.ascii_decimal import ascii_decimal
from hrwsi.backends.base import ATTEMPT_DIRECTORY
from hrwsi.harvest.landing_files import _PARTIAL_PREFIX, PREVIOUSLY_RECEIVED_DIRECTORY
from hrwsi.service import SideTask
from hrwsi.settings import Settings
from hrwsi.sql_files import query

logger = logging.getLogger(__name__)

CHECK_INTERVAL_S = 60.0  # how often the orchestrator asks whether a run is due (the period is the policy's)
PAUSE_BETWEEN_BATCHES_S = 0.01  # let the services' transactions in between two batches
PARTIAL_AGE_S = 86_400  # an interrupted unzip left this long is abandoned
SWEEP_CHUNK = 1000

# The rules of a run, in order: (rule, query, the kind of returned row that counts one deleted row).
# Every query calls a maintenance function of migration 0011 that applies the policy itself.
RULES = (("task_history", "retention_prune_task_history", "task"),
         ("products", "retention_prune_products", "product"),
         ("finished_tasks", "retention_prune_finished_tasks", "task"),
         ("plans", "retention_prune_plans", "plan"),
         ("alerts", "retention_prune_alerts", "alert"),
         ("landing_files", "retention_prune_landing_files", "landing_file"))
_FILE_KINDS = ("log", "output_dir", "processed_output_dir", "work_file")


@dataclass
class PruneReport:
    """What a run deleted: rows per rule, files removed, files that could not be removed."""

    rows: Counter = field(default_factory=Counter)
    files_removed: int = 0
    file_errors: list[str] = field(default_factory=list)
    rule_errors: dict[str, str] = field(default_factory=dict)  # a rule the database refused: the others ran
    seconds: float = 0.0

    def as_json(self) -> dict:
        return {"rows": dict(self.rows), "files_removed": self.files_removed,
                "file_errors": self.file_errors[:20], "rule_errors": self.rule_errors, "seconds": round(self.seconds, 3)}

    def summary(self) -> str:
        rows = ", ".join(f"{n} {rule.replace('_', ' ')}" for rule, n in sorted(self.rows.items()) if n) or "no rows"
        errors = f"; {len(self.file_errors)} file(s) could not be removed" if self.file_errors else ""
        failed = "".join(f"; rule {rule} failed: {error}" for rule, error in self.rule_errors.items())
        return f"pruned {rows}; {self.files_removed} file(s) removed{errors}{failed} in {self.seconds:.1f} s"


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return path.resolve() != root.resolve()


def _remove_tree(path: Path) -> None:
    """shutil.rmtree, and rm -rf for a tree deeper than it can go. On Python 3.11 rmtree recurses once a
    level: a routine's output 1,100 directories deep raised RecursionError out of the prune, after its
    rows were deleted, and the batch's other files stayed on disk for good (found by exploratory testing).
    rm walks any depth and, like rmtree, never follows a symbolic link out of the tree."""
    try:
        shutil.rmtree(path)
    except RecursionError:
        done = subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(f"rm -rf failed: {' '.join(done.stderr.split())[:300]}") from None


def _remove(path: Path, root: Path | None, report: PruneReport) -> None:
    """Remove a file or directory tree if it lies inside `root`; never anything outside hrwsi's directories."""
    if root is None or not _inside(path, root):
        return
    try:
        if path.is_dir() and not path.is_symlink():
            _remove_tree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            return
        report.files_removed += 1
    except OSError as error:
        report.file_errors.append(f"{path}: {error.strerror or error}")


def _remove_files(items: list[tuple[str, str, str | None]], data_dir: Path, report: PruneReport) -> None:
    for kind, path, root in items:
        if kind == "log":
            _remove(Path(path), data_dir, report)
        elif kind == "output_dir":
            _remove_attempt(Path(path), data_dir, report)
        elif kind == "processed_output_dir":
            if Path(path).name == "output":  # (a layout this version made: <...>/attempt-<n>/output)
                _remove_bookkeeping([Path(path).parent], data_dir, report)
        elif kind == "work_file":
            _remove(Path(path), Path(root) if root else None, report)


def _remove_attempt(output: Path, data_dir: Path, report: PruneReport) -> None:
    """A failed attempt's output directory, with the attempt directory around it (its manifest, which
    names the input, and the launcher's bookkeeping files), then its task's directory once empty. Only
    the output was removed: four files and two directories a failed attempt stayed on disk for ever
    (found by exploratory testing, 2026-12-05)."""
    attempt = output.parent
    if output.name != "output" or not attempt.name.startswith("attempt-") or not attempt.parent.name.startswith("task-"):
        _remove(output, data_dir, report)  # (a layout this version did not make: only what the row names)
        return
    _remove(attempt, data_dir, report)
    with contextlib.suppress(OSError):  # (not empty: another attempt of the task, or its products)
        if _inside(attempt.parent, data_dir):
            attempt.parent.rmdir()


# The attempts' directories on disk are looked at for bookkeeping whose job rows are gone (left by a
# version before migration 0071, which returned failed attempts' directories only) at a process's
# first run and then once a day: the look lists every attempt directory the products tree holds, and
# products stay for ever (README.md, Retention), so it grows with the installation; each batch's
# attempts are cleaned with their rows (hrwsi.delete_history_and_attempts).
ATTEMPT_SWEEP_EVERY_S = 24 * 3600.0
_attempts_swept_at: float | None = None


class Pruner:
    """One run of the policy on one connection (the orchestrator's pool, or `hrwsi prune`'s own)."""

    def __init__(self, conn: asyncpg.Connection, data_dir: Path, stopping: asyncio.Event | None = None):
        self.conn = conn
        self.data_dir = data_dir
        self.stopping = stopping or asyncio.Event()
        self.report = PruneReport()

    async def run(self, batch_size: int) -> PruneReport:
        started = time.monotonic()
        for rule, name, counted in RULES:
            try:
                await self._rule(rule, name, counted, batch_size)
            except asyncpg.PostgresError as error:
                # One rule the database refuses (a row it cannot delete) must not stop the others: each
                # run took the same batch first and failed on it, and no later rule ever ran again.
                self.report.rule_errors[rule] = f"{type(error).__name__}: {error}"
                logger.error("retention: rule %s failed (%s: %s); the other rules run, and this one again at the "
                             "next run", rule, type(error).__name__, error)
        self.report.rows["dead_services"] += len(await self.conn.fetch(query("retention_prune_dead_services")))
        await self._sweep_files()
        self.report.seconds = time.monotonic() - started
        return self.report

    async def _rule(self, rule: str, name: str, counted: str, batch_size: int) -> None:
        """Batches of one rule, each its own short transaction, until one deletes fewer rows than asked
        (or the service stops); the files the deleted rows owned are removed after each batch."""
        while not self.stopping.is_set():
            async with self.conn.transaction():
                rows = await self.conn.fetch(query(name), batch_size)
            deleted = sum(1 for r in rows if r["kind"] == counted)
            self.report.rows[rule] += deleted
            files = [(r["kind"], r["path"], r["root"]) for r in rows if r["kind"] in _FILE_KINDS and r["path"]]
            if files:
                await asyncio.to_thread(_remove_files, files, self.data_dir, self.report)
            if deleted < batch_size:
                return
            await asyncio.sleep(PAUSE_BETWEEN_BATCHES_S)  # let the services' transactions in

    async def _sweep_files(self) -> None:
        """Files whose rows are gone: job logs older than the history period, moved-aside landing files,
        and abandoned partial unzips."""
        policy = await self.conn.fetchrow(query("retention_policy"))
        if policy["task_history"] is not None:
            cutoff = time.time() - policy["task_history"].total_seconds()
            logs = await asyncio.to_thread(_old_files, self.data_dir / "logs", cutoff, "*.log")
            for start in range(0, len(logs), SWEEP_CHUNK):
                chunk = logs[start:start + SWEEP_CHUNK]
                unknown = {r["b"] for r in await self.conn.fetch(query("retention_unknown_jobs"),
                                                                 [p.stem for p in chunk])}
                await asyncio.to_thread(_remove_files, [("log", str(p), None) for p in chunk if p.stem in unknown],
                                        self.data_dir, self.report)
        global _attempts_swept_at
        if _attempts_swept_at is None or time.monotonic() - _attempts_swept_at >= ATTEMPT_SWEEP_EVERY_S:
            # (a look at every attempt directory on disk: once a process and then daily, not every run)
            await self._sweep_attempt_directories(policy)
            _attempts_swept_at = time.monotonic()
        for source in await self.conn.fetch(query("retention_landing_work_directories")):
            await self._sweep_work_directory(source["name"], Path(source["work_directory"]), policy)

    async def _sweep_attempt_directories(self, policy) -> None:
        """The bookkeeping of attempts whose job rows retention deleted: hrwsi.delete_history_and_attempts
        returns the directories of failed attempts only, and a processed attempt's exit.json,
        started.json, supervisor.lock and manifest.json stayed on disk for ever, one directory and five
        inodes per task (found by exploratory testing). Its products (under output/) stay: the operators
        own them (README.md, Retention). Found on disk rather than per batch, so that what an earlier
        version left behind goes too (before migration 0071); only attempts older than the policy's shortest
        period are asked."""
        periods = [p for p in (policy["task_history"], policy["finished_tasks"]) if p is not None]
        if not periods:
            return
        installation = await self.conn.fetchval(query("retention_installation"))
        cutoff = time.time() - min(periods).total_seconds()
        found = await asyncio.to_thread(_old_attempt_directories, self.data_dir / "products" / installation, cutoff)
        for start in range(0, len(found), SWEEP_CHUNK):
            chunk = found[start:start + SWEEP_CHUNK]
            unknown = {(r["task_id"], r["attempt"]) for r in await self.conn.fetch(
                query("retention_unknown_attempts"), [task for task, _, _ in chunk], [n for _, n, _ in chunk])}
            gone = [path for task, n, path in chunk if (task, n) in unknown]
            if gone:
                await asyncio.to_thread(_remove_bookkeeping, gone, self.data_dir, self.report)

    async def _sweep_work_directory(self, source: str, work: Path, policy) -> None:
        partials = await asyncio.to_thread(_old_files, work, time.time() - PARTIAL_AGE_S, f"{_PARTIAL_PREFIX}*",
                                           False)
        items = [("work_file", str(p), str(work)) for p in partials]
        if policy["landing_files"] is not None:
            aside = work / PREVIOUSLY_RECEIVED_DIRECTORY
            cutoff = time.time() - policy["landing_files"].total_seconds()
            old = await asyncio.to_thread(_old_files, aside, cutoff, "*", False)
            for start in range(0, len(old), SWEEP_CHUNK):
                chunk = [str(p) for p in old[start:start + SWEEP_CHUNK]]
                unknown = {r["p"] for r in await self.conn.fetch(query("retention_unknown_landing_paths"), chunk,
                                                                 source)}
                items += [("work_file", p, str(work)) for p in chunk if p in unknown]
        await asyncio.to_thread(_remove_files, items, self.data_dir, self.report)


def _old_attempt_directories(root: Path, cutoff: float) -> list[tuple[int, int, Path]]:
    """(task id, attempt, directory) of the attempt directories under <data>/products/<installation>
    (<routine>/task-<id>/attempt-<n>, hrwsi.dispatch's layout, or attempt-<n>-c<8 hex>, that of an attempt run
    under its claim's own job ID: claims_own_spec) that hold more than their output and were last changed before
    `cutoff`."""
    found = []
    for attempt in root.glob("*/task-*/attempt-*"):
        try:
            named = ATTEMPT_DIRECTORY.fullmatch(attempt.name)
            if named is None:
                continue  # (not hrwsi's name: a directory moved aside, say)
            # (ASCII digits: int() read 'task-1_0' as task 10's directory; found by review)
            task_id, n = ascii_decimal(attempt.parent.name.removeprefix("task-")), int(named[1])
            if task_id is None:
                continue
            if attempt.is_symlink() or attempt.lstat().st_mtime >= cutoff:
                continue
            if any(entry.name != "output" for entry in os.scandir(attempt)):
                found.append((task_id, n, attempt))
        except (ValueError, OSError):
            continue  # (not hrwsi's name, or gone meanwhile)
    return found


def _remove_bookkeeping(attempts: list[Path], data_dir: Path, report: PruneReport) -> None:
    """Everything in these attempt directories but their output (the products), then the output, the
    attempt's and the task's directories if that left them empty."""
    for attempt in attempts:
        for entry in list(attempt.iterdir()) if attempt.is_dir() else []:
            if entry.name != "output":
                _remove(entry, data_dir, report)
        for directory in (attempt / "output", attempt, attempt.parent):
            with contextlib.suppress(OSError):  # (not empty: products, or another attempt of the task)
                if _inside(directory, data_dir):
                    directory.rmdir()


def _old_files(directory: Path, cutoff: float, pattern: str, recursive: bool = True) -> list[Path]:
    """Entries matching `pattern` last modified before `cutoff` (a time.time() value)."""
    if not directory.is_dir():
        return []
    found = []
    for path in (directory.rglob(pattern) if recursive else directory.glob(pattern)):
        try:
            if path.lstat().st_mtime < cutoff:
                found.append(path)
        except OSError:
            continue
    return found


async def prune(conn: asyncpg.Connection, data_dir: Path, stopping: asyncio.Event | None = None) -> PruneReport:
    """One run now, whatever the period (`hrwsi prune`); recorded as the last run."""
    policy = await conn.fetchrow(query("retention_policy"))
    report = await Pruner(conn, data_dir, stopping).run(policy["batch_size"])
    await conn.execute(query("retention_record_run"), json.dumps(report.as_json()))
    return report


async def preview(conn: asyncpg.Connection) -> dict[str, int]:
    """What a run would delete now, per rule (`hrwsi prune --dry-run`)."""
    row = await conn.fetchrow(query("retention_preview"))
    return dict(row)


async def run_if_due(pool: asyncpg.Pool, settings: Settings, stopping: asyncio.Event) -> PruneReport | None:
    """The orchestrator's side task: prune when the policy's period is over and no replica did. Every minute, whether
    or not a run is due, it folds the finished tasks' kept counts (migration 0105), which their readers (the
    dashboard, /metrics, `hrwsi status`) fold otherwise: with none of them running, the rows of +n and -n the task
    triggers add grew with every task that ended, and the first read after a quiet month summed them all."""
    async with pool.acquire() as conn:
        claimed = await conn.fetchrow(query("retention_claim_run"))
        if claimed is not None:
            report = await Pruner(conn, settings.data_dir, stopping).run(claimed["batch_size"])
            await conn.execute(query("retention_record_run"), json.dumps(report.as_json()))
        await conn.execute(query("retention_fold_task_counts"))  # (after the run: its deletes folded with the rest)
    if claimed is None:
        return None
    if report.rows.total() or report.files_removed:
        logger.info("retention: %s", report.summary())
    for error in report.file_errors[:5]:
        logger.warning("retention: could not remove %s", error)
    return report


def side_task(pool: asyncpg.Pool, settings: Settings, stopping: asyncio.Event) -> SideTask:
    return SideTask("retention", lambda: run_if_due(pool, settings, stopping), CHECK_INTERVAL_S, delay_first=True)
