"""The Nomad backend: each attempt is a Nomad batch job with a deterministic ID.

Submission registers `build_job(spec)` with `EnforceIndex` / `JobModifyIndex 0`, Nomad's
check-and-set "create only if absent": resubmitting the same attempt (after a launcher crash)
never re-runs a job that already exists, running or dead; a retried registration first looks for
the job, and one whose try may have run in a Nomad state that is gone since is lost instead of
registered again (`_may_register_again`). A job found on the ID is followed only when it is this
claim's own registration (its Meta's `hrwsi_claim`, the job row's claim token); one this database does not
know (a restore from an older backup, another installation on the namespace) is left alone, and the attempt
registered under the ID of its claim (`claims_own_job_id`), with paths of its own (`claims_own_spec`), recorded
first (`record_runs_under`); while another installation's jobs are in the namespace, `problem` says so.
Following is `following.JobFollowing`; outcomes are read from allocations by `outcomes`. No secret ever goes
into a job spec: the token travels only as X-Nomad-Token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import quote

from hrwsi.backends.base import (
    AttemptLost,
    Backend,
    BackendSettingError,
    JobOutcome,
    JobSpec,
    ProgressCallback,
    attempt_paths_in_use,
    claims_own_job_id,
    claims_own_spec,
    prepare_attempt,
)
from hrwsi.backends.nomad.background import BackgroundTasks
from hrwsi.backends.nomad.client import (
    PROBE_TIMEOUT_S,
    PROBLEM_FORGOTTEN_S,
    REGISTRATION_DISABLED,
    NomadClient,
    NomadError,
    NomadResponse,
    error_text,
    is_transient,
    quote_id,
)
from hrwsi.backends.nomad.config import NomadConfig, public_address
from hrwsi.backends.nomad.following import JobFollowing
from hrwsi.backends.nomad.job_spec import (
    CLAIM_META,
    INSTALLATION_META,
    assert_no_secrets,
    build_job,
    register_body,
    scale_body,
)
from hrwsi.backends.nomad.workers import in_pool, list_nodes, node_is_active
from hrwsi.service_logging import task_fields

logger = logging.getLogger(__name__)


# Nomad's answers that say the launcher cannot be served now (its token refused, overloaded), whatever
# the job: not the routine's fault.
UNAVAILABLE_STATUSES = (401, 403, 429)

# What Nomad answers (HTTP 500) for a job in a namespace, node pool or region that does not exist: the
# launcher's setting, not the routine (nomad/job_endpoint_validators.go jobNamespaceConstraintCheckHook,
# nomad/job_endpoint_hook_node_pool.go jobNodePoolValidatingHook, nomad/rpc.go structs.ErrNoRegionPath).
SETTING_REFUSALS = (("is in nonexistent namespace", "NOMAD_NAMESPACE"),
                    ("is in nonexistent node pool", "HRWSI_NOMAD_NODE_POOL"),
                    ("No path to region", "NOMAD_REGION"))


def refused_setting(text: str) -> str | None:
    """The setting a refusal of Nomad's names as missing (NOMAD_NAMESPACE ...), or None."""
    return next((setting for marker, setting in SETTING_REFUSALS if marker in text), None)


# While Nomad refuses to list its nodes (a token without node:read), how often that is said again.
NODES_REFUSED_REPEAT_S = 300.0
# While Nomad refuses the launcher's registrations for its token, how often the refused job is planned again
# (submissions_refused: the launcher's own probe asks every REACH_PROBE_S, and no more often than this)
TOKEN_PROBE_S = 2.0
# While jobs of another hrwsi installation are in the launcher's namespace, how often the namespace's jobs are
# listed again to tell whether they still are (_watch_the_namespace).
SHARED_NAMESPACE_CHECK_S = 300.0


@dataclasses.dataclass
class _SharedNamespace:
    """Another hrwsi installation's jobs found in the launcher's namespace: what `problem` says while they are."""

    ours: str  # this installation's id
    theirs: list[str]  # the other installations' ids
    job_id: str  # one of their jobs
    since: datetime


def _output_dir_of(job: dict) -> str | None:
    """The output directory a job of an attempt was registered with (its task's HRWSI_OUTPUT_DIR), or None."""
    for group in job.get("TaskGroups") or []:
        for task in group.get("Tasks") or []:
            found = (task.get("Env") or {}).get("HRWSI_OUTPUT_DIR")
            if found:
                return found
    return None


@dataclasses.dataclass
class _TokenRefused:
    """Nomad refuses the launcher's registrations for its token: a registration refused (HTTP 401/403) and a plan
    of the same job refused too, which needs the same capability (submit-job) and registers nothing."""

    text: str
    since: datetime
    job: dict  # the refused job, which each probe plans
    probed: float  # (monotonic) when it was last planned
    # Refused for every token but a management one by the scheduler configuration (RejectJobRegistration), not
    # for the launcher's token: a plan is taken all the same, so each probe asks a scale instead (_scale_refused).
    disabled: bool = False

    @property
    def cause(self) -> str:
        return ("rejects job registrations (RejectJobRegistration in its scheduler configuration, an admin's "
                "switch)" if self.disabled else "refuses the launcher's token: check NOMAD_TOKEN and its ACL policy")


class _AlreadyRegistered(Exception):
    """A registration's retry found the job registered by a try whose answer was lost."""


class NomadBackend(Backend):
    """Runs each attempt as a Nomad batch job. See the package docstring for the semantics."""

    name = "nomad"
    resubmit_is_idempotent = True
    jobs_outlive_launcher = True  # a Nomad job runs on without its launcher; another launcher adopts it
    reports_worker_activity = True
    # Every launcher of an installation registers its jobs in one namespace, where each looks for
    # them when it adopts them (migration 0070).
    one_site_per_installation = True

    def __init__(self, config: NomadConfig | None = None, *, finished_memory: int = 10_000):
        self.config = config or NomadConfig.from_env()
        self.stop_grace_s = self.config.kill_timeout_s  # (a stopped job's kill_timeout: the stop signal, then SIGKILL)
        self.client = NomadClient(self.config)
        self._background = BackgroundTasks()
        self._following = JobFollowing(self.client, self._background, finished_memory=finished_memory)
        self._nodes_cache: tuple[float, list[dict]] | None = None
        # Nomad's index of jobs when this backend last knew it: the JobModifyIndex of its last
        # registration, or the index read before its first (_may_register_again)
        self._jobs_index_floor = 0
        # Why Nomad refused the latest registrations for a cause of the launcher's (a namespace deleted
        # since the start): (text, since, monotonic when last met).
        # A registration served clears it; `problem` says it (hrwsi status).
        self._refusal: tuple[str, datetime, float] | None = None
        # While Nomad refuses the launcher's registrations for its token (submissions_refused), and the lock that
        # makes one plan at a time tell it (_token_refused_now, _probe_token).
        self._token_refused: _TokenRefused | None = None
        self._token_check = asyncio.Lock()
        # Jobs of another installation found on our IDs: never followed, never purged (forget).
        # Each table per job below keeps at most `finished_memory` IDs, the oldest forgotten first: a launcher runs
        # for months, and an ID is not always forgotten with its attempt (found by review): one a job not ours
        # holds is named by forget only if the attempt was lost on it (an attempt run under its claim's own ID is
        # forgotten by that one), and an attempt whose lease lapsed here is not forgotten here at all.
        self._memory = finished_memory
        self._not_ours: dict[str, None] = {}
        # Job IDs this backend registered, or found carrying their attempt's claim token, not followed yet: `wait`
        # reads any other's Meta before following it.
        self._checked: dict[str, None] = {}
        # Claims' own IDs found registered with the row's first paths (by a launcher before those IDs had paths
        # of their own): runs_as keeps the paths the job writes in.
        self._on_first_paths: dict[str, None] = {}
        # While Nomad refuses to list its nodes: (monotonic time it was last said, since when)
        self._nodes_refused: tuple[float, datetime] | None = None
        # While jobs of another hrwsi installation are in this namespace (`problem` says it), and the task that
        # lists the namespace's jobs to tell (at the first submit, then while they are).
        self._shared: _SharedNamespace | None = None
        self._namespace_watch: asyncio.Task | None = None

    # -- at start ----------------------------------------------------------------------------------
    async def site(self) -> str | None:
        # The namespace its jobs are in: a launcher looks for the jobs it adopts in its own.
        return f"nomad namespace {self.config.namespace}"

    async def check_settings(self) -> None:
        """NOMAD_REGION, NOMAD_NAMESPACE and HRWSI_NOMAD_NODE_POOL name what Nomad has: Nomad refuses every
        job in a region, namespace or node pool that does not exist (an HTTP 500), which the launcher
        would meet only at each registration. Nomad out of reach, or a token not allowed to look
        (a node pool needs a `node_pool` read rule), is let through: registrations say it then."""
        cfg, where = self.config, public_address(self.config.address)
        if cfg.region:
            answer = await self._look("list Nomad's regions", "regions")
            regions = (answer.json() or []) if answer is not None and answer.status == 200 else None
            if regions is not None and cfg.region not in regions:
                raise BackendSettingError(
                    f"NOMAD_REGION={cfg.region!r}: Nomad at {where} knows no such region (its regions: "
                    f"{', '.join(map(str, regions)) or 'none'}) and would refuse every call ('No path to region'); "
                    "set NOMAD_REGION to one of them, or unset it for the agent's own")
        answer = await self._look(f"read Nomad namespace {cfg.namespace}", "namespace", cfg.namespace)
        if answer is not None and answer.status == 404:
            raise BackendSettingError(
                f"NOMAD_NAMESPACE={cfg.namespace!r}: Nomad at {where} has no such namespace and would refuse "
                f"every job in it; create it (nomad namespace apply {cfg.namespace}) or set NOMAD_NAMESPACE to "
                "an existing one (each hrwsi installation needs one of its own)")
        answer = await self._look(f"read Nomad node pool {cfg.node_pool}", "node", "pool", quote_id(cfg.node_pool))
        if answer is not None and answer.status == 404:
            raise BackendSettingError(
                f"HRWSI_NOMAD_NODE_POOL={cfg.node_pool!r}: Nomad at {where} has no such node pool and would refuse "
                "every job in it; set HRWSI_NOMAD_NODE_POOL to the pool of the workers' nodes (nomad node pool "
                "list), or create it (nomad node pool apply)")

    async def _look(self, what: str, endpoint: str, *path: str) -> NomadResponse | None:
        """One read of check_settings, not retried: None when Nomad cannot answer it now."""
        try:
            answer = await self.client.call(what, endpoint, *path, retry=False)
        except NomadError as error:
            logger.warning("could not %s at start (%s): the launcher starts; each registration tells", what, error)
            return None
        if answer.status in (401, 403):
            logger.info("could not %s at start (HTTP %d: %s): the launcher starts; each registration tells",
                        what, answer.status, error_text(answer.text)[:200])
            return None
        return answer

    # -- the Backend contract ----------------------------------------------------------------------
    async def submit(self, spec: JobSpec, *, first_start: bool = False) -> str:
        """Register the attempt's job unless a job with its ID exists (then nothing is re-run). Nomad
        out of reach for `retry_for_s`, overloaded, or refusing the launcher's token is no fault of the
        routine's: the attempt is lost (`backend_unavailable`), retried as a new one without counting
        as a failure (charged to the routine, such an outage terminated its tasks and put it on hold:
        found by exploratory testing, 2026-12-05). A job Nomad refuses (a validation error) fails."""
        if self._namespace_watch is None and spec.installation:  # (once: then while another's jobs are here)
            self._watch_namespace(spec.installation)
        # (one attribute read on the dispatch path when nothing is refused; an attempt adopted may have its job
        # registered already: _register_as looks for it)
        if self._token_refused is not None and first_start:
            raise self._given_back(spec, None)
        try:
            registered = await self._register(spec, first_start)
        except NomadError as error:
            if error.unavailable:
                raise AttemptLost("backend_unavailable", f"{error}; not the routine's fault: retried as a new "
                                  "attempt") from None
            raise
        self._refusal = None  # (Nomad took a job of ours: what refused the earlier ones is over)
        return registered

    def _refused_for_the_launcher(self, text: str) -> None:
        """Keep why Nomad refuses the launcher's jobs whatever the routine, for `hrwsi status`."""
        since = self._refusal[1] if self._refusal is not None else datetime.now(UTC)
        self._refusal = (text, since, time.monotonic())

    async def _register(self, spec: JobSpec, first_start: bool) -> str:
        """Register the attempt's job on its ID, or follow this claim's own registration found there; a job
        this database does not know on it is left alone and the attempt registered under the ID of its
        claim, with paths of its own (_run_under_claims_own_id). The ID registered or followed is returned."""
        flavour = await self._flavour_of(spec.worker) if self.config.placement == "flavour" else None
        # (a spec without a claim token, a row claimed before migration 0080 or a test's: a random one
        # on its first start, which an adopter cannot know; adopted, such a job is judged by _is_ours)
        claim = spec.claim or (uuid.uuid4().hex if first_start else None)
        if not first_start and spec.claim and (own := await self._claims_own_job(spec)) is not None:
            return own
        if first_start and spec.claim and (held := await self._job_on_paths_in_use(spec)) is not None:
            return await self._run_under_claims_own_id(spec, held, claim, flavour)
        await self._prepare(spec, first_start)
        if not self._jobs_index_floor:
            await self.read_jobs_index()
        foreign = await self._register_as(spec, claim, flavour, may_exist=not first_start)
        if foreign is None:
            self._remember(self._checked, spec.job_id)
            return spec.job_id
        return await self._run_under_claims_own_id(spec, foreign, claim, flavour)

    @staticmethod
    async def _prepare(spec: JobSpec, first_start: bool) -> None:
        """The attempt's directories before its registration: on its first start, prepare_attempt (one that
        cannot be prepared fails the attempt, as locally); else its directories where the launcher reads them
        (on a filesystem not shared with the workers, Nomad's own)."""
        if first_start:
            await asyncio.to_thread(prepare_attempt, spec)
            return
        try:
            await asyncio.to_thread(spec.prepare_paths)
        except OSError as error:
            logger.debug("could not create the directories of %s here (not a shared filesystem?): %s",
                         spec.job_id, error)

    async def _job_on_paths_in_use(self, spec: JobSpec) -> dict | None:
        """On an attempt's first start whose paths hold files already (attempt_paths_in_use: left by another
        timeline of the installation, a restore from an older backup): the job this database does not know on
        its ID, which may still run and write there, else None (the files are set aside, as before). Asked
        before prepare_attempt, which would move them from under that job; not asked of paths that hold
        nothing (almost every attempt: no call more)."""
        if not await asyncio.to_thread(attempt_paths_in_use, spec):
            return None
        job = await self._read_job(spec.job_id)
        return job if job is not None and not self._is_this_claims(job, spec, spec.claim) else None

    async def _run_under_claims_own_id(self, spec: JobSpec, foreign: dict, claim: str | None,
                                       flavour: str | None) -> str:
        """A job this database does not know holds spec.job_id: left alone, and the attempt registered under
        its claim's own ID with paths of its own (claims_own_spec), never the first job's directory nor log
        (it may still run: found by exploratory testing), which is neither moved aside nor used. That ID and
        those paths are recorded (record_runs_under) before they are prepared and registered, so that once the attempt is
        known to have gone there, nothing registers the first ID for it again."""
        own_id = claims_own_job_id(spec.job_id, spec.claim) if spec.claim else None
        # (no ID of its own to go to, or the spec names it already, the ID recorded: that one is taken too)
        if own_id is None or spec.job_id == own_id:
            self._refuse_a_job_not_ours(foreign, spec)
        self._say_taken(foreign, spec, own_id)
        own = claims_own_spec(spec)
        # (recorded before its paths are prepared: a launcher that crashed in between left a manifest there that
        # the row did not name, and its adopter moved it aside as another timeline's files; found by review)
        if self.record_runs_under is not None:
            await self.record_runs_under(own)
        # (the row named the first ID, so nothing ran on these paths for this claim: its first start there)
        await asyncio.to_thread(prepare_attempt, own)
        if not self._jobs_index_floor:
            await self.read_jobs_index()
        taken_too = await self._register_as(own, claim, flavour)
        if taken_too is not None:
            self._refuse_a_job_not_ours(taken_too, own)
        self._remember(self._checked, own_id)
        return own_id

    def _remember(self, table: dict[str, None], job_id: str) -> None:
        """Keep job_id in one of the tables per job, at most `finished_memory` IDs (the oldest go first)."""
        table.pop(job_id, None)
        table[job_id] = None
        while len(table) > self._memory:
            del table[next(iter(table))]

    async def _claims_own_job(self, spec: JobSpec) -> str | None:
        """An attempt adopted from its job row (not its first start): the claim's own ID when the job there
        carries the row's token, else None. The row names the first ID until its launcher recorded the other;
        a launcher that crashed (or whose lease lapsed) before that left the row on the first ID, and once the
        job this database does not know was gone from it (purged by its installation, Nomad's GC), registering
        the first ID again ran the attempt a second time beside its job on the claim's own ID (found by
        review). So the claim's own ID is looked at first: its job is this attempt's, and nothing is
        registered. Looked for until Nomad answers, by the one rule for an attempt that may be running (an
        adoption's, a registration whose answer never came: _settle_unanswered): never lost for want of an
        answer. Lost after the retry window, the re-registration after an adoption retried the attempt as a new
        one while its job on the claim's own ID ran on, unfollowed (found by exploratory testing)."""
        assert spec.claim is not None
        own_id = claims_own_job_id(spec.job_id, spec.claim)
        if own_id == spec.job_id:  # (the row names it: recorded)
            return None
        job = await self._read_job_when_answered(own_id)
        if job is None or not self._is_this_claims(job, spec, spec.claim):
            return None
        if _output_dir_of(job) == spec.output_dir:
            self._remember(self._on_first_paths, own_id)
        logger.info("task %d attempt %d runs as Nomad job %s, which carries its claim: followed, nothing registered",
                    spec.task_id, spec.attempt, own_id,
                    extra=task_fields(spec.task_id, own_id, spec.routine, attempt=spec.attempt))
        self._remember(self._checked, own_id)
        return own_id

    async def adopted_job_id(self, spec: JobSpec) -> str:
        """The job an attempt adopted without a new registration (seen running) runs as: the claim's own ID
        when its job carries the row's token (its launcher did not record that ID), else spec.job_id, which
        `wait` follows only if its job is this claim's."""
        if not spec.claim:
            return spec.job_id
        return await self._claims_own_job(spec) or spec.job_id

    def runs_as(self, spec: JobSpec, backend_job_id: str) -> JobSpec:
        """Backend.runs_as; a claim's own job found registered with the row's first paths keeps them."""
        if backend_job_id in self._on_first_paths:
            return dataclasses.replace(spec, job_id=backend_job_id)
        return super().runs_as(spec, backend_job_id)

    async def _read_job(self, job_id: str) -> dict | None:
        """GET /v1/job/:id: the job, or None when Nomad has none of that ID. An error is Nomad's, never the
        routine's (`unavailable`: a submit loses the attempt, not charged)."""
        response = await self.client.call(f"read Nomad job {job_id}", "job", quote_id(job_id))
        if response.status == 404:
            return None
        if response.status != 200:
            error = NomadError(response.status, f"could not read Nomad job {job_id} (HTTP {response.status}): "
                               f"{error_text(response.text)}")
            error.unavailable = True
            raise error
        return response.json() or {}

    async def _read_job_when_answered(self, job_id: str) -> dict | None:
        """_read_job, asked again every 2 s until Nomad answers: for an attempt that may be running, which a
        follower waits for as long rather than lose it (the launcher would retry it beside itself)."""
        while True:
            try:
                return await self._read_job(job_id)
            except NomadError as error:
                logger.warning("%s; asked again in 2 s", error)
                await asyncio.sleep(2.0)

    async def _register_as(self, spec: JobSpec, claim: str | None, flavour: str | None, *,
                           may_exist: bool = False) -> dict | None:
        """Register the attempt's job on spec.job_id unless a job holds that ID (EnforceIndex). None: it was
        registered, or the job on the ID is this claim's own registration (_is_this_claims); else that job.
        `may_exist`: an attempt adopted, whose job its launcher may have registered before it was gone."""
        job = build_job(spec, self.config, flavour=flavour)
        if claim is not None:
            job["Meta"][CLAIM_META] = claim
        assert_no_secrets(job, self.config)
        poll_index_before = self._following.poll_index  # (what Nomad had answered before this write: registered_at)
        try:
            response = await self._registration(spec, job)
            while response.status in (401, 403) and await self._token_refused_now(job, response):
                if not may_exist:
                    raise self._given_back(spec, response.status)
                # (Job.Register checks the token before EnforceIndex: an adopted attempt's job may be there and
                # running; found, it is followed, and never given back while it may be)
                found = await self._adopted_job_while_refused(spec)
                if found is not None:
                    return None if self._is_this_claims(found, spec, claim) else found
                response = await self._registration(spec, job)  # (the token may submit again: registered)
        except _AlreadyRegistered:
            # (read until Nomad answers: it registered the attempt's job, which may be running)
            found = await self._read_job_when_answered(spec.job_id)
            if found is not None and not self._is_this_claims(found, spec, claim):
                return found
            logger.info("Nomad job %s was registered by a try whose answer was lost: not registered again",
                        spec.job_id)
            return None
        if response.status == 200:
            answer = response.json() or {}
            # (the jobs table's index is at least this while Nomad's state lasts)
            self._jobs_index_floor = int(answer.get("JobModifyIndex") or 0)
            self._following.registered_at(self._jobs_index_floor, poll_index_before)
            logger.info("registered Nomad job %s (%s)", spec.job_id, self.ui_link(spec.job_id),
                        extra=task_fields(spec.task_id, spec.job_id, spec.routine, attempt=spec.attempt))
            warnings = answer.get("Warnings")
            if warnings:  # deprecated or ignored settings (nomad/job_endpoint.go, Job.Warnings)
                logger.warning("Nomad registered job %s with warnings: %s", spec.job_id, warnings.strip())
            return None
        text = error_text(response.text)
        if response.status == 500 and text.startswith("Enforcing job modify index"):
            existing = await self.client.call(f"read Nomad job {spec.job_id}", "job", quote_id(spec.job_id))
            if existing.status == 200:
                found = existing.json() or {}
                if not self._is_this_claims(found, spec, claim):
                    return found
                logger.info("Nomad job %s already exists (status %s): not registered again", spec.job_id,
                            found.get("Status"))
                return None
        raise self._refusal_of(spec, response, text)

    async def _registration(self, spec: JobSpec, job: dict) -> NomadResponse:
        """POST the attempt's job, retried while transient (_may_register_again before each retry). When the
        retries ran out and a try may have been carried out all the same (its answer never came: Nomad too slow
        for the whole retry window, a connection cut mid-answer), Nomad is asked whether the job is there until it
        answers (_AlreadyRegistered: it is). Lost then, as before, the attempt was retried as a new one while its
        job ran, never followed, stopped nor purged: the work ran twice (found by exploratory testing)."""
        try:
            response = await self.client.call(f"register Nomad job {spec.job_id}", "jobs", method="post",
                                              body=register_body(job),
                                              before_retry=functools.partial(self._may_register_again, spec.job_id))
        except NomadError as error:
            if error.may_have_arrived:
                await self._settle_unanswered(spec, str(error))
            raise
        if response.may_have_arrived and is_transient("post", response):
            await self._settle_unanswered(spec, f"HTTP {response.status}")
        return response

    async def _settle_unanswered(self, spec: JobSpec, why: str) -> None:
        """Look for the job of a registration that may have been carried out until Nomad answers: returns when
        it is not there (nothing runs: the attempt may be lost and retried), else raises as _may_register_again."""
        logger.warning("task %d: Nomad did not answer the registration of job %s (%s), which it may have carried "
                       "out: looking for the job every 2 s until Nomad answers, rather than lose an attempt that may "
                       "be running", spec.task_id, spec.job_id, why,
                       extra=task_fields(spec.task_id, spec.job_id, spec.routine, attempt=spec.attempt))
        while not await self._may_register_again(spec.job_id):
            await asyncio.sleep(2.0)

    async def _token_refused_now(self, job: dict, response: NomadResponse) -> bool:
        """A registration refused for the token (HTTP 401/403): whether the token may submit no job at all, then
        told by a plan of the same job (nomad/job_endpoint.go Job.Plan: submit-job or plan-job, "which we assume
        is the same for plan"; it registers nothing). Register refuses a job, not the token, for a volume the
        token may not mount (Job.Register's CSI and host volume checks), which Plan does not check: planned,
        such a job is this attempt's refusal, as before. True: submissions_refused() is true until a plan is
        taken, and the launcher claims nothing meanwhile (each claimed attempt of a burst was registered, refused
        and lost, its task retried after its own back-off of up to 600 s, once the token was mended too: found
        by exploratory testing)."""
        if self._token_refused is not None:
            return True
        async with self._token_check:  # (the attempts refused at once: one plan tells them all)
            if self._token_refused is not None:
                return True
            if error_text(response.text) == REGISTRATION_DISABLED:
                text = (f"Nomad rejects every job registration (HTTP {response.status}: {REGISTRATION_DISABLED}): an "
                        "admin set RejectJobRegistration in its scheduler configuration (`nomad operator scheduler "
                        "set-config -reject-job-registration=false` ends it); only a management token may register")
                self._token_refused = _TokenRefused(text, datetime.now(UTC), job, time.monotonic(), disabled=True)
            elif not await self._plan_refused(job):  # (not answered: not told; this attempt's refusal, as before)
                return False
            else:
                text = (f"Nomad refuses the launcher's token (HTTP {response.status}: "
                        f"{error_text(response.text)[:200]}) for every job: it needs submit-job in namespace "
                        f"{self.config.namespace or 'default'}; check NOMAD_TOKEN and its ACL policy")
                self._token_refused = _TokenRefused(text, datetime.now(UTC), job, time.monotonic())
        logger.error("%s; meanwhile the attempts claimed are given back, unregistered (lost, backend_unavailable, "
                     "not charged: launchers whose jobs Nomad takes may run them), and %s", text, self._probe_said())
        return True

    def _probe_said(self) -> str:
        refused = self._token_refused
        if refused is not None and refused.disabled:
            return (f"whether Nomad takes registrations again is asked every {TOKEN_PROBE_S:g} s (a scale of a job "
                    "that is not there, which changes nothing)")
        return (f"the job refused is planned every {TOKEN_PROBE_S:g} s (registering nothing) to tell when the token "
                "may submit again")

    async def _adopted_job_while_refused(self, spec: JobSpec) -> dict | None:
        """While Nomad refuses the token's registrations: an adopted attempt's job, read once (its launcher, gone,
        may have registered it). Absent, the attempt is given back (raises); unread (a token that may not read
        either, Nomad out of reach), it may be running: the attempt waits until the token may submit again, and
        None says to register it again (EnforceIndex then finds its job)."""
        try:
            found = await self._read_job(spec.job_id)
        except NomadError as error:
            logger.info("task %d: job %s waits for Nomad to take the launcher's jobs again (its token is refused, "
                        "and whether the job runs cannot be read: %s)", spec.task_id, spec.job_id, error,
                        extra=task_fields(spec.task_id, spec.job_id, spec.routine, attempt=spec.attempt))
            while self._token_refused is not None:
                if self.client.closed:
                    raise NomadError(None, "the Nomad backend is closed") from None
                await asyncio.sleep(TOKEN_PROBE_S)
                await self._probe_token()
            return None
        if found is None:
            raise self._given_back(spec, 403)
        return found

    def _given_back(self, spec: JobSpec, status: int | None) -> AttemptLost:
        """What an attempt raises that is not registered because Nomad refuses the launcher's token: it is lost,
        never registered, and its task retried, claimable by another launcher. It waited, claimed, until the
        token was mended (hours, maybe), shown in flight meanwhile, out of every other launcher's reach, and an
        operator's cancel of it held until then, when it was registered and stopped at once (found by
        exploratory testing). Each attempt claimed is given back once: the launcher claims nothing meanwhile."""
        refused = self._token_refused
        cause = refused.cause if refused is not None else "refused the launcher's token: check NOMAD_TOKEN"
        answered = f" (HTTP {status})" if status else ""
        return AttemptLost("backend_unavailable", f"Nomad {cause}{answered}: job {spec.job_id} not registered; not "
                           "the routine's fault: retried as a new attempt, which a launcher whose jobs Nomad takes "
                           "may run")

    async def _plan_refused(self, job: dict) -> bool | None:
        """Whether Nomad refuses a plan of the job for the token (401/403; None: no answer). POST
        /v1/job/:id/plan (command/agent/job_endpoint.go jobPlan), not retried, registers nothing."""
        try:
            answer = await self.client.call(f"plan Nomad job {job['ID']}", "job", quote_id(job["ID"]), "plan",
                                            method="post", body={"Job": job}, retry=False,
                                            timeout=min(PROBE_TIMEOUT_S, self.config.request_timeout_s))
        except NomadError as error:
            logger.debug("could not plan Nomad job %s: %s", job["ID"], error)
            return None
        return answer.status in (401, 403)

    async def _probe_token(self) -> None:
        """While the token is refused: plan the refused job again, at most every TOKEN_PROBE_S; allowed, the
        attempts that wait are registered and the launcher claims again."""
        async with self._token_check:
            refused = self._token_refused
            if refused is None or time.monotonic() - refused.probed < TOKEN_PROBE_S / 2:
                return
            refused.probed = time.monotonic()
            still = await (self._scale_refused(refused.job) if refused.disabled else self._plan_refused(refused.job))
            if still is not False:
                return
            self._token_refused = None
            # (the registration's refusal is over too: with no attempt to register after it, hrwsi status said
            # for up to PROBLEM_FORGOTTEN_S that Nomad refused the token)
            self.client.forget_refusal("jobs")
        logger.info("Nomad takes the launcher's jobs again (%s, since %s UTC): attempts are registered again",
                    "its scheduler configuration rejected registrations" if refused.disabled
                    else "a plan was refused for its token", f"{refused.since:%H:%M:%S}")

    async def _scale_refused(self, job: dict) -> bool | None:
        """Whether Nomad still rejects registrations (RejectJobRegistration; None: no answer): a scale of a job that
        is not there, which Job.Scale answers 403 REGISTRATION_DISABLED while it holds, and 404 after, before it
        looks for the job (nomad/job_endpoint.go Job.Scale: the capability, registrationsAreAllowed, the lookup).
        A plan is taken whatever that setting, and the scheduler configuration needs operator:read."""
        absent = f"{job['ID']}-hrwsi-probe"  # (no attempt's ID ends so: a job that is never there)
        try:
            answer = await self.client.call(f"ask whether Nomad takes registrations (scale {absent})", "job",
                                            quote_id(absent), "scale", method="post", retry=False,
                                            body=scale_body(absent, None, "hrwsi: are registrations taken again?"),
                                            timeout=min(PROBE_TIMEOUT_S, self.config.request_timeout_s))
        except NomadError as error:
            logger.debug("could not ask whether Nomad takes registrations: %s", error)
            return None
        return answer.status != 404

    def _refusal_of(self, spec: JobSpec, response: NomadResponse, text: str) -> Exception:
        """What a registration Nomad refused raises: AttemptLost for a setting of the launcher's, else a
        NomadError (`unavailable` when it is Nomad's state, not the job's)."""
        setting = refused_setting(text) if response.status == 500 else None
        if setting is not None:
            # The namespace, node pool or region checked at start was deleted since: every job is refused,
            # whatever the routine (charged to it, the routine was held: found by exploratory testing).
            one_line = " ".join(text.split())
            self._refused_for_the_launcher(
                f"Nomad refuses every job of the launcher: {one_line} ({setting} names what Nomad does not have "
                f"now); create it again or change {setting} and restart the launcher")
            return AttemptLost("backend_unavailable", f"Nomad refused job {spec.job_id}: {one_line}; {setting} names "
                               "what Nomad does not have (deleted since the launcher started?): not the routine's "
                               "fault, retried as a new attempt")
        if response.status in (401, 403):
            refused = NomadError(response.status, f"Nomad refused the launcher's token (HTTP {response.status}: "
                                 f"{text}) registering job {spec.job_id}: check NOMAD_TOKEN and its ACL policy")
        else:
            refused = NomadError(response.status, f"Nomad refused job {spec.job_id} (HTTP {response.status}): {text}")
        # (a validation error is a 500 too: only what is_transient names is Nomad's state, not the job's)
        refused.unavailable = response.status in UNAVAILABLE_STATUSES or is_transient("post", response)
        return refused

    def _is_this_claims(self, job: dict, spec: JobSpec, claim: str | None) -> bool:
        """Whether a job found on spec.job_id is this claim's own registration: a launcher that crashed
        between registering it and recording it, a registration whose answer was lost, an adoption (ADR
        0002): when it carries this claim's token. An adoption of a row claimed before migration 0080
        (no token; its job registered by the hrwsi before, which left it running) judges it as that
        hrwsi did (_is_ours)."""
        if claim is None:
            return self._is_ours(job, spec)
        return (job.get("Meta") or {}).get(CLAIM_META) == claim

    def _is_ours(self, job: dict, spec: JobSpec) -> bool:
        """Whether a job without a claim token found on an attempt's ID that has none either was registered
        by this installation (its Meta names it). One without that key was registered by an hrwsi before it:
        ours when its task, attempt and input are this attempt's, or when this attempt names no installation
        either (its output directory not laid out by hrwsi.dispatch)."""
        meta = job.get("Meta") or {}
        if INSTALLATION_META in meta:
            return (meta.get(INSTALLATION_META) or "") == (spec.installation or "")
        return spec.installation is None or \
            (meta.get("hrwsi_task_id"), meta.get("hrwsi_attempt"), meta.get("hrwsi_input_path")) == \
            (str(spec.task_id), str(spec.attempt), spec.input_path)

    def _whose(self, job: dict, spec: JobSpec) -> str:
        """What a job this database does not know, found on an attempt's ID, most likely is, for ops."""
        meta = job.get("Meta") or {}
        submitted = job.get("SubmitTime")
        when = (f", registered {datetime.fromtimestamp(submitted / 1e9, UTC):%Y-%m-%d %H:%M:%S} UTC"
                if isinstance(submitted, int) and submitted > 0 else "")
        what = f"status {job.get('Status') or 'unknown'}{when}"
        theirs = meta.get(INSTALLATION_META)
        if theirs and theirs != (spec.installation or ""):
            self._met_another_installation(spec.installation, [theirs], str(job.get("ID") or spec.job_id))
            return (f"{what}, by another hrwsi installation ({theirs}) that registers its jobs in this namespace: "
                    "each installation needs a Nomad namespace of its own (NOMAD_NAMESPACE)")
        if theirs or "hrwsi_task_id" in meta:
            return (f"{what}, by this installation for task {meta.get('hrwsi_task_id', '?')} attempt "
                    f"{meta.get('hrwsi_attempt', '?')} of input {meta.get('hrwsi_input_path', '?')!r}: the database "
                    "was restored from a backup older than that job (or a copy of HRWSI_HOME uses this namespace)")
        return (f"{what}, not by hrwsi: the database was restored from a backup older than that job, or "
                "something else registers jobs named so in this namespace")

    def _say_taken(self, job: dict, spec: JobSpec, own_id: str) -> None:
        """One line for ops: which Nomad job ID a job this database does not know holds, what that means,
        and the ID the attempt runs under instead."""
        self._remember(self._not_ours, spec.job_id)
        logger.warning("task %d (%s) attempt %d: Nomad job ID %s in namespace %r was already taken by a job this "
                       "database does not know (%s); that job is left untouched (neither followed, stopped nor "
                       "purged) and the attempt runs as Nomad job %s instead, charged to nothing",
                       spec.task_id, spec.routine, spec.attempt, spec.job_id, self.config.namespace,
                       self._whose(job, spec), own_id,
                       extra=task_fields(spec.task_id, own_id, spec.routine, attempt=spec.attempt))

    def _refuse_a_job_not_ours(self, job: dict, spec: JobSpec) -> None:
        """A job this database does not know holds the attempt's ID, and the attempt has no ID of its own
        to go to (no claim token: a spec claimed before migration 0080), or that one is taken too.
        Following it would record its outcome as this attempt's, purging it would delete a job not ours:
        neither; the attempt is lost (not the routine's fault) and the task retried as a new attempt."""
        self._remember(self._not_ours, spec.job_id)
        raise AttemptLost("backend_unavailable", f"Nomad job {spec.job_id} in namespace {self.config.namespace!r} "
                          f"is not this attempt's ({self._whose(job, spec)}): neither followed nor purged; this "
                          "attempt is lost, not the routine's fault, and the task is retried as a new attempt")

    # -- a namespace shared with another installation ----------------------------------------------------
    def _watch_namespace(self, ours: str) -> None:
        """List the namespace's jobs now and, while another installation's are among them, every
        SHARED_NAMESPACE_CHECK_S (one task at a time)."""
        if self._namespace_watch is None or self._namespace_watch.done():
            self._namespace_watch = self._background.spawn(self._watch_the_namespace(ours), "watch-namespace")

    def _met_another_installation(self, ours: str | None, theirs: list[str], job_id: str) -> None:
        """Another installation's job was met in our namespace (on an attempt's ID, or listed): said by `problem`
        until a listing of the namespace finds none of another installation's jobs."""
        if not ours:
            return
        if self._shared is None:
            logger.warning("%s", self._shared_text(_SharedNamespace(ours, theirs, job_id, datetime.now(UTC))))
        since = self._shared.since if self._shared is not None else datetime.now(UTC)
        self._shared = _SharedNamespace(ours, theirs, job_id, since)
        self._watch_namespace(ours)

    async def _watch_the_namespace(self, ours: str) -> None:
        # (a job list's stubs carry Meta only when asked, meta=true: command/agent/job_endpoint.go jobListRequest,
        # nomad/structs/structs.go Job.Stub)
        while True:
            try:
                response = await self.client.call("list Nomad jobs with their Meta", "jobs",
                                                  params={"prefix": "hrwsi-", "meta": "true"}, retry=False)
            except NomadError as error:
                logger.debug("could not list Nomad's jobs to tell whether another installation's are here: %s", error)
                response = None
            if response is not None and response.status == 200:
                theirs = {}
                for job in response.json() or []:
                    installation = (job.get("Meta") or {}).get(INSTALLATION_META)
                    if installation and installation != ours:
                        theirs.setdefault(installation, job.get("ID") or "?")
                if theirs:
                    self._met_another_installation(ours, sorted(theirs), next(iter(theirs.values())))
                elif self._shared is not None:
                    logger.info("Nomad namespace %r holds no job of another hrwsi installation any more (they were "
                                "there since %s UTC)", self.config.namespace, f"{self._shared.since:%Y-%m-%d %H:%M:%S}")
                    self._shared = None
            if self._shared is None and response is not None:
                return  # (not shared, or not allowed to list: a job met on an attempt's ID watches again)
            await asyncio.sleep(SHARED_NAMESPACE_CHECK_S)

    def _shared_text(self, shared: _SharedNamespace) -> str:
        """What a namespace shared with another installation means, and what to do, in one line."""
        others = ", ".join(shared.theirs)
        one = "another hrwsi installation" if len(shared.theirs) == 1 else f"{len(shared.theirs)} other hrwsi installations"
        return (f"{one} ({others}) registers its jobs in Nomad namespace {self.config.namespace!r} too (job "
                f"{shared.job_id}; this installation is {shared.ours}): job IDs name no installation, so their jobs "
                "hold IDs this installation's attempts are given (each such attempt runs under an ID of its own, "
                "-c<8 hex digits>) and Nomad's UI, `nomad job status` and the namespace's quotas mix both; give each "
                "installation a namespace of its own: create one (nomad namespace apply <name>), stop one "
                "installation's launchers, let their jobs end, and start them with NOMAD_NAMESPACE=<name> (the first "
                "moves the installation and says so)")

    async def read_jobs_index(self) -> None:
        """Nomad's index of jobs now, the floor a retried registration compares with
        (_may_register_again) until a registration answers one; read before the first registration."""
        try:
            response = await self.client.jobs_index(retry=False)
        except NomadError as error:
            logger.debug("could not read Nomad's index of jobs: %s", error)
            return
        if response.status == 200:
            self._jobs_index_floor = response.index

    async def _may_register_again(self, job_id: str) -> bool:
        """Before registering an attempt's job again after a try that failed, which may have been
        carried out all the same (its answer lost to a timeout or a cut connection): look for the job.
        Found: that try registered it (_AlreadyRegistered). Absent while Nomad's index of jobs is
        below the last registration's (Nomad lost or restored its state meanwhile, a fresh cluster
        starts its index over): the try may have run in the state that is gone, and registering it
        again could run the attempt twice; it is lost (AttemptLost) and the task retried as a new
        attempt. Absent otherwise: register again (EnforceIndex still refuses a late first try).
        Unanswered: ask again before the next retry."""
        # The floor as the look leaves: a registration answered while it is on its way may carry an
        # index above the one the look was answered with, though no state was lost (chaos63).
        floor = self._jobs_index_floor
        try:
            response = await self.client.call(f"look for Nomad job {job_id}", "jobs", params={"prefix": job_id},
                                              retry=False)
        except NomadError:
            return False
        if response.status != 200:
            return not is_transient("get", response)  # (not allowed to list, say: register as before)
        if any(job.get("ID") == job_id for job in response.json() or []):
            raise _AlreadyRegistered
        if response.index < floor:
            lost = (f"Nomad's state was lost or restored (its index of jobs {response.index}, below the "
                    f"{floor} it had reached) while job {job_id} was being registered: "
                    "the attempt may have run in the state that is gone; not registered again")
            self._jobs_index_floor = response.index
            raise AttemptLost("backend_lost_track", lost)
        return True

    async def wait(self, spec: JobSpec, backend_job_id: str, on_progress: ProgressCallback) -> JobOutcome:
        """Follow the attempt's job. One this backend did not register nor find with the row's claim token (an
        adoption without a new registration) is read first: a job without the token is one this database does
        not know (the attempt's own runs elsewhere, or is gone), and following it would record its outcome as
        this attempt's and then purge it (found by review). It is left alone and the attempt lost."""
        checked = backend_job_id in self._checked
        self._checked.pop(backend_job_id, None)
        if spec.claim and not checked:
            job = await self._read_job_when_answered(backend_job_id)
            if job is not None and not self._is_this_claims(job, spec, spec.claim):
                self._remember(self._not_ours, backend_job_id)
                message = (f"Nomad job {backend_job_id} in namespace {self.config.namespace!r} is not this attempt's "
                           f"({self._whose(job, spec)}): neither followed, stopped nor purged; no job of Nomad's "
                           "carries this attempt's claim: lost, retried as a new attempt")
                logger.warning("task %d (%s) attempt %d: %s", spec.task_id, spec.routine, spec.attempt, message,
                               extra=task_fields(spec.task_id, backend_job_id, spec.routine, attempt=spec.attempt))
                return JobOutcome("lost", None, message, None, datetime.now(UTC), fault="backend_lost_track")
        return await self._following.follow(spec, backend_job_id, on_progress)

    async def cancel(self, spec: JobSpec, backend_job_id: str) -> None:
        """Stop the attempt's job (deregister without purge); its follower then ends 'cancelled'. Never a job this
        database does not know: the launcher's spec names the row's first ID until the attempt is known to run
        under the claim's own (during its registration, the retries, the read that finds that job), and an
        operator's cancel or a stranded job's stop then stopped the job that held it (found by review)."""
        attempts = await self._attempts_job(spec, backend_job_id)
        if attempts is None:
            logger.warning("task %d attempt %d: not stopping Nomad job %s: a job this database does not know holds "
                           "that ID (left alone), and none carrying this attempt's claim was found",
                           spec.task_id, spec.attempt, backend_job_id,
                           extra=task_fields(spec.task_id, backend_job_id, spec.routine, attempt=spec.attempt))
            return
        backend_job_id = attempts
        self._following.note_cancelled(backend_job_id)
        response = await self.client.call(f"stop Nomad job {backend_job_id}", "job", quote_id(backend_job_id),
                                          method="delete")
        if response.status not in (200, 404):
            raise NomadError(response.status, f"Nomad refused to stop {backend_job_id}: {response.text.strip()}")
        self._following.refresh(backend_job_id)  # read its end now that the stop is registered

    async def _attempts_job(self, spec: JobSpec, backend_job_id: str) -> str | None:
        """The job ID the attempt's stop goes to: backend_job_id, unless a job this database does not know holds
        it (found so by the registration, or without the row's claim token now); then the claim's own ID if its
        job carries the token, else None. Nothing on the ID: backend_job_id (the stop is harmless)."""
        if spec.claim is None:
            return None if backend_job_id in self._not_ours else backend_job_id
        if backend_job_id not in self._not_ours:
            job = await self._read_job(backend_job_id)
            if job is None or self._is_this_claims(job, spec, spec.claim):
                return backend_job_id
        own_id = claims_own_job_id(backend_job_id, spec.claim)
        if own_id != backend_job_id:
            job = await self._read_job(own_id)
            if job is not None and self._is_this_claims(job, spec, spec.claim):
                return own_id
        return None

    async def forget(self, backend_job_id: str) -> None:
        """The launcher stored the outcome: purge the finished job from Nomad (HRWSI_NOMAD_PURGE), after
        purge_delay_s. Until then the dead job keeps its ID taken, so a registration of it that timed out
        on our side but reaches Nomad late is refused (EnforceIndex) instead of running the attempt again.
        A purge still pending when the launcher stops is left to Nomad's own job GC."""
        if backend_job_id in self._following.followers:
            logger.warning("not purging Nomad job %s: it is still being followed", backend_job_id)
            return
        self._checked.pop(backend_job_id, None)
        self._on_first_paths.pop(backend_job_id, None)
        if backend_job_id in self._not_ours:  # a job this database does not know on our ID: never ours to purge
            del self._not_ours[backend_job_id]
            return
        self._following.forget(backend_job_id)
        if not self.config.purge:
            return
        self._background.spawn(self._purge_later(backend_job_id), f"purge-{backend_job_id}")

    async def worker_activity(self) -> dict[str, bool]:
        """{node name: ready, eligible and not draining} of the nodes in our node pool: a worker is its node.
        A token without node:read (HTTP 401/403) is said in one warning, again at most every
        NODES_REFUSED_REPEAT_S while it lasts, and when it is over; meanwhile nothing changes (an empty
        answer): a traceback every 15 s said nothing of the cause (found by exploratory testing)."""
        try:
            nodes = await self.nodes()
        except NomadError as error:
            if error.status not in (401, 403):
                raise
            now = time.monotonic()
            if self._nodes_refused is None or now - self._nodes_refused[0] >= NODES_REFUSED_REPEAT_S:
                since = self._nodes_refused[1] if self._nodes_refused is not None else datetime.now(UTC)
                logger.warning("Nomad refuses to list its nodes (HTTP %d, since %s UTC): the launcher's token needs "
                               "node:read (a `node { policy = \"read\" }` rule); meanwhile workers' activity is not "
                               "followed (a node that goes down or is drained stays an active worker, its planned "
                               "tasks wait)", error.status, f"{since:%H:%M:%S}")
                self._nodes_refused = (now, since)
            return {}
        if self._nodes_refused is not None:
            logger.info("Nomad lists its nodes again (refused since %s UTC): workers' activity is followed again",
                        f"{self._nodes_refused[1]:%H:%M:%S}")
            self._nodes_refused = None
        return {n["Name"]: node_is_active(n) for n in nodes if n.get("Name") and in_pool(n, self.config.node_pool)}

    def problem(self) -> tuple[str, datetime] | None:
        """Nomad out of reach, overloaded or refusing the token, or refusing every job for a setting of the
        launcher's, and what happens to the jobs meanwhile; and, while it is so, another installation's jobs in
        this namespace (it was said only in the warning of each attempt whose ID one of them held: found by
        exploratory testing)."""
        found = [p for p in (self._nomads_problem(), self._shared_problem()) if p is not None]
        if not found:
            return None
        return "; and ".join(text for text, _ in found), min(since for _, since in found)

    def _shared_problem(self) -> tuple[str, datetime] | None:
        shared = self._shared
        return None if shared is None else (self._shared_text(shared), shared.since)

    def _nomads_problem(self) -> tuple[str, datetime] | None:
        if (token := self._token_refused) is not None:
            return (f"{token.text}; meanwhile the attempts it had claimed are given back unregistered (lost, "
                    f"backend_unavailable, their tasks retried, not charged to the routine) and {self._probe_said()}"
                    ), token.since
        found = self.client.problem()
        refusal = self._refusal
        if found is None and refusal is not None and time.monotonic() - refusal[2] <= PROBLEM_FORGOTTEN_S:
            return (f"{refusal[0]}; meanwhile each attempt it refuses is lost (backend_unavailable) and its task "
                    "retried, not charged to the routine"), refusal[1]
        if found is None:
            return None
        if found.refused_endpoint == "nodes":
            return (f"{found.text}; it needs node:read to list the nodes: meanwhile workers' activity is not "
                    "followed (a node down or drained stays an active worker)"), found.since
        if found.refused_endpoint in ("job", "jobs") and found.refused_method == "get":
            # (a token that may submit but not read: its attempts run, and are recorded once they can be read)
            meanwhile = (f"it needs read-job and list-jobs in namespace {self.config.namespace or 'default'} to follow "
                         "the jobs: meanwhile the attempts submitted keep their state, unfollowed, and are read "
                         f"again every {self._following.refused_read_retry_s:g} s (none is lost or retried for it)")
        elif found.refused_endpoint == "client.stream_logs":
            meanwhile = ("it needs read-logs to keep the routines' output: meanwhile each attempt's log says so instead; "
                         "the attempts themselves are followed as before")
        elif found.refused_endpoint is not None:
            meanwhile = ("an attempt it refuses is lost (backend_unavailable) and its task retried, "
                         "not charged to the routine")
        else:
            meanwhile = (f"each call is retried for {self.config.retry_for_s:.0f} s; an attempt not registered by "
                         "then is lost (backend_unavailable) and its task retried, not charged to the routine (one whose "
                         "registration Nomad may have carried out waits for Nomad's answer instead); running jobs are "
                         "followed again once Nomad answers")
        return f"{found.text}; {meanwhile}", found.since

    def out_of_reach(self) -> bool:
        """Nomad's latest calls got no answer (NomadProblem.unreachable): a refused token or a setting
        Nomad refuses is an answer, said by `problem` and handled where it is met."""
        found = self.client.problem()
        return found is not None and found.unreachable

    def submissions_refused(self) -> bool:
        """Nomad refused a registration for the launcher's token and a plan of that job too (_token_refused_now):
        until a plan of it is taken (probe), each attempt submitted is given back unregistered (_given_back)."""
        return self._token_refused is not None

    async def probe(self) -> None:
        """Whether Nomad answers again: its index of jobs, not retried, within PROBE_TIMEOUT_S (an
        answer clears the client's problem, no answer renews it); while it refuses the launcher's token,
        whether it takes a plan of the job refused (submissions_refused; that registers nothing)."""
        if self._token_refused is not None and not self.out_of_reach():
            await self._probe_token()
            return
        try:
            await self.client.jobs_index(retry=False, timeout=min(PROBE_TIMEOUT_S, self.config.request_timeout_s))
        except NomadError as error:
            logger.debug("Nomad is still out of reach: %s", error)

    def ui_link(self, backend_job_id: str) -> str | None:
        return f"{public_address(self.config.address)}/ui/jobs/{quote(backend_job_id, safe='')}@{self.config.namespace}"

    async def close(self) -> None:
        if self.client.closed:
            return
        self.client.closed = True
        await self._following.close()
        self.client.close()

    # -- more of Nomad --------------------------------------------------------------------------------
    async def _purge_later(self, backend_job_id: str) -> None:
        await asyncio.sleep(self.config.purge_delay_s)
        try:
            response = await self.client.call(f"purge Nomad job {backend_job_id}", "job", quote_id(backend_job_id),
                                              method="delete", params={"purge": "true"})
        except NomadError as error:
            logger.warning("%s; Nomad's job GC will remove job %s", error, backend_job_id)
            return
        if response.status not in (200, 404):
            logger.warning("Nomad refused to purge job %s (HTTP %d: %s); Nomad's job GC will remove it",
                           backend_job_id, response.status, response.text.strip()[:200])
            return
        logger.debug("purged Nomad job %s", backend_job_id)

    async def list_jobs(self, prefix: str = "hrwsi-") -> dict[str, str]:
        """Every job whose ID starts with prefix in our namespace: {job ID: pending|running|dead}."""
        response = await self.client.call("list Nomad jobs", "jobs", params={"prefix": prefix})
        if response.status != 200:
            raise NomadError(response.status, f"could not list Nomad jobs: {response.text.strip()}")
        return {job["ID"]: job["Status"] for job in response.json() or [] if job["ID"].startswith(prefix)}

    async def nodes(self) -> list[dict]:
        """GET /v1/nodes?resources=true: every client node with NodeResources and ReservedResources."""
        return await list_nodes(self.client)

    async def _flavour_of(self, worker: str | None) -> str | None:
        """The node class of the planned worker (flavour mode), from a node list cached for 60 s."""
        if not worker:
            return None
        loop = asyncio.get_running_loop()
        if self._nodes_cache is None or loop.time() - self._nodes_cache[0] > 60:
            self._nodes_cache = (loop.time(), await self.nodes())
        for node in self._nodes_cache[1]:
            if node.get("Name") == worker and node.get("NodeClass"):
                return node["NodeClass"]
        logger.warning("flavour placement: Nomad node %s has no node class; pinning the job to it instead", worker)
        return None
