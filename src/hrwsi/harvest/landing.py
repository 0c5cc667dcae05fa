"""Landing directories: files dropped in a directory become inputs (QCDP-style file ingestion).

One scan of a source (a hrwsi.harvest_source row of kind landing_directory):

0. confine it: its directories must lie inside the roots ops allow and apart from the other
   sources' (hrwsi.harvest.confinement); a refused source is the source's error, nothing is touched;
1. list the entries matching the source's glob pattern (files, and directories such as `.SAFE`),
   in a worker thread; an entry that cannot be taken (a link, a name that is not UTF-8, an
   unreadable file) is listed with its reason (hrwsi.harvest.landing_files);
2. track every version (path, size, mtime) in hrwsi.landing_file, state `seen`; a version is taken
   only once it has settled (unchanged for settle_s: its mtime is that old, or an earlier scan saw
   the same version that long ago), so a file still being written is left alone;
3. read tile, mission and sensing time from the Sentinel product name; a name that cannot be read,
   an entry listed with a reason, or a settled file or directory with no byte in it, is `failed`
   with the reason, and the file stays where it is (touch it to retry);
4. mark the file `ready` with the path it will have in the work directory, then unzip it (.zip,
   optional password from an environment variable, within the ops' size and ratio limits) or
   move it there;
5. register one hrwsi.input per matching active condition, in the same transaction that marks the
   file `prepared`, as the scan goes (every REGISTER_EVERY_FILES files or REGISTER_EVERY_S seconds).
   A path or a scene (in any form: `X.SAFE`, then `X.SAFE.zip`) already prepared from this source is
   `previously_received` before anything is moved or unzipped, and moved to
   work/previously_received/; a scene already registered from another source is
   `previously_received` once prepared; neither creates a second input.

One bad file never stops the others: whatever goes wrong with one file makes that file `failed`
with the reason. A scan stopped half-way (crash, restart, the source's timeout) resumes at the
next one: `ready` rows are finished from where they stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from hrwsi.harvest.confinement import LandingRoots, SourceDirectories, confine
from hrwsi.harvest.landing_files import (
    ListedEntry,
    PreparationFailed,
    StorageUnavailable,
    list_landing_directory,
    move_aside,
    planned_target,
    prepare_file,
)
from hrwsi.harvest.landing_source import LandingSource
from hrwsi.harvest.product_names import SceneName, UnreadableProductName, parse_product_name
from hrwsi.harvest.unzip import UnzipLimits, remove_path
from hrwsi.service_logging import task_fields
from hrwsi.settings import Settings
from hrwsi.sql_files import query
from hrwsi.terminal import one_line

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LandingPolicy:
    """What ops allow every landing scan: the roots its directories must lie in, the unzip limits."""
    roots: LandingRoots
    unzip: UnzipLimits

    @classmethod
    def from_settings(cls, settings: Settings) -> LandingPolicy:
        """Validated at start-up: raises ValueError naming the setting that is wrong."""
        configured = settings.landing_roots
        roots = LandingRoots.validated(configured or [settings.home / "harvest"], create=not configured)
        return cls(roots, UnzipLimits(settings.unzip_max_bytes, settings.unzip_max_ratio,
                                      settings.unzip_max_members))


async def confine_source(pool: asyncpg.Pool, source: LandingSource, roots: LandingRoots) -> LandingSource:
    """The source with its directories resolved, or SourceRefused (see hrwsi.harvest.confinement)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(query("landing_source_directories"))
    sources = [SourceDirectories(r["name"], r["directory"], r["work_directory"], r["created_at"]) for r in rows]
    this = next((s for s in sources if s.name == source.name),
                SourceDirectories(source.name, source.directory, source.work_directory, datetime.now(UTC)))
    this = dataclasses.replace(this, directory=source.directory, work_directory=source.work_directory)
    confined = await asyncio.to_thread(confine, this, source.pattern, roots, sources)
    return dataclasses.replace(source, directory=str(confined.directory), work_directory=str(confined.work_directory))


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------

@dataclass
class FileOutcome:
    path: str
    state: str               # prepared | previously_received | failed | waiting
    message: str
    prepared_path: str | None = None
    inputs: int = 0


@dataclass
class LandingScanReport:
    source: str
    seen: int = 0            # entries listed
    waiting: int = 0         # not settled yet
    prepared: int = 0
    inputs: int = 0
    previously_received: int = 0
    failed: int = 0
    storage_waits: int = 0   # left `ready`: the work directory's storage full or read-only, prepared at the next scan
    outcomes: list[FileOutcome] = field(default_factory=list)  # the first REPORT_OUTCOMES_KEPT files'

    @property
    def quiet(self) -> bool:
        """Nothing came of the scan: no file prepared, received again or failed (an idle directory, or
        files still settling). Its line is not worth the log: an idle source wrote one every 5 s, 720
        an hour, always the same (found by exploratory testing)."""
        return not (self.prepared or self.previously_received or self.failed or self.storage_waits)

    def add(self, outcome: FileOutcome) -> None:
        if len(self.outcomes) < REPORT_OUTCOMES_KEPT:  # (counted whatever their number, kept up to it)
            self.outcomes.append(outcome)
        if outcome.state == "prepared":
            self.prepared += 1
            self.inputs += outcome.inputs
        elif outcome.state == "previously_received":
            self.previously_received += 1
        elif outcome.state == "failed":
            self.failed += 1

    def outcome(self, name: str) -> FileOutcome:
        """The outcome of the file with this name (tests and the CLI)."""
        return next(o for o in reversed(self.outcomes) if Path(o.path).name == name)

    def summary(self) -> str:
        return (f"{self.seen} file(s) listed, {self.waiting} still settling, {self.prepared} prepared into "
                f"{self.inputs} input(s), {self.previously_received} received before, {self.failed} failed"
                + (f", {self.storage_waits} waiting for the work directory's storage" if self.storage_waits else ""))


# ---------------------------------------------------------------------------------------------
# The scan
# ---------------------------------------------------------------------------------------------

@dataclass
class _Pending:
    """A settled file on its way to the work directory."""
    id: int
    path: str
    first_seen_at: datetime
    scene: SceneName
    target: str
    listed: bool        # still in the landing directory (False: an interrupted scan moved it already)
    resume: bool        # an earlier scan began preparing it (`ready`): its leftovers are replaced
    row: asyncpg.Record


@dataclass
class _Sorted:
    """The tracked rows of one scan, by what happens to them next."""
    outcomes: dict[int, FileOutcome] = field(default_factory=dict)
    redeliveries: list[tuple[asyncpg.Record, str, str]] = field(default_factory=list)
    pending: list[_Pending] = field(default_factory=list)


def _settled(row: asyncpg.Record, now: datetime, settle_s: float) -> bool:
    # Unchanged for settle_s: its mtime is that old, or an earlier scan saw this very version
    # (same size and mtime) that long ago; the second covers clocks that disagree (NFS).
    unchanged_since = min(row["modified_at"], row["first_seen_at"])
    return (now - unchanged_since).total_seconds() >= settle_s


def _unexpected(path: str, error: Exception) -> str:
    logger.error("landing: %s: unexpected %s while preparing it", path, type(error).__name__, exc_info=error)
    return f"unexpected {type(error).__name__}: {error or 'no detail given'}"


async def scan_landing_directory(pool: asyncpg.Pool, source: LandingSource, policy: LandingPolicy, *,
                                 now: datetime | None = None,
                                 lease_held: Callable[[], bool] | None = None) -> LandingScanReport:
    """Scan one landing directory once; see the module docstring. Raises SourceRefused when ops do
    not allow its directories, FileNotFoundError when the directory does not exist (the caller
    records it as the source's error), LeaseLapsed when `lease_held` says the harvester no longer
    holds its lease (asked before each file is moved and before the inputs are registered)."""
    now = now or datetime.now(UTC)
    source = await confine_source(pool, source, policy.roots)
    stop = threading.Event()
    try:
        return await _scan(pool, source, policy, now, stop, lease_held or (lambda: True))
    finally:
        stop.set()  # cancelled (the source's timeout): an extraction still running in its thread stops too


async def _scan(pool: asyncpg.Pool, source: LandingSource, policy: LandingPolicy, now: datetime,
                stop: threading.Event, lease_held: Callable[[], bool]) -> LandingScanReport:
    report = LandingScanReport(source.name)
    listing = await asyncio.to_thread(list_landing_directory, source)
    report.seen = len(listing)
    refused = _refused_versions(source)
    listing, still_refused = _unchanged_refusals_left_out(listing, refused.versions)
    async with pool.acquire() as conn:
        rows = await conn.fetch(query("landing_track_listing"), source.name, [e.path for e in listing],
                                [e.size_bytes for e in listing], [e.modified_at for e in listing], now)
    problems = {e.path: e.problem for e in listing if e.problem}
    empty = {e.path for e in listing if e.empty}
    listed = {e.path: e for e in listing}
    del listing
    refused.versions = still_refused
    _remember_refused(refused, listed, [row for row in rows if row["state"] == "failed" and row["listed"]])
    said = _Said()
    # The tracked files go through the rest of the scan SCAN_BATCH at a time (in order of path), each batch
    # planned, prepared, registered and counted before the next: what a scan kept per file until its end (a plan,
    # an outcome, its report line) grew with the directory, 325 MB at 100,000 files (found by exploratory testing).
    for start in range(0, len(rows), SCAN_BATCH):
        batch = rows[start:start + SCAN_BATCH]
        await _scan_batch(pool, source, policy, now, stop, lease_held, batch, problems, empty, report, said)
        _remember_refused(refused, listed, [row for row in batch if row["listed"] and
                                            (o := said.outcomes_of_batch.get(row["id"])) is not None
                                            and o.state == "failed"])
        said.outcomes_of_batch = {}
    _say_storage_wait(source, report.storage_waits, said.storage_wait, report.prepared)
    _log_failed(source, said.failed_first, said.failed_more)
    _log_no_input(source, said.no_input)
    return report


# While files of a landing source wait for the work directory's storage (full, read-only), this often it is said again.
# Said at every scan (every HRWSI_LANDING_SCAN_S, 5 s), a disk full for an hour was 720 warnings (found by rehearsal).
STORAGE_WAIT_SAID_EVERY_S = 600.0


@dataclass
class _StorageWait:
    """The scans of one source in a row whose files waited for the storage: since when (monotonic), how many,
    when last said."""
    since: float
    said: float
    scans: int = 1


# Per source and landing directory, in this process (a source another harvester scans says it there).
_STORAGE_WAITS: dict[tuple[str, str], _StorageWait] = {}


def _say_storage_wait(source: LandingSource, waiting: int, first: tuple[str, str] | None, prepared: int) -> None:
    """Files left for the work directory's storage: said at the first scan that meets it, then every
    STORAGE_WAIT_SAID_EVERY_S while it lasts, and once at the first scan none waits for it."""
    key, now = (source.name, source.directory), time.monotonic()
    streak = _STORAGE_WAITS.get(key)
    fields = task_fields(source=source.name, failure=first[1] if first else None)
    if first is None:
        if streak is not None:
            del _STORAGE_WAITS[key]
            logger.info("landing %s: %s (after %d scan(s) whose files waited for it in %.0f s)", source.name,
                        "the work directory's storage takes files again" if prepared else
                        "no file waits for the work directory's storage any more", streak.scans, now - streak.since,
                        extra=fields)
        return
    path, why = first
    if streak is None:
        _STORAGE_WAITS[key] = _StorageWait(since=now, said=now)
        logger.warning("landing %s: %d file(s) wait for the work directory's storage, left in the landing directory "
                       "and prepared at the next scan (%s: %s); said again every %g s while it lasts, and when it "
                       "takes files again", source.name, waiting, path, why, STORAGE_WAIT_SAID_EVERY_S, extra=fields)
        return
    streak.scans += 1
    if now - streak.said >= STORAGE_WAIT_SAID_EVERY_S:
        streak.said = now
        logger.warning("landing %s: %d file(s) still wait for the work directory's storage (%d scans in %.0f s; %s: "
                       "%s)", source.name, waiting, streak.scans, now - streak.since, path, why, extra=fields)


# Tracked files taken through a scan at a time (see _scan).
SCAN_BATCH = 2_000
# A report keeps the outcome of so many files (tests and the CLI ask for one by name; the counts are of all).
REPORT_OUTCOMES_KEPT = 1_000


@dataclass
class _Said:
    """What a scan says in the log at its end, gathered batch by batch without keeping every file's outcome: the
    first failed files, the others' count by reason, and the files that made no input."""
    failed_first: list[FileOutcome] = field(default_factory=list)
    failed_more: dict[str, int] = field(default_factory=dict)
    no_input: list[FileOutcome] = field(default_factory=list)
    storage_wait: tuple[str, str] | None = None  # the first file left for the storage, and why
    outcomes_of_batch: dict[int, FileOutcome] = field(default_factory=dict)

    def add(self, outcome: FileOutcome) -> None:
        if outcome.state == "failed":
            if len(self.failed_first) < _FAILED_LINES:
                self.failed_first.append(outcome)
            else:
                reason = _reason(outcome.message, str(outcome.path))
                self.failed_more[reason] = self.failed_more.get(reason, 0) + 1
        elif outcome.state == "prepared" and not outcome.inputs:
            self.no_input.append(outcome)


async def _scan_batch(pool: asyncpg.Pool, source: LandingSource, policy: LandingPolicy, now: datetime,
                      stop: threading.Event, lease_held: Callable[[], bool], rows: list[asyncpg.Record],
                      problems: dict[str, str], empty: set[str], report: LandingScanReport, said: _Said) -> None:
    rows_by_next_step = await _sort_rows(rows, problems, empty, source, now, report)
    await _set_aside_scenes_received_before(pool, source, rows_by_next_step)
    outcomes = rows_by_next_step.outcomes
    pending = rows_by_next_step.pending
    if pending:
        _require_lease(lease_held, source)
        async with pool.acquire() as conn:
            await conn.execute(query("landing_mark_ready"), [p.id for p in pending], [p.target for p in pending],
                               [p.scene.scene_id for p in pending], now)
    storage_waits: list[tuple[str, str]] = []
    # Registered as the scan goes, a batch at a time: registered at its end, a burst's first inputs
    # waited for the last file to be moved (100,000 files: minutes, NRT inputs among them), and a scan
    # stopped by its timeout or a lapsed lease registered nothing of what it had moved.
    unrecorded, prepared, since = dict(outcomes), [], time.monotonic()
    for item in pending:
        _require_lease(lease_held, source)
        if await _prepare(item, source, policy, unrecorded, stop, storage_waits):
            prepared.append(item)
        if len(prepared) >= REGISTER_EVERY_FILES or (prepared and time.monotonic() - since >= REGISTER_EVERY_S):
            _require_lease(lease_held, source)
            await _register(pool, source, prepared, unrecorded, now)
            outcomes.update(unrecorded)
            unrecorded, prepared, since = {}, [], time.monotonic()
    report.storage_waits += len(storage_waits)
    said.storage_wait = said.storage_wait or (storage_waits[0] if storage_waits else None)
    _require_lease(lease_held, source)
    await _register(pool, source, prepared, unrecorded, now)
    outcomes.update(unrecorded)
    await _record_redeliveries(pool, source, rows_by_next_step.redeliveries, report, now)
    for outcome in outcomes.values():
        report.add(outcome)
        said.add(outcome)
    said.outcomes_of_batch = outcomes


@dataclass
class _Refused:
    """The versions of a source's files recorded `failed` (settled and refused), by path: (size, mtime, (device,
    inode, ctime))."""
    versions: dict[str, tuple[int, datetime, tuple[int, int, int]]] = field(default_factory=dict)
    since: float = field(default_factory=time.monotonic)


# What this process remembers it recorded `failed`, per source and landing directory. A failed file waits, where
# it is, until it changes (touched, replaced): the same version sent to the database again at every scan was
# only skipped there, and an idle directory of 30,000 failed files cost seconds per scan, every scan (found by
# exploratory testing). An unchanged refused version is left out of what a scan sends; what the process
# remembers is forgotten every REFUSED_RECHECK_S, so that the database is asked again: retention deletes a failed
# row (by its updated_at) while the file may still lie there, and a file remembered for good would then be in no
# row at all, missing from `hrwsi status` and the dashboard's failed landing files; the next scan after the hour
# records it failed again. At most REFUSED_KEPT versions are remembered per source and directory (the first
# ones; the others are sent at every scan as before): a directory of a million refused files must not hold
# the harvester's memory.
_REFUSED: dict[tuple[str, str], _Refused] = {}
REFUSED_RECHECK_S = 3600.0
REFUSED_KEPT = 100_000


def _refused_versions(source: LandingSource) -> _Refused:
    key = (source.name, source.directory)
    refused = _REFUSED.get(key)
    if refused is None or time.monotonic() - refused.since >= REFUSED_RECHECK_S:
        refused = _REFUSED[key] = _Refused()
    return refused


def _unchanged_refusals_left_out(listing: list[ListedEntry], versions: dict[str, tuple[int, datetime, tuple[int, int, int]]]
                                 ) -> tuple[list[ListedEntry], dict[str, tuple[int, datetime, tuple[int, int, int]]]]:
    """The entries to send to the database (all but the refused versions still as they were), and the refused
    versions still listed unchanged (a file removed or changed is forgotten)."""
    if not versions:
        return listing, {}
    fresh, still = [], {}
    for entry in listing:
        version = versions.get(entry.path)
        if version is not None and version == entry.version:
            still[entry.path] = version
        else:
            fresh.append(entry)
    return fresh, still


def _remember_refused(refused: _Refused, listed: dict[str, ListedEntry], rows: list[asyncpg.Record]) -> None:
    """Remember the versions these `failed` rows record, when the scan listed that very version."""
    for row in rows:
        entry = listed.get(row["path"])
        if entry is not None and (entry.size_bytes, entry.modified_at) == (row["size_bytes"], row["modified_at"]) \
                and (entry.path in refused.versions or len(refused.versions) < REFUSED_KEPT):
            refused.versions[entry.path] = entry.version


# A scan registers the files it prepared every so many files or seconds, whichever comes first.
REGISTER_EVERY_FILES = 500
REGISTER_EVERY_S = 5.0

_NO_INPUT_LINES = 5  # files named one by one; more are summarised in one line
_FAILED_LINES = 5    # failed files said one by one in a scan; the others in one line, counted by reason


def _log_failed(source: LandingSource, first: list[FileOutcome], more: dict[str, int]) -> None:
    """The scan's failed files: the first few one line each, the rest in one line counted by reason.
    A line each flooded the log: 20,000 unreadable files made 20,000 lines, 8.9 MB in 4 s (found by
    exploratory testing); each file's reason is in hrwsi.landing_file."""
    for outcome in first:
        logger.warning("landing %s: %s: %s; marked failed and left where it is (fix the cause and touch "
                       "the file to retry)", source.name, outcome.path, outcome.message,
                       extra=task_fields(source=source.name, path=str(outcome.path), failure=outcome.message))
    if not more:
        return
    counted = "; ".join(f"{count} {reason}" for reason, count in sorted(more.items(), key=lambda item: -item[1])[:10])
    others = f"; and {len(more) - 10} other reason(s)" if len(more) > 10 else ""
    logger.warning("landing %s: %d more file(s) failed in this scan (%s%s); marked failed and left where they are "
                   "(each with its reason in hrwsi.landing_file; fix the cause and touch a file to retry)",
                   source.name, sum(more.values()), counted, others,
                   extra=task_fields(source=source.name, failure=counted))


def _reason(message: str | None, path: str) -> str:
    """A failure's reason, alike for every file failed alike: without the file's path or name."""
    text = (message or "no reason given").replace(path, "<file>").replace(Path(path).name, "<file>")
    return text if len(text) <= 120 else text[:120] + "..."


class LeaseLapsed(RuntimeError):
    """The harvester running the scan no longer holds its lease (paused past it): another harvester
    may run the source now, and two scans moving the same files would fail each other's."""


def _require_lease(lease_held: Callable[[], bool], source: LandingSource) -> None:
    if not lease_held():
        raise LeaseLapsed(f"landing {source.name}: this harvester no longer holds its lease (paused or cut off for "
                          "longer than HRWSI_LEASE_TIMEOUT_S), so another may scan the directory now: this scan stops "
                          "before the next file; what it prepared is registered by the next scan")


def _log_no_input(source: LandingSource, outcomes: list[FileOutcome]) -> None:
    """Files moved into the work directory that made no input (no active condition takes their type,
    tile or time): said in the log, where nothing said why a dropped file was never processed."""
    if len(outcomes) <= _NO_INPUT_LINES:
        for outcome in outcomes:
            logger.info("landing %s: %s: prepared as %s, but %s", source.name, outcome.path, outcome.prepared_path,
                        outcome.message, extra=task_fields(source=source.name, path=str(outcome.path)))
        return
    tiles = sorted({tile for o in outcomes if (tile := _tile_of(o.path))})
    shown = ", ".join(Path(o.path).name for o in outcomes[:_NO_INPUT_LINES])
    logger.info("landing %s: %d files prepared into %s made no input: no active condition takes them (product "
                "type %s, tiles %s, or the conditions' windows); e.g. %s (each in hrwsi.landing_file)",
                source.name, len(outcomes), source.work_directory, source.product_type,
                ", ".join(tiles[:20]) + (" ..." if len(tiles) > 20 else "") if tiles else "-", shown,
                extra=task_fields(source=source.name))


def _tile_of(path: str) -> str | None:
    try:
        return parse_product_name(Path(path).name).tile
    except UnreadableProductName:
        return None


# A file (or directory) with no byte in it is not a product: it became an input (an empty `.SAFE`).
# Refused only once settled, so a transfer that is starting is not failed; one that writes later
# is a new version, taken then; a person touches it to retry.
EMPTY = "empty (a transfer that failed or has not started?)"


async def _sort_rows(rows: list[asyncpg.Record], problems: dict[str, str], empty: set[str], source: LandingSource,
                     now: datetime, report: LandingScanReport) -> _Sorted:
    result = _Sorted()
    to_plan: list[asyncpg.Record] = []
    for row in rows:
        state, path = row["state"], row["path"]
        if state in ("failed", "previously_received"):
            continue  # recorded before; a failed file waits until it changes (touch it to retry)
        if path in problems:
            if state != "prepared":  # a prepared version keeps its history
                result.outcomes[row["id"]] = FileOutcome(path, "failed", problems[path])
            continue
        if state == "prepared":
            # The very version prepared before is in the landing directory again.
            result.redeliveries.append((row, path, f"received again: identical to landing file {row['id']}, "
                                                   f"prepared as {row['prepared_path']}"))
        elif state == "seen" and not _settled(row, now, source.settle_s):
            report.waiting += 1
        elif state == "seen" and path in empty:
            result.outcomes[row["id"]] = FileOutcome(path, "failed", EMPTY)
        elif row["prepared_before_id"] is not None:
            result.redeliveries.append((row, path, f"received before: {Path(path).name} was prepared from this "
                                                   f"source (landing file {row['prepared_before_id']}); no new input"))
        else:
            to_plan.append(row)
    # Planned in a worker thread a batch at a time: a thread hand-off per file was a third of the time a burst
    # of 30,000 files waited before the first was moved (found by exploratory testing).
    for start in range(0, len(to_plan), PLAN_BATCH):
        planned = await asyncio.to_thread(_plan_batch, to_plan[start:start + PLAN_BATCH], source)
        for row, item, failure in planned:
            if item is not None:
                result.pending.append(item)
            else:
                result.outcomes[row["id"]] = FileOutcome(row["path"], "failed", failure)
    return result


# Settled files planned in one hand-off to a worker thread (a zip's plan reads its directory of members).
PLAN_BATCH = 500


async def _set_aside_scenes_received_before(pool: asyncpg.Pool, source: LandingSource, rows: _Sorted) -> None:
    """A scene already prepared from this source, in whatever form (`X.SAFE`, then `X.SAFE.zip`), is a
    re-delivery: received before, moved aside, nothing unzipped. Checked before preparing: the
    second form's product has the first one's path in the work directory, and the collision failed
    it ("already in the work directory ... not overwritten"), left in the landing directory for ever.
    Two forms of one scene in the same scan: the first is prepared, the others wait for the next
    scan, which finds the scene prepared (or, if the first failed, takes the next)."""
    fresh = [p for p in rows.pending if p.listed and not p.resume]
    if not fresh:
        return
    async with pool.acquire() as conn:
        before = {r["scene_id"]: r for r in await conn.fetch(query("landing_scenes_prepared_before"), source.name,
                                                             list({p.scene.scene_id for p in fresh}))}
    fresh_ids = {p.id for p in fresh}
    taken: set[str] = set()
    kept: list[_Pending] = []
    for item in rows.pending:
        scene = item.scene.scene_id
        if item.id in fresh_ids and (earlier := before.get(scene)) is not None:
            rows.redeliveries.append((item.row, item.path, f"received before: scene {scene} was prepared from this "
                                                           f"source as {earlier['prepared_path']} (landing file "
                                                           f"{earlier['id']}); no new input"))
        elif scene in taken and item.id in fresh_ids:
            continue  # another form of a scene this scan prepares: the next scan finds it received
        else:
            taken.add(scene)
            kept.append(item)
    rows.pending = kept


def _plan_batch(rows: list[asyncpg.Record], source: LandingSource) -> list[tuple[asyncpg.Record, _Pending | None, str]]:
    """_plan of each row, in a worker thread: (row, its plan or None, why not)."""
    return [(row, *_plan(row, source)) for row in rows]


def _plan(row: asyncpg.Record, source: LandingSource) -> tuple[_Pending | None, str]:
    """The scene and work-directory path of a settled file, or None and why it fails (blocking: a zip is read)."""
    path, resume = row["path"], row["state"] == "ready"
    try:
        scene = parse_product_name(Path(path).name)
        if scene.measured_at > row["first_seen_at"]:
            raise UnreadableProductName(
                f"{Path(path).name}: sensing time {scene.measured_at:%Y-%m-%dT%H:%M:%SZ} is after the file "
                f"arrived ({row['first_seen_at']:%Y-%m-%dT%H:%M:%SZ}): wrong name or wrong clock")
        target = row["prepared_path"] if resume and row["prepared_path"] else planned_target(path, source)
    except (UnreadableProductName, PreparationFailed) as error:
        return None, str(error)
    except Exception as error:  # noqa: BLE001 - one bad file must not stop the others
        return None, _unexpected(path, error)
    return _Pending(row["id"], path, row["first_seen_at"], scene, target, row["listed"], resume, row), ""


async def _prepare(item: _Pending, source: LandingSource, policy: LandingPolicy, outcomes: dict[int, FileOutcome],
                   stop: threading.Event, storage_waits: list[tuple[str, str]]) -> bool:
    """Move or unzip one file into the work directory; False (and its failure in outcomes) if not."""
    if not item.listed:
        if await asyncio.to_thread(os.path.lexists, item.path):
            # Still in the landing directory, as another version (touched, or delivered again, while it waited
            # for the storage): a move or an unzip removes the landing file last, so what is at the target is an
            # unfinished attempt's (a move between file systems stopped part-way by a full disk). It was taken
            # for the product: a truncated copy became the input, and the whole file was then set aside as
            # received before. The leftovers go; the file as it is now is prepared as a file of its own.
            await asyncio.to_thread(remove_path, Path(item.target), ignore_errors=True)
            outcomes[item.id] = FileOutcome(item.path, "failed", "changed in the landing directory before it could be "
                                                                 "prepared: the file as it is now is prepared instead")
            return False
        # An earlier scan stopped after moving it: finish if the product is in the work directory.
        if await asyncio.to_thread(os.path.exists, item.target):
            return True
        outcomes[item.id] = FileOutcome(item.path, "failed", f"left the landing directory while being prepared and "
                                                             f"is not in {source.work_directory}: nothing to register")
        return False
    try:
        await asyncio.to_thread(prepare_file, item.path, item.target, source, item.id, policy.unzip,
                                resume=item.resume, stopped=stop.is_set)
    except StorageUnavailable as error:
        # Left `ready`: the next scan prepares it again (resume), once the storage takes writes.
        storage_waits.append((item.path, str(error)))
        return False
    except PreparationFailed as error:
        outcomes[item.id] = FileOutcome(item.path, "failed", str(error))
        return False
    except Exception as error:  # noqa: BLE001 - one bad file must not stop the others
        outcomes[item.id] = FileOutcome(item.path, "failed", _unexpected(item.path, error))
        return False
    return True


# What the database says of an input it will not store (a check, a key, a value out of range): that
# file's failure, not the scan's.
_REFUSED_INPUT = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError)


async def _register(pool: asyncpg.Pool, source: LandingSource, prepared: list[_Pending],
                    outcomes: dict[int, FileOutcome], now: datetime) -> None:
    """Inputs for the prepared files and the files' outcomes, in one transaction. If the database
    refuses an input, each file is registered in a transaction of its own, and the one it refuses
    is failed with its message: the others' inputs are made (one refused row failed the whole
    statement, scan after scan, and no file of the directory became an input)."""
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                registered = await _register_inputs(conn, source, prepared, now)
                await _record_outcomes(conn, {**outcomes, **registered}, now)
            outcomes.update(registered)
            return
        except _REFUSED_INPUT as error:
            logger.warning("landing %s: the database refused an input of this scan (%s); registering its %d "
                           "file(s) one by one", source.name, error, len(prepared),
                           extra=task_fields(source=source.name))
        for item in prepared:  # each with its outcome, in a transaction of its own
            try:
                async with conn.transaction():
                    registered = await _register_inputs(conn, source, [item], now)
                    await _record_outcomes(conn, registered, now)
                outcomes.update(registered)
            except _REFUSED_INPUT as error:
                outcomes[item.id] = FileOutcome(item.path, "failed", f"prepared as {item.target}, but the database "
                                                f"refused its input: {one_line(error)}", item.target)
        recorded = {item.id for item in prepared if outcomes[item.id].state != "failed"}
        async with conn.transaction():
            await _record_outcomes(conn, {i: o for i, o in outcomes.items() if i not in recorded}, now)


async def _register_inputs(conn: asyncpg.Connection, source: LandingSource, prepared: list[_Pending],
                           now: datetime) -> dict[int, FileOutcome]:
    """The inputs of prepared files (one statement), and what became of each file."""
    if not prepared:
        return {}
    counts = await conn.fetch(
        query("harvest_register_inputs"), [p.target for p in prepared], [p.scene.tile for p in prepared],
        [p.scene.mission for p in prepared], [p.scene.measured_at for p in prepared],
        [p.first_seen_at for p in prepared], [p.scene.scene_id for p in prepared], source.product_type,
        now, source.name, False)  # (fresh files: the windows apply)
    outcomes = {}
    for item, count in zip(prepared, counts):
        if count["created"]:
            outcomes[item.id] = FileOutcome(item.path, "prepared", f"{count['created']} input(s) registered",
                                            item.target, count["created"])
        elif count["matching"]:
            outcomes[item.id] = FileOutcome(
                item.path, "previously_received",
                f"scene {item.scene.scene_id} is already registered for all {count['matching']} matching "
                "condition(s) (from this or another source): no new input", item.target)
        else:
            outcomes[item.id] = FileOutcome(
                item.path, "prepared", f"no active condition takes it (product type {source.product_type}, "
                f"tile {item.scene.tile or '-'}, windows): no input", item.target)
    return outcomes


async def _record_outcomes(conn: asyncpg.Connection, outcomes: dict[int, FileOutcome], now: datetime) -> None:
    if outcomes:
        ids = list(outcomes)
        await conn.execute(query("landing_record_outcomes"), ids, [outcomes[i].state for i in ids],
                           [outcomes[i].message for i in ids], [outcomes[i].prepared_path for i in ids],
                           [None] * len(ids), [outcomes[i].inputs for i in ids], now)


async def _record_redeliveries(pool: asyncpg.Pool, source: LandingSource,
                               redeliveries: list[tuple[asyncpg.Record, str, str]],
                               report: LandingScanReport, now: datetime) -> None:
    """Move re-delivered files aside and record them previously_received: a `seen` row becomes so; a
    copy identical to a prepared version gets a row of its own (the prepared one keeps its history)."""
    updated: dict[int, FileOutcome] = {}
    inserted: list[tuple[asyncpg.Record, FileOutcome]] = []
    for row, path, message in redeliveries:
        try:
            aside = await asyncio.to_thread(move_aside, path, source, row["id"])
        except (OSError, PreparationFailed) as error:
            # Left in place, it is seen again at the next scan and recorded again: say so once per scan.
            logger.warning("landing %s: %s was received before but cannot be moved aside (%s); it stays in the "
                           "landing directory and is skipped again at the next scan", source.name, path, error,
                           extra=task_fields(source=source.name, path=str(path)))
            continue
        outcome = FileOutcome(path, "previously_received", message, aside)
        report.add(outcome)
        logger.info("landing %s: %s: %s; moved to %s", source.name, path, message, aside,
                    extra=task_fields(source=source.name, path=str(path)))
        if row["state"] == "prepared":
            inserted.append((row, outcome))
        else:
            updated[row["id"]] = outcome
    if not updated and not inserted:
        return
    async with pool.acquire() as conn, conn.transaction():
        if updated:
            ids = list(updated)
            await conn.execute(query("landing_record_outcomes"), ids, [updated[i].state for i in ids],
                               [updated[i].message for i in ids], [updated[i].prepared_path for i in ids],
                               [None] * len(ids), [0] * len(ids), now)
        if inserted:
            await conn.execute(query("landing_record_redeliveries"), source.name,
                               [o.path for _, o in inserted], [r["size_bytes"] for r, _ in inserted],
                               [r["modified_at"] for r, _ in inserted], [o.message for _, o in inserted], now,
                               [o.prepared_path for _, o in inserted])

