"""Following Nomad jobs to their end: one event stream (or one blocking query) for all of them.

ONE event stream per backend (`/v1/event/stream`, topics Job, Allocation and Evaluation, filtered
to the followed jobs) is dispatched to per-job followers; on every (re)connect each followed job
is reconciled with list calls, because Nomad keeps only the last events. When the stream is
unavailable (4xx, or disabled with HRWSI_NOMAD_EVENT_STREAM=false) one blocking query on
`/v1/jobs?prefix=` wakes the backend when a job or its summary changes, and
`/v1/job/:id/allocations` is read for those jobs: one long-held connection instead of one per job
(Nomad allows 100 per client).

- No allocation and a blocked evaluation: progress "queued" with Nomad's reason, never a failure.
  Not placed within HRWSI_NOMAD_UNPLACED_LIMIT_S of the first such evaluation, the job is purged and
  the attempt lost (not_placed: not charged), so that the task is planned again rather than wait for
  ever behind a node Nomad will not give it (another team's job on its CPU, say); its next attempt
  goes to another worker of a flavour it fits, where one is active (processing_task.avoid_worker).
- An allocation whose node went away ("unknown": Disconnect.Replace false; or "lost") may still
  run there: a node cut off from the servers keeps its allocations running. It is reported
  running, with the reason, until its client must have stopped it: the job's
  disconnect.stop_on_client_after plus its kill timeout after the node was seen away, the wait
  Nomad's own scheduler keeps before replacing a lost allocation (nomad/structs/alloc.go
  WaitClientStop; the client's side: client/heartbeatstop.go). Then it is lost, the job stopped
  (a lost one at once and again then: Nomad replaces a lost allocation whatever Disconnect.Replace
  says, scheduler/reconciler/filters.go), and the launcher retries it as a new attempt. A node back
  before that reports the allocation's real end.
- A job Nomad no longer knows: if this backend saw its end, that outcome (it was collected);
  otherwise lost.
- A task whose client restarted and could not reattach to it (Failed Restoring Task) runs again
  in the same allocation (client/allocrunner/taskrunner/task_runner.go, Restore): nothing hrwsi
  can stop in time. It is logged as a warning and reported running with the reason; the outcome
  is the last run's and says how many runs there were.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hrwsi.backends.base import JobOutcome, JobSpec, ProgressCallback
from hrwsi.backends.nomad.background import BackgroundTasks
from hrwsi.backends.nomad.client import REGISTRATION_DISABLED, NomadClient, NomadError, error_text, quote_id
from hrwsi.backends.nomad.config import public_address
from hrwsi.backends.nomad.event_stream import EventStream, StreamEnded, StreamRefused, StreamUnavailable
from hrwsi.backends.nomad.job_spec import CLAIM_META, GROUP_NAME, scale_body
from hrwsi.backends.nomad.outcomes import (
    allocation_outcome,
    describe_placement_failure,
    rerun_note,
    restore_failures,
    task_times,
    waiting_reason,
    where,
)
from hrwsi.backends.nomad.task_logs import TaskLogs

logger = logging.getLogger(__name__)

# structs.JitterFraction (nomad/structs/structs.go): a blocking query waits up to wait / 16 more than asked
QUERY_JITTER_FRACTION = 16

LIVE = ("pending", "running")
# Since Nomad 1.11.2 an event stream that fails after the subscription (ACL, disabled broker) is a 200
# that ends without a line (before: an error status); after this many such subscriptions in a row,
# follow jobs with blocking queries, and try the stream again STREAM_RETRY_S later.
FAILED_STREAMS_BEFORE_FALLBACK = 3
# Frames remembered (index -> what they carried) to tell a server whose event buffer lags from another state
RECENT_FRAMES = 512
STREAM_RETRY_S = 600.0


def _now() -> datetime:
    return datetime.now(UTC)


_NAME_INDEX = re.compile(r"\[([0-9]{1,9})\]$")  # (ASCII: \d is any script's digit, which int() reads)


def name_index(alloc: dict) -> int:
    """The allocation's index in its group, from its Name "<job>.<group>[<index>]" (nomad/structs/funcs.go AllocName);
    a replacement keeps its predecessor's (scheduler/reconciler/allocs.go AllocNameIndex)."""
    match = _NAME_INDEX.search(alloc.get("Name") or "")
    return int(match.group(1)) if match else 0


@dataclass
class Follower:
    """What is known of one followed job."""

    spec: JobSpec
    job_id: str
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    allocs: dict[str, dict] = field(default_factory=dict)
    last_progress: tuple[str, str] | None = None
    last_reason: str = ""
    last_listing: tuple | None = None
    done: bool = False
    timed_out: bool = False
    timeout_handle: asyncio.TimerHandle | None = None
    away_handle: asyncio.TimerHandle | None = None  # while an allocation's node is disconnected
    unplaced_handle: asyncio.TimerHandle | None = None  # while Nomad cannot place it (a blocked evaluation)
    away_until: datetime | None = None
    refreshing: bool = False
    refresh_again: bool = False
    final_alloc: dict | None = None
    restore_failures: int = 0  # Failed Restoring Task events seen: each time the routine ran again
    stopped_in_nomad: bool = False  # the job's Stop flag seen set (a Job event, the job list): `nomad job stop`
    purged_in_nomad: bool = False  # purged, not by hrwsi (`nomad job stop -purge`): a deleted job's event, a 404
    purged_by_hrwsi: bool = False  # hrwsi purged it while it was followed (not placed in time)
    state_went_back: bool = False  # Nomad's index went backwards while it was followed (a reset, a restore)
    seen_index: int = 0  # the highest ModifyIndex of its allocations seen (never lowered: _refresh_once)
    # An admin raised the group's Count (`nomad job scale`, a re-registration): the job versions with a
    # Count above 1 (seen in a Job event or on an extra allocation) already scaled back.
    scaled_versions: set[int] = field(default_factory=set)
    scaled_note: str = ""  # said in the outcome's message

    def cancel_timers(self) -> None:
        for handle in (self.timeout_handle, self.away_handle, self.unplaced_handle):
            if handle is not None:
                handle.cancel()

    def has_live_alloc(self) -> bool:
        return any(a.get("ClientStatus") in LIVE for a in self.allocs.values())


# Nomad refused to show a followed job (HTTP 401/403: a token without read-job, nomad/job_endpoint.go
# Allocations and GetJob): it is read again this much later, and the refusal said once for all followed jobs,
# again at most every REFUSED_READ_SAID_EVERY_S while it lasts. Each followed job asked every 2 s, each time
# with a warning of its own (50 jobs: 25 calls and 25 lines a second), while Nomad's answer could not change.
REFUSED_READ_RETRY_S = 30.0
REFUSED_READ_SAID_EVERY_S = 300.0


class JobFollowing:
    """The followers of one backend, and the one watcher (event stream or blocking query) that feeds them."""

    def __init__(self, client: NomadClient, background: BackgroundTasks, *, finished_memory: int = 10_000):
        self.client = client
        self.config = client.config
        self.background = background
        self.followers: dict[str, Follower] = {}
        self._finished: OrderedDict[str, JobOutcome] = OrderedDict()
        self._finished_memory = finished_memory
        self._cancelled: set[str] = set()
        # Jobs whose end this backend saw: {job ID: (the allocations it knew then, its attempt's claim token)}.
        # A live allocation of one that is not among them is the attempt run again behind hrwsi's back
        # (_started_again), if the job still carries that token.
        self._ended: OrderedDict[str, tuple[frozenset[str], str | None]] = OrderedDict()
        self._stopping_again: set[str] = set()
        self._watch_task: asyncio.Task | None = None
        self._events = EventStream(client.config)
        self.task_logs = TaskLogs(client)
        self._stream_index = 0
        # The lowest index of jobs Nomad can answer while its state lasts: the highest its job list answered (the
        # probe, the poll) or a Job event carried. Not the stream's index: the job list's, max(jobs, job_summary)
        # (nomad/job_endpoint.go List), trails the index of evaluations and of allocation writes that change no
        # summary (nomad/state/state_store.go nestedUpsertEval, updateSummaryWithAlloc), so a reconnection after
        # them read as Nomad's state going back (every followed job read again, a purged one said lost with it).
        self._jobs_floor = 0
        self._last_frame_index = 0  # the highest index of a frame the stream sent (never the probe's)
        self._recent_frames: OrderedDict[int, tuple] = OrderedDict()  # the last RECENT_FRAMES frames' events
        self._failed_streams = 0  # subscriptions in a row that failed in Nomad or ended without a line
        self._fallback_at: float | None = None  # loop time the stream was given up for blocking queries
        self._poll_index = 0
        # Set when a registration shows Nomad's state went back below the poll's index (registered_at)
        self._poll_went_back = asyncio.Event()
        self.refused_read_retry_s = REFUSED_READ_RETRY_S
        self._read_refused_said: float | None = None  # (loop time) the refusal to show jobs last said; None: served
        self._list_refused_said: float | None = None  # (loop time) the refusal to list them last said; None: listed

    # -- what the backend asks -------------------------------------------------------------------
    @property
    def poll_index(self) -> int:
        """The index of jobs the job list's poll waits to pass (0: it is not polled, or asks from the start)."""
        return self._poll_index

    def registered_at(self, index: int, poll_index_before: int) -> None:
        """A registration sent while the poll's index was `poll_index_before` was answered JobModifyIndex `index`: a
        write after every one that poll had seen (nomad/state/state_store.go upsertJobImpl writes the job and its
        summary at a new index). Below it, Nomad's state went back (rebuilt, restored), and while the poll still
        waits with that index Nomad holds it for its whole wait (nomad/rpc.go blockingRPC: until the index passes the
        one asked): it starts over now. It waited, and a job registered meanwhile was followed up to
        a blocking query's wait (NomadConfig.blocking_wait_s, 30 s) late."""
        if index and self.stream_unavailable and index < poll_index_before <= self._poll_index:
            self._poll_went_back.set()

    async def follow(self, spec: JobSpec, job_id: str, on_progress: ProgressCallback) -> JobOutcome:
        if job_id in self.followers:
            raise RuntimeError(f"job {job_id} is already being followed")
        follower = Follower(spec, job_id)
        self.followers[job_id] = follower
        self._ensure_watcher()
        self._schedule_refresh(follower)
        try:
            while True:
                item = await follower.queue.get()
                if isinstance(item, JobOutcome):
                    if follower.final_alloc is not None:
                        await self.task_logs.save(follower.spec, follower.final_alloc)
                    return item
                if isinstance(item, BaseException):
                    raise item
                state, reason = item
                try:
                    await on_progress(state, reason)
                except Exception:
                    logger.exception("job %s: recording progress %s failed", job_id, state)
        finally:
            follower.done = True
            follower.cancel_timers()
            if self.followers.get(job_id) is follower:
                del self.followers[job_id]

    def note_cancelled(self, job_id: str) -> None:
        """The launcher is stopping this job: its end is 'cancelled', not lost."""
        self._cancelled.add(job_id)

    def refresh(self, job_id: str) -> None:
        """Read the job's state now (e.g. after stopping it) instead of waiting for an event."""
        follower = self.followers.get(job_id)
        if follower is not None:
            self._schedule_refresh(follower)

    def forget(self, job_id: str) -> None:
        self._finished.pop(job_id, None)
        self._cancelled.discard(job_id)

    async def close(self) -> None:
        self._events.interrupt()
        await self.background.cancel_all(self._watch_task)
        for follower in list(self.followers.values()):
            if not follower.done:
                follower.queue.put_nowait(RuntimeError("the Nomad backend was closed"))

    # -- state assessment ---------------------------------------------------------------------------
    def _progress(self, follower: Follower, state: str, reason: str) -> None:
        if follower.done or follower.last_progress == (state, reason):
            return
        follower.last_progress = (state, reason)
        follower.queue.put_nowait((state, reason))

    def _resolve(self, follower: Follower, outcome: JobOutcome) -> None:
        if follower.done:
            return
        if follower.scaled_note:  # (the attempt's history says an admin's scale ran it twice for a while)
            outcome = dataclasses.replace(outcome, message=f"{outcome.message}; {follower.scaled_note}")
        follower.done = True
        follower.cancel_timers()
        self._finished[follower.job_id] = outcome
        while len(self._finished) > self._finished_memory:
            self._finished.popitem(last=False)
        self._ended[follower.job_id] = (frozenset(follower.allocs), follower.spec.claim)
        while len(self._ended) > self._finished_memory:
            self._ended.popitem(last=False)
        if outcome.state == "lost" and follower.stopped_in_nomad and follower.job_id not in self._cancelled:
            # Stopped by an admin: purged at once, so that the UI's Start (or `nomad job run` of its spec)
            # has nothing to run the attempt again with beside its retry (found by exploratory testing).
            self.background.spawn(self._purge_quietly(follower.job_id), f"purge-stopped-{follower.job_id}")
        follower.queue.put_nowait(outcome)
        logger.debug("Nomad job %s ended: %s (%s)", follower.job_id, outcome.state, outcome.message)

    @staticmethod
    def _merge_alloc(follower: Follower, alloc: dict) -> None:
        known = follower.allocs.get(alloc["ID"])
        index = int(alloc.get("ModifyIndex") or 0)
        follower.seen_index = max(follower.seen_index, index)
        if known is None or index >= int(known.get("ModifyIndex") or 0):
            follower.allocs[alloc["ID"]] = alloc

    def _assess(self, follower: Follower) -> None:
        if follower.done:
            return
        allocs = sorted(follower.allocs.values(), key=lambda a: int(a.get("CreateIndex") or 0))
        # The attempt is the group's allocation of name index 0 (and its replacements, which keep the
        # name): one of a higher index is an admin's raised Count, never the attempt's outcome.
        extra = [a for a in allocs if name_index(a) > 0]
        if extra:
            self._extra_allocations(follower, extra)
            allocs = [a for a in allocs if name_index(a) == 0]
        # Its node went away: unknown (Disconnect.Replace false, build_job: left in place, not replaced,
        # until the node is back) or lost (one not yet running; or a group Nomad replaces). Either may
        # still run there until its client stops it (scheduler/reconciler/filters.go).
        away = next((a for a in allocs if a.get("ClientStatus") in ("lost", "unknown")), None)
        if away is not None:
            self._node_away(follower, away)
            return
        if follower.away_handle is not None:  # its node is back: its allocation says how it went
            follower.away_handle.cancel()
            follower.away_handle = None
        if not allocs:
            return
        if follower.unplaced_handle is not None:  # Nomad placed it
            follower.unplaced_handle.cancel()
            follower.unplaced_handle = None
        current = allocs[-1]
        status = current.get("ClientStatus")
        failures = restore_failures(current, follower.spec.routine) if status in LIVE else 0
        rerun = rerun_note(current, follower.spec.routine) if failures else ""
        if failures > follower.restore_failures:
            follower.restore_failures = failures
            logger.warning("Nomad job %s (task %d, attempt %d): %s", follower.job_id, follower.spec.task_id,
                           follower.spec.attempt, rerun)
        if status in ("complete", "failed"):
            follower.final_alloc = current
            self._resolve(follower, allocation_outcome(current, follower.spec,
                                                       cancelled=follower.job_id in self._cancelled,
                                                       timed_out=follower.timed_out,
                                                       job_stopped=follower.stopped_in_nomad,
                                                       job_purged=follower.purged_in_nomad))
        elif status == "running" or rerun:  # (pending again until a client that lost it runs it again)
            self._progress(follower, "running", rerun or where(current))
            self._start_timeout(follower)
        elif status == "pending" and (reason := waiting_reason(current, follower.spec.routine)):
            self._progress(follower, "queued", f"Nomad placed it ({where(current)}) but {reason}")

    def _extra_allocations(self, follower: Follower, extra: list[dict]) -> None:
        """Allocations beyond the attempt's own: an admin raised the group's Count. Each live one runs the
        same attempt into the same output directory: the job is scaled back to 1, once per job version."""
        new = [a for a in extra if a.get("ClientStatus") in LIVE and a.get("DesiredStatus") == "run"
               and int(a.get("JobVersion") or 0) not in follower.scaled_versions]
        if not new:
            return
        follower.scaled_versions.update(int(a.get("JobVersion") or 0) for a in new)
        self._scale_back(follower, f"a second allocation of its group ({where(new[0])})")

    def _scaled_by_admin(self, follower: Follower, job: dict) -> None:
        """A Job event or read whose group Count is above 1: scaled back before a second allocation runs
        (or while it waits for room). Said once per job version."""
        group = next((g for g in job.get("TaskGroups") or [] if g.get("Name") == GROUP_NAME), None)
        count = int((group or {}).get("Count") or 0)
        version = int(job.get("Version") or 0)
        if count <= 1 or job.get("Stop") or version in follower.scaled_versions:
            return
        follower.scaled_versions.add(version)
        self._scale_back(follower, f"its group's count set to {count} (job version {version})")

    def _scale_back(self, follower: Follower, what: str) -> None:
        spec = follower.spec
        note = (f"an admin raised the Nomad job's count (`nomad job scale` or a re-registration): {what} would run "
                f"attempt {spec.attempt} a second time into the same output directory; hrwsi scaled the job back to "
                "1, and Nomad stops the allocation of the highest index, never the attempt's own")
        follower.scaled_note = note
        logger.warning("task %d: Nomad job %s: %s", spec.task_id, follower.job_id, note)
        self.background.spawn(self._scale_to_one(follower), f"scale-back-{follower.job_id}")
        current = follower.last_progress
        if current is not None:  # (said with the progress, so that `hrwsi status` and the history show it)
            self._progress(follower, current[0], f"{current[1]}; {note}")

    async def _scale_to_one(self, follower: Follower) -> None:
        """POST /v1/job/:id/scale with Count 1: Nomad's reconciler stops the allocations of the highest
        name indexes (scheduler/reconciler/reconcile_cluster.go computeStop), so the attempt's own,
        index 0, runs on. Stopping the extra allocation instead would have Nomad replace it (Count 2)."""
        body = scale_body(follower.job_id, 1, f"hrwsi: attempt {follower.spec.attempt} of task "
                                               f"{follower.spec.task_id} runs once")
        try:
            response = await self.client.call(f"scale Nomad job {follower.job_id} back to 1", "job",
                                              quote_id(follower.job_id), "scale", method="post", body=body)
        except NomadError as error:
            logger.warning("could not scale Nomad job %s back to 1: %s; stop the extra allocation by hand "
                           "(nomad job scale %s %s 1)", follower.job_id, error, follower.job_id, GROUP_NAME)
            return
        if response.status != 200:
            # (while an admin's RejectJobRegistration holds, Job.Scale refuses every token but a management one)
            needs = ("its scheduler configuration rejects scaling (RejectJobRegistration): a management token may"
                     if error_text(response.text) == REGISTRATION_DISABLED
                     else "the launcher's token needs scale-job or submit-job;")
            logger.warning("Nomad refused to scale job %s back to 1 (HTTP %d: %s): %s scale it by hand (nomad job "
                           "scale %s %s 1)", follower.job_id, response.status, response.text.strip()[:200], needs,
                           follower.job_id, GROUP_NAME)

    def _node_away(self, follower: Follower, alloc: dict) -> None:
        """Its node went away: the attempt may run on there until its client stops it."""
        wait_s = self.config.stop_after_disconnect_s + self.config.kill_timeout_s
        first_seen = follower.away_handle is None
        if first_seen:
            follower.away_handle = asyncio.get_running_loop().call_later(
                wait_s, self._away_too_long, follower, alloc["ID"], wait_s)
            follower.away_until = _now() + timedelta(seconds=wait_s)
            if alloc.get("ClientStatus") == "lost":
                # Stopped at once so that no replacement runs it (a job registered without
                # Disconnect.Replace false); the lost node's client still has to stop it.
                self.background.spawn(self._stop_quietly(follower.job_id), f"stop-lost-{follower.job_id}")
        reason = (f"{where(alloc)}: its node is disconnected ({alloc.get('ClientStatus')}); if it is not back by "
                  f"{follower.away_until:%H:%M:%S} UTC its client has stopped the attempt "
                  f"(disconnect.stop_on_client_after {self.config.stop_after_disconnect_s:g} s, kill timeout "
                  f"{self.config.kill_timeout_s:g} s) and it is retried then")
        if first_seen:
            logger.warning("Nomad job %s: %s", follower.job_id, reason)
        self._progress(follower, "running", reason)

    def _away_too_long(self, follower: Follower, alloc_id: str, wait_s: float) -> None:
        follower.away_handle = None
        alloc = follower.allocs.get(alloc_id)
        if follower.done or alloc is None or alloc.get("ClientStatus") not in ("lost", "unknown"):
            return
        self._lost(follower, {**alloc, "ClientDescription": (
            f"its node was away for {wait_s:g} s, long enough for its client to have stopped the "
            "attempt (disconnect.stop_on_client_after and kill timeout)")})

    def _lost(self, follower: Follower, lost: dict) -> None:
        if follower.job_id in self._cancelled:
            self._resolve(follower, JobOutcome("cancelled", None, "cancelled; its allocation was lost", None, _now()))
            return
        # Stop the job: the node, if it comes back, stops the attempt; nothing replaces it. A lost one's job was
        # stopped when it was first seen, stopped again here: that stop may have failed (Nomad out of reach), and
        # Nomad replaces a lost allocation whatever Disconnect.Replace says once its client must have stopped it
        # (scheduler/reconciler/filters.go delayByStopAfter), about now: the replacement would run the attempt
        # beside its retry. (Stopping a stopped job again only writes it again.)
        self.background.spawn(self._stop_quietly(follower.job_id), f"stop-lost-{follower.job_id}")
        started, _ = task_times(lost, follower.spec.routine)
        self._resolve(follower, JobOutcome(
            "lost", None, f"{where(lost)} {lost.get('ClientStatus')}: "
                          f"{lost.get('ClientDescription') or 'its node went down'}", started, _now()))

    def _start_timeout(self, follower: Follower) -> None:
        timeout = follower.spec.timeout_s
        if not timeout or follower.timeout_handle is not None:
            return
        loop = asyncio.get_running_loop()
        follower.timeout_handle = loop.call_later(
            timeout, lambda: self.background.spawn(self._time_out(follower), f"timeout-{follower.job_id}"))

    async def _time_out(self, follower: Follower) -> None:
        if follower.done:
            return
        follower.timed_out = True
        logger.warning("Nomad job %s ran longer than its %.0f s timeout: stopping it", follower.job_id,
                       follower.spec.timeout_s)
        await self._stop_quietly(follower.job_id)
        self._resolve(follower, JobOutcome("internal_error", None,
                                           f"timed out after {follower.spec.timeout_s:.0f} s; the Nomad job was "
                                           "stopped", None, _now()))

    async def _stop_quietly(self, job_id: str) -> None:
        try:
            response = await self.client.call(f"stop Nomad job {job_id}", "job", quote_id(job_id), method="delete")
        except NomadError as error:
            logger.warning("could not stop Nomad job %s: %s", job_id, error)
            return
        if response.status != 200:  # (a refusal, or an error still answered when the retries ran out)
            logger.warning("could not stop Nomad job %s: HTTP %d %s", job_id, response.status, response.text.strip()[:200])

    # -- reconciliation with list calls ----------------------------------------------------------------
    def _schedule_refresh(self, follower: Follower) -> None:
        if follower.done:
            return
        if follower.refreshing:
            follower.refresh_again = True
            return
        follower.refreshing = True
        self.background.spawn(self._refresh(follower), f"refresh-{follower.job_id}")

    async def _refresh(self, follower: Follower) -> None:
        try:
            while not follower.done:
                follower.refresh_again = False
                try:
                    await self._refresh_once(follower)
                    self._read_served()
                except NomadError as error:
                    if error.status in (401, 403):
                        self._read_refused(error)
                        await asyncio.sleep(self.refused_read_retry_s)
                    else:
                        logger.warning("could not read Nomad job %s: %s", follower.job_id, error)
                        await asyncio.sleep(2.0)
                    follower.refresh_again = True
                if not follower.refresh_again:
                    break
        finally:
            follower.refreshing = False

    async def _refresh_once(self, follower: Follower) -> None:
        job_id = follower.job_id
        known_before, seen_before = set(follower.allocs), follower.seen_index
        response = await self.client.call(f"read allocations of {job_id}", "job", quote_id(job_id), "allocations")
        if response.status != 200:
            raise NomadError(response.status, f"allocations of {job_id}: HTTP {response.status} {response.text}")
        # The index of allocations (nomad/job_endpoint.go Allocations: the allocs table's, whatever the job) is at
        # least every allocation's ModifyIndex while Nomad's state lasts: below one seen, that state is gone.
        allocs_went_back = bool(response.index) and response.index < seen_before
        listed = response.json() or []
        # An allocation known before this listing was read but missing from it is gone with Nomad's state
        # (a live allocation is never garbage-collected; events follow the commit, so it existed): forget
        # it. One learnt from an event while the listing was on its way is kept.
        for alloc_id in known_before - {alloc["ID"] for alloc in listed}:
            follower.allocs.pop(alloc_id, None)
        for alloc in listed:
            self._merge_alloc(follower, alloc)
        if self._stop_flag_unknown(follower):
            await self._read_stop_flag(follower)
        if follower.allocs:
            self._assess(follower)
            if follower.done or follower.has_live_alloc():
                return
        response = await self.client.call(f"read Nomad job {job_id}", "job", quote_id(job_id))
        if response.status == 404:
            went_back = follower.state_went_back or allocs_went_back or await self._index_is_behind()
            self._resolve(follower, self._unknown_job_outcome(job_id, went_back))
            return
        if response.status != 200:
            raise NomadError(response.status, f"job {job_id}: HTTP {response.status} {response.text}")
        job = response.json() or {}
        if follower.allocs:
            return
        if job.get("Status") == "dead":
            self._resolve(follower, self._dead_without_allocation(job_id))
            return
        response = await self.client.call(f"read evaluations of {job_id}", "job", quote_id(job_id), "evaluations")
        if response.status == 200:
            for evaluation in sorted(response.json() or [], key=lambda e: int(e.get("CreateIndex") or 0)):
                self._on_evaluation(follower, evaluation)

    def _read_refused(self, error: NomadError) -> None:
        """Nomad refuses the token the reads of a followed job: said once for them all (and `problem()` says it)."""
        now = asyncio.get_running_loop().time()
        if self._read_refused_said is not None and now - self._read_refused_said < REFUSED_READ_SAID_EVERY_S:
            return
        self._read_refused_said = now
        unfollowed = sum(1 for f in self.followers.values() if not f.done)
        logger.warning("Nomad refuses to show the launcher's jobs (%s): its token needs read-job in namespace %s; "
                       "%d submitted attempt(s) keep their state, unfollowed, and are read again every %g s",
                       error, self.config.namespace or "default", unfollowed, self.refused_read_retry_s)

    async def _read_each_job(self, error: NomadError) -> None:
        """The job list refused (a token without list-jobs, nomad/job_endpoint.go List) while jobs are followed
        without the event stream: each followed job is read on its own (read-job) every refused_read_retry_s.
        Nothing read them otherwise: an attempt that ended in Nomad showed running until its timeout stopped it,
        recorded an internal error (found by reading Nomad's ACL checks)."""
        now = asyncio.get_running_loop().time()
        if self._list_refused_said is None or now - self._list_refused_said >= REFUSED_READ_SAID_EVERY_S:
            self._list_refused_said = now
            logger.warning("Nomad refuses to list the launcher's jobs (%s): its token needs list-jobs in namespace "
                           "%s; without the event stream each followed job is read on its own every %g s", error,
                           self.config.namespace or "default", self.refused_read_retry_s)
        for follower in list(self.followers.values()):
            self._schedule_refresh(follower)
        await asyncio.sleep(self.refused_read_retry_s)

    def _read_served(self) -> None:
        if self._read_refused_said is not None:
            self._read_refused_said = None
            logger.info("Nomad shows the launcher's jobs again: the attempts submitted meanwhile are followed")

    def _unknown_job_outcome(self, job_id: str, state_went_back: bool = False) -> JobOutcome:
        remembered = self._finished.get(job_id)
        if remembered is not None:
            return remembered  # it ended and was then collected: not lost
        if job_id in self._cancelled:
            return JobOutcome("cancelled", None, "cancelled; the Nomad job is gone", None, _now())
        if state_went_back:  # (said as garbage collection, it sent the reader after the GC settings)
            return JobOutcome("lost", None, f"Nomad does not know job {job_id}: Nomad's state went back while it was "
                                            "followed (its index went backwards: the cluster was reset, rebuilt or "
                                            "restored from an older snapshot), and the job was lost with it", None,
                              _now())
        return JobOutcome("lost", None, f"Nomad does not know job {job_id} and it was never seen ending (purged or "
                                        "garbage-collected before its outcome was recorded)", None, _now())

    def _dead_without_allocation(self, job_id: str) -> JobOutcome:
        if job_id in self._cancelled:
            return JobOutcome("cancelled", None, "cancelled before Nomad placed it", None, _now())
        return JobOutcome("lost", None, f"Nomad job {job_id} is dead without any allocation (stopped in Nomad "
                                        "before it was placed)", None, _now())

    def _on_evaluation(self, follower: Follower, evaluation: dict) -> None:
        if follower.done or any(a.get("ClientStatus") in ("pending", "running", "complete", "failed")
                                for a in follower.allocs.values()):
            return
        reason = describe_placement_failure(evaluation.get("FailedTGAllocs"))
        if reason:
            follower.last_reason = reason
        elif not (evaluation.get("Status") == "blocked" and follower.last_reason):
            return
        self._progress(follower, "queued", f"Nomad cannot place it yet: {follower.last_reason}")
        limit = self.config.unplaced_limit_s
        if limit and follower.unplaced_handle is None:
            follower.unplaced_handle = asyncio.get_running_loop().call_later(
                limit, lambda: self.background.spawn(self._unplaced_too_long(follower), f"unplaced-{follower.job_id}"))

    async def _unplaced_too_long(self, follower: Follower) -> None:
        """Nomad has not placed the job for unplaced_limit_s: purge it and lose the attempt (not charged).
        Found by exploratory testing: a job pinned to a node whose CPU another team's job took stayed
        queued for ever while newer inputs ran elsewhere, and with the other node ineligible production
        stopped. Purged, not only stopped: the task's next attempt has a job of its own, and nothing is left
        for an admin to start again."""
        if follower.done or follower.allocs or follower.job_id in self._cancelled:
            return
        limit = self.config.unplaced_limit_s
        try:
            # What Nomad has now, not what this launcher last saw: while the event stream was down (or the reads
            # slow) Nomad may have placed the job, and the purge stopped the running attempt and said Nomad
            # could not place it (found by exploratory testing).
            if await self._placed_meanwhile(follower):
                return
            follower.purged_by_hrwsi = True  # (its Job event, a 404 of the job: not an admin's purge)
            response = await self.client.call(f"purge unplaced Nomad job {follower.job_id}", "job",
                                              quote_id(follower.job_id), method="delete", params={"purge": "true"})
        except NomadError as error:
            logger.warning("could not purge Nomad job %s, unplaced for %g s: %s; tried again", follower.job_id, limit,
                           error)
            follower.unplaced_handle = asyncio.get_running_loop().call_later(
                min(limit, 60.0), lambda: self.background.spawn(self._unplaced_too_long(follower),
                                                                f"unplaced-{follower.job_id}"))
            return
        if response.status not in (200, 404):
            logger.warning("Nomad refused to purge job %s, unplaced for %g s (HTTP %d: %s); it stays queued",
                           follower.job_id, limit, response.status, response.text.strip()[:200])
            return
        if follower.done or any(a.get("ClientStatus") in LIVE + ("complete", "failed") for a in follower.allocs.values()):
            return  # placed meanwhile: the purge stops it, and its allocation says how it ended
        message = (f"Nomad could not place job {follower.job_id} for {limit:g} s (HRWSI_NOMAD_UNPLACED_LIMIT_S): "
                   f"{follower.last_reason}; hrwsi purged it: not the routine's fault, retried as a new attempt")
        logger.warning("%s", message)
        # (not_placed, not backend_unavailable: the database then keeps the task's next attempt off this worker)
        self._resolve(follower, JobOutcome("lost", None, message, None, _now(), fault="not_placed"))

    async def _placed_meanwhile(self, follower: Follower) -> bool:
        """Whether Nomad lists an allocation of the job now (then followed as any: merged and assessed)."""
        job_id = follower.job_id
        response = await self.client.call(f"read allocations of {job_id}", "job", quote_id(job_id), "allocations")
        if response.status == 404:
            return False
        if response.status != 200:
            raise NomadError(response.status, f"allocations of {job_id}: HTTP {response.status} {response.text}")
        for alloc in response.json() or []:
            self._merge_alloc(follower, alloc)
        if not follower.allocs or follower.done:
            return follower.done
        logger.info("Nomad job %s was placed while this launcher did not see it (%s): followed, not purged", job_id,
                    ", ".join(where(a) for a in follower.allocs.values()))
        self._assess(follower)
        return True

    def _reconcile_all(self) -> None:
        for follower in list(self.followers.values()):
            self._schedule_refresh(follower)

    # -- the watcher: the shared event stream, or blocking queries -------------------------------------
    def _ensure_watcher(self) -> None:
        if self._watch_task is None or self._watch_task.done():
            self._watch_task = asyncio.get_running_loop().create_task(self._watch(), name="hrwsi-nomad-watch")

    @property
    def stream_unavailable(self) -> bool:
        """Following with blocking queries: the stream is off (configuration) or failed (for a while)."""
        return not self.config.event_stream or self._fallback_at is not None

    def _blocking_queries_now(self) -> bool:
        if not self.config.event_stream:
            return True
        if self._fallback_at is None:
            return False
        if asyncio.get_running_loop().time() - self._fallback_at < STREAM_RETRY_S:
            return True
        logger.info("trying the Nomad event stream again after %.0f s of blocking queries", STREAM_RETRY_S)
        self._fallback_at, self._failed_streams = None, 0
        return False

    def _fall_back(self, why: str) -> None:
        logger.warning("the Nomad event stream is unavailable (%s): following jobs with blocking queries", why)
        self._fallback_at = asyncio.get_running_loop().time()
        self._poll_index = 0  # the first blocking query answers at once: every followed job is read

    async def _watch(self) -> None:
        backoff = 0.5
        while not self.client.closed:
            if self._blocking_queries_now():
                try:
                    await self._poll_once()
                    backoff = 0.5
                    self._list_refused_said = None
                except NomadError as error:
                    if error.status in (401, 403):
                        await self._read_each_job(error)
                        continue
                    logger.warning("blocking query on Nomad jobs failed: %s", error)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                continue
            try:
                await self._stream_once()
                backoff = 0.5
                continue
            except StreamUnavailable as error:
                self._fall_back(f"it answered {error}")
                continue
            except StreamRefused as error:
                self._failed_streams += 1
                problem = str(error)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # StreamEnded, unreachable, a bad line: reconnect
                problem = str(error)
            if self.client.closed:
                return
            if self._failed_streams >= FAILED_STREAMS_BEFORE_FALLBACK:
                self._fall_back(f"{self._failed_streams} subscriptions in a row failed or ended without a line "
                                f"(Nomad >= 1.11.2 reports an ACL or event broker error that way); last: {problem}")
                continue
            logger.warning("the Nomad event stream broke (%s); reconnecting in %.1f s", problem, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _stream_once(self) -> None:
        """One connection to the event stream, until it ends (StreamEnded) or fails."""
        # Start at the present: replaying the buffer could resurrect events of jobs since collected;
        # followed jobs are reconciled with list calls once connected anyway. Read Nomad's index on
        # every (re)connection: a cluster rebuilt or restored from nothing starts its Raft index over,
        # and a subscription from our old, higher index would drop every new event as already seen.
        probe = await self.client.jobs_index()
        if probe.status == 200 and probe.index < self._jobs_floor:
            self._index_went_backwards(probe.index)
        if probe.status == 200:
            self._jobs_floor = max(self._jobs_floor, probe.index)
        # The last frame seen, if any (not the probe's index: the jobs table is also written without an event, a
        # job marked stable say, so the last event may be below it in the same state).
        resumed_after = self._last_frame_index
        if not self._stream_index:
            self._stream_index = probe.index if probe.status == 200 else 0
        params = {"index": str(self._stream_index + 1) if self._stream_index else "0",
                  "topic": ["Job:*", "Allocation:*", "Evaluation:*"], "namespace": self.config.namespace}
        connection = await self._events.connect(params)
        try:
            logger.info("following Nomad jobs through the event stream of %s (%s %d)",
                        public_address(self.config.address), connection.response.version, connection.response.status)
            self._reconcile_all()  # events before this connection are not retained: read the state
            async for frame in connection.frames():
                if self.client.closed:
                    return  # the backend is closing (its close also cancels this task)
                self._failed_streams = 0
                if not frame:  # {} is a heartbeat
                    continue
                if resumed_after and 0 < int(frame.get("Index") or 0) < resumed_after:
                    self._first_frame_below(frame, resumed_after)
                resumed_after = 0
                self._on_frame(frame)
            if not connection.lines:
                self._failed_streams += 1
            raise StreamEnded(f"the event stream ended after {connection.lines} line(s)")
        finally:
            connection.close()

    def _first_frame_below(self, frame: dict, resumed_after: int) -> None:
        """A resumed subscription's first frame is below the last frame seen. A subscription from past every
        buffered event starts at the server's last one (nomad/stream/event_buffer.go StartAtClosest): the last
        frame seen while Nomad's state lasts, or one before it from a server that has not applied the last
        entries yet (each server publishes what its own FSM applied and serves the stream itself:
        nomad/state/state_store.go EventBroker, nomad/event_endpoint.go; a follower behind the leader, one
        restarted and replaying its log). That one is a frame already seen, the same events at the same index:
        the same history, caught up as the server applies (its frames up to ours are dropped as seen). Any other
        is another state's: a cluster rebuilt or restored whose index of jobs had already passed the probe's
        floor, whose frames up to our old index would be dropped as seen. One older than the frames remembered
        cannot be told: taken for another state (every followed job read again, as before)."""
        index = int(frame["Index"])
        if self._recent_frames.get(index) == _frame_events(frame):
            logger.info("the Nomad event stream resumed on a server whose events trail the last one seen (%d, after "
                        "%d): the same history, followed on as it catches up", index, resumed_after)
            return
        self._index_went_backwards(index, what="the event stream's first frame")
        self._reconcile_all()

    async def _index_is_behind(self) -> bool:
        """Whether Nomad's index of jobs is below the lowest it can be while its state lasts (_jobs_floor, the
        poll's), asked when a followed job is unknown: read before the stream or the poll saw the index go
        back, the job looked purged, where it was lost with Nomad's state (a reset, a restore; a CI run read
        it first). (One of the job's own allocations seen is compared with the index of allocations.)"""
        seen = max(self._jobs_floor, self._poll_index)
        if not seen:
            return False
        try:
            probe = await self.client.jobs_index(retry=False)
        except (TimeoutError, NomadError, OSError):
            return False
        if probe.status != 200 or not probe.index or probe.index >= seen:
            return False
        if self._stream_index:
            self._index_went_backwards(probe.index)
        else:
            self._poll_index = self._jobs_floor = 0  # (as the poll does when it sees it)
            for other in self.followers.values():
                other.state_went_back = True
        return True

    def _index_went_backwards(self, index: int, what: str = "Nomad's index of jobs") -> None:
        """Nomad lost its state (its index is below one we saw): what we knew of allocations is void."""
        seen = self._jobs_floor if what == "Nomad's index of jobs" else self._stream_index
        logger.warning("%s went backwards (%d, after %d): Nomad's state was lost or restored; every followed job is "
                       "read again, and a job Nomad no longer knows ends lost (retried)", what, index, seen)
        self._stream_index = self._jobs_floor = self._last_frame_index = 0
        self._recent_frames.clear()
        for follower in self.followers.values():
            follower.state_went_back = True
            follower.allocs.clear()
            follower.last_listing = None

    def _on_frame(self, frame: dict) -> None:
        index = int(frame.get("Index") or 0)
        if index and index <= self._stream_index:
            return  # already seen (Nomad resumes at the requested index, inclusive)
        self._stream_index = max(self._stream_index, index)
        self._last_frame_index = max(self._last_frame_index, index)
        if index:
            self._recent_frames[index] = _frame_events(frame)
            while len(self._recent_frames) > RECENT_FRAMES:
                self._recent_frames.popitem(last=False)
        for event in frame.get("Events") or []:
            payload = event.get("Payload") or {}
            topic = event.get("Topic")
            if topic == "Job":  # (a write of the jobs table, whatever its namespace)
                self._jobs_floor = max(self._jobs_floor, index)
            obj = payload.get(topic) or {}  # the Allocation, Evaluation or Job the event is about
            if obj.get("Namespace") not in (None, "", self.config.namespace):
                continue  # subscribed to our namespace only; the payload's own says so (api has no Event.Namespace)
            if topic == "Allocation":
                self._on_allocation_event(obj)
            elif topic == "Evaluation":
                follower = self.followers.get(obj.get("JobID", ""))
                if follower is not None:
                    self._on_evaluation(follower, obj)
            elif topic == "Job":
                self._on_job_event(event.get("Type"), obj)

    def _on_allocation_event(self, alloc: dict) -> None:
        follower = self.followers.get(alloc.get("JobID", ""))
        if follower is not None and not follower.done:
            self._merge_alloc(follower, alloc)
            self._assess(follower)
        elif alloc.get("ClientStatus") in LIVE and alloc.get("DesiredStatus") == "run" and \
                alloc.get("ID") not in self._ended.get(alloc.get("JobID", ""), (frozenset({alloc.get("ID")}),))[0]:
            self._started_again(alloc["JobID"], where(alloc))

    def _started_again(self, job_id: str, what: str) -> None:
        """A job whose end hrwsi recorded runs again: an admin's `nomad job stop` then `nomad job run` (or
        the UI's Start) of its spec. Its attempt is over in hrwsi (retried as a new one): stopped and purged,
        or it would run beside its retry and write the old attempt's output directory (found by
        exploratory testing)."""
        if job_id in self._stopping_again or job_id in self.followers:
            return
        self._stopping_again.add(job_id)
        self.background.spawn(self._purge_started_again(job_id, what), f"purge-again-{job_id}")

    async def _purge_started_again(self, job_id: str, what: str) -> None:
        """Purge a job started again, if it is still the attempt's: once purged, its ID is free, and another
        installation's job (or another timeline's) may hold it now, which must be left alone (found by review)."""
        claim = self._ended.get(job_id, (frozenset(), None))[1]
        if claim is not None:
            try:
                response = await self.client.call(f"read Nomad job {job_id}", "job", quote_id(job_id))
            except NomadError as error:
                logger.debug("could not read Nomad job %s: %s", job_id, error)
                self._stopping_again.discard(job_id)
                return
            if response.status != 200 or ((response.json() or {}).get("Meta") or {}).get(CLAIM_META) != claim:
                logger.debug("Nomad job %s runs, but not as the attempt hrwsi recorded ended: left alone", job_id)
                if response.status == 200:
                    self._ended.pop(job_id, None)  # (that ID is another's now: not looked at again)
                self._stopping_again.discard(job_id)
                return
        logger.warning("Nomad job %s (%s): an attempt already recorded ended was started again in Nomad (not by "
                       "hrwsi): stopped and purged; its task runs as a new attempt", job_id, what)
        await self._purge_quietly(job_id)

    async def _check_started_again(self, job_id: str) -> None:
        """A job whose end hrwsi recorded is listed live: started again if it has an allocation hrwsi did not
        know at its end (a job hrwsi is stopping, its node away, is live with the old one only)."""
        try:
            response = await self.client.call(f"read allocations of {job_id}", "job", quote_id(job_id), "allocations")
        except NomadError as error:
            logger.debug("could not read the allocations of Nomad job %s: %s", job_id, error)
            return
        for alloc in (response.json() or []) if response.status == 200 else []:
            if job_id not in self.followers:
                self._on_allocation_event(alloc)

    async def _purge_quietly(self, job_id: str) -> None:
        try:
            response = await self.client.call(f"purge Nomad job {job_id}", "job", quote_id(job_id), method="delete",
                                              params={"purge": "true"})
            if response.status not in (200, 404):
                logger.warning("Nomad refused to purge job %s (HTTP %d: %s)", job_id, response.status,
                               response.text.strip()[:200])
        except NomadError as error:
            logger.warning("could not purge Nomad job %s: %s", job_id, error)
        finally:
            self._stopping_again.discard(job_id)

    def _stop_flag_unknown(self, follower: Follower) -> bool:
        """The attempt's allocation ended stopped by Nomad, and neither hrwsi nor a seen Stop flag says why.

        Without the event stream, the job list that would show the Stop flag may come after this read of
        the allocations: `nomad job stop` sets the flag, then the scheduler stops the allocation
        (scheduler/reconciler/reconcile_cluster.go, handleStop) with the words of a job update
        (scheduler/structs/const.go, StatusAllocNotNeeded). Found by CI, where the listing lost that race."""
        if follower.stopped_in_nomad or follower.timed_out or follower.job_id in self._cancelled:
            return False
        own = [a for a in follower.allocs.values() if name_index(a) == 0]
        if not own:
            return False
        current = max(own, key=lambda a: int(a.get("CreateIndex") or 0))
        return current.get("ClientStatus") in ("complete", "failed") and current.get("DesiredStatus") == "stop"

    async def _read_stop_flag(self, follower: Follower) -> None:
        response = await self.client.call(f"read Nomad job {follower.job_id}", "job", quote_id(follower.job_id))
        if response.status == 200 and (response.json() or {}).get("Stop"):
            follower.stopped_in_nomad = True
        elif response.status == 404 and not follower.purged_by_hrwsi:
            # Its allocation stopped by Nomad and the job gone: purged (`nomad job stop -purge`), which stops the
            # allocations as a stop does (scheduler/reconciler/reconcile_cluster.go handleStop, the job nil). Not
            # garbage collection: a job is collected only once it is dead, its allocations all terminal.
            follower.stopped_in_nomad = follower.purged_in_nomad = True

    def _on_job_event(self, event_type: str | None, job: dict) -> None:
        follower = self.followers.get(job.get("ID", ""))
        if follower is None or follower.done:
            return
        if job.get("Stop"):  # (before its allocation's end: the servers stop the job, then its allocations)
            follower.stopped_in_nomad = True
        if event_type == "JobDeregistered" and not job.get("Stop") and not follower.purged_by_hrwsi:
            # A purge: the event of a deleted job carries the job as it was before (Stop false when it ran; since
            # Nomad 2.0 `Deleted` beside it), a stop's the stopped job (Stop true): nomad/state/events.go
            # eventFromChange. Its allocations are then stopped as by a stop, in words of a job update.
            follower.stopped_in_nomad = follower.purged_in_nomad = True
        self._scaled_by_admin(follower, job)
        if event_type in ("JobDeregistered", "JobBatchDeregistered") or \
                (job.get("Status") == "dead" and not follower.has_live_alloc()):
            self._schedule_refresh(follower)

    async def _poll_once(self) -> None:
        """Without the stream: one blocking query on the job list; refresh the followed jobs that changed."""
        prefix = self.config.job_prefix
        wait_s = int(self.config.blocking_wait_s)
        params = {"prefix": prefix, "index": str(self._poll_index), "wait": f"{wait_s}s"}
        # Nomad holds a blocking query up to a sixteenth longer than its wait (nomad/rpc.go blockingRPC: a
        # RandomStagger of MaxQueryTime / structs.JitterFraction): a read timeout of the wait plus the request
        # timeout alone timed out the polls that found nothing whenever the stagger passed the request timeout.
        call = asyncio.ensure_future(self.client.call(
            "wait for changes of Nomad jobs", "jobs", params=params,
            timeout=(self.config.request_timeout_s, wait_s * (1 + 1 / QUERY_JITTER_FRACTION)
                     + self.config.request_timeout_s)))
        went_back = asyncio.ensure_future(self._poll_went_back.wait())
        try:
            await asyncio.wait({call, went_back}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            went_back.cancel()
            self._poll_went_back.clear()
            restarted = not call.done()
            if restarted:
                call.cancel()  # (its thread ends with its wait; the answer, of the state before, is not read)
        if restarted:
            logger.warning("a registration was answered an index of jobs below the one the poll waits for: Nomad's "
                           "state went back (rebuilt or restored); the followed jobs are read again")
            self._poll_state_went_back()
            return
        response = call.result()
        if response.status != 200:
            raise NomadError(response.status, f"HTTP {response.status}: {response.text.strip()[:200]}")
        index = response.index
        if index < self._poll_index:
            index = 0  # the index went backwards (a new cluster, a restore): start over
            self._poll_state_went_back()
        self._poll_index = index
        self._jobs_floor = max(self._jobs_floor, index) if index else 0
        listing = {job["ID"]: job for job in response.json() or []}
        for job_id, stub in listing.items():
            if job_id in self._ended and job_id not in self.followers and not stub.get("Stop") and \
                    stub.get("Status") in ("pending", "running"):
                self.background.spawn(self._check_started_again(job_id), f"check-again-{job_id}")
        for follower in list(self.followers.values()):
            stub = listing.get(follower.job_id)
            if stub is not None and stub.get("Stop"):
                follower.stopped_in_nomad = True
            key = None if stub is None else (stub.get("Status"), stub.get("ModifyIndex"),
                                             json.dumps(stub.get("JobSummary"), sort_keys=True))
            if key is None or key != follower.last_listing or not follower.job_id.startswith(prefix):
                follower.last_listing = key
                self._schedule_refresh(follower)

    def _poll_state_went_back(self) -> None:
        """Nomad's index of jobs went below the poll's: the next poll asks from 0 (answered at once, every followed
        job read again), and a followed job Nomad no longer knows ends lost."""
        self._poll_index = self._jobs_floor = 0
        for follower in self.followers.values():
            follower.state_went_back = True


def _frame_events(frame: dict) -> tuple:
    """What a frame carried, enough to know it again: each event's topic, type and key (the same Raft entry
    gives the same events on every server, nomad/state/events.go; allocation and evaluation keys are UUIDs)."""
    return tuple(sorted((str(e.get("Topic")), str(e.get("Type")), str(e.get("Key"))) for e in frame.get("Events") or []))
