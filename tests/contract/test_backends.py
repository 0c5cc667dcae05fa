"""hrwsi.backends: every backend keeps the contract the launcher relies on (backends/base.py, `Backend`).

One suite, parametrised over the adapters (local, dry-run, and nomad against the Nomad API emulator,
the one test double), asserting behaviour, not only that the attributes exist: the launcher uses
nothing a backend does not declare, so what is checked here is all it may count on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from hrwsi.backends import BACKEND_NAMES, make_backend
from hrwsi.backends.base import Backend, JobOutcome, JobSpec, discover_products
from hrwsi.backends.dry_run import DryRunBackend
from hrwsi.backends.local import LocalBackend
from hrwsi.backends.nomad import NomadBackend, NomadConfig
from hrwsi.settings import Settings
from hrwsi.testing.nomad_emulator import EmulatedNode, NomadEmulator
from tests.contract.conftest import script_until_exists

GUARD_S = 60.0  # a liveness guard against hangs, not a timing assertion
NODE = "conformance-node"
FINAL_STATES = ("processed", "internal_error", "external_error", "lost", "cancelled")


@dataclass
class Adapter:
    backend: Backend
    work: Path
    runs_commands: bool  # dry-run runs nothing: every attempt succeeds at once
    counter: int = 0

    def spec(self, script: str) -> JobSpec:
        self.counter += 1
        base = self.work / f"job-{self.counter}"
        return JobSpec(job_id=f"hrwsi-conformance-{self.backend.name}-{self.counter}-1", task_id=self.counter,
                       attempt=1, routine="conformance", condition="conformance", input_path=str(base / "in.json"),
                       tile=None, worker=NODE, command=("/bin/sh", "-c", script), image=None, cpu=0.1, ram_mb=64,
                       storage_mb=200, output_dir=str(base / "out"), log_path=str(base / "logs" / "job.log"))


class Progress:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.running = asyncio.Event()

    async def __call__(self, state: str, reason: str) -> None:
        self.calls.append((state, reason))
        if state == "running":
            self.running.set()


@pytest.fixture(params=BACKEND_NAMES)
async def adapter(request, tmp_path):
    if request.param == "local":
        backend: Backend = LocalBackend(max_parallel_jobs=4)
        yield Adapter(backend, tmp_path, runs_commands=True)
    elif request.param == "dry-run":
        backend = DryRunBackend()
        yield Adapter(backend, tmp_path, runs_commands=False)
    else:
        nodes = [EmulatedNode(NODE, cpu_mhz=4000, memory_mb=4096, disk_mb=20_000)]
        async with NomadEmulator(nodes, event_heartbeat=0.2, work_dir=tmp_path / "emulator") as emulator:
            backend = NomadBackend(NomadConfig(address=emulator.address, retry_for_s=10.0, purge_delay_s=0.1))
            yield Adapter(backend, tmp_path, runs_commands=True)
            await backend.close()
        return
    await backend.close()


async def run(adapter: Adapter, script: str, progress: Progress | None = None) -> tuple[JobSpec, JobOutcome]:
    spec = adapter.spec(script)
    assert await adapter.backend.submit(spec) == spec.job_id
    outcome = await asyncio.wait_for(adapter.backend.wait(spec, spec.job_id, progress or Progress()), GUARD_S)
    return spec, outcome


def test_every_backend_declares_the_whole_contract(adapter: Adapter):
    backend = adapter.backend
    assert isinstance(backend, Backend)
    assert backend.name in BACKEND_NAMES
    assert type(make_backend(backend.name, Settings())) is type(backend)  # the registry builds this adapter
    for flag in ("resubmit_is_idempotent", "jobs_outlive_launcher", "reports_worker_activity"):
        assert isinstance(getattr(backend, flag), bool), flag


async def test_a_backend_that_answers_is_not_out_of_reach_and_a_probe_of_it_changes_nothing(adapter: Adapter):
    # (the launcher claims no new work while its backend is out of reach: Backend.out_of_reach)
    assert adapter.backend.out_of_reach() is False
    await asyncio.wait_for(adapter.backend.probe(), GUARD_S)
    assert adapter.backend.out_of_reach() is False and adapter.backend.problem() is None
    # (nor while it refuses every job of the launcher's: Backend.submissions_refused)
    assert adapter.backend.submissions_refused() is False


async def test_a_successful_attempt_ends_processed_with_its_times(adapter: Adapter):
    progress = Progress()
    spec, outcome = await run(adapter, 'echo made > "$HRWSI_OUTPUT_DIR/product.txt"', progress)
    assert (outcome.state, outcome.exit_code) == ("processed", 0), outcome.message
    assert outcome.finished_at is not None
    assert all(state in ("queued", "running") for state, _ in progress.calls)
    if adapter.runs_commands:
        assert (Path(spec.output_dir) / "product.txt").read_text() == "made\n"


async def test_submit_prepares_the_output_and_log_directories(adapter: Adapter):
    if not adapter.runs_commands:
        pytest.skip("the dry-run backend writes nothing")
    spec = adapter.spec("exit 0")
    await adapter.backend.submit(spec)
    assert Path(spec.output_dir).is_dir() and Path(spec.log_path).parent.is_dir()
    await asyncio.wait_for(adapter.backend.wait(spec, spec.job_id, Progress()), GUARD_S)


async def test_a_first_start_prepares_the_attempt_and_never_runs_in_an_output_directory_in_use(adapter: Adapter):
    # The launcher's only preparation of an attempt is the backend's submit on its first start.
    if not adapter.runs_commands:
        pytest.skip("the dry-run backend writes nothing")
    spec = adapter.spec('cat "$HRWSI_MANIFEST" > "$HRWSI_OUTPUT_DIR/seen.json"')
    spec = JobSpec(**{**spec.__dict__, "manifest": '{"input": "in.json"}'})
    await adapter.backend.submit(spec, first_start=True)
    outcome = await asyncio.wait_for(adapter.backend.wait(spec, spec.job_id, Progress()), GUARD_S)
    assert outcome.state == "processed", outcome.message
    assert (Path(spec.output_dir) / "seen.json").read_text().split() == ["{", '"input":', '"in.json"', "}"]
    again = adapter.spec("exit 0")
    Path(again.output_dir).mkdir(parents=True)
    (Path(again.output_dir) / "left-over.txt").write_text("another attempt's file")
    # Another timeline's attempt (a database restored into the same HRWSI_HOME reuses task ids): its
    # files are moved aside, kept, and the new attempt runs in an empty output directory of its own.
    await adapter.backend.submit(again, first_start=True)
    outcome = await asyncio.wait_for(adapter.backend.wait(again, again.job_id, Progress()), GUARD_S)
    assert outcome.state == "processed", outcome.message
    assert not (Path(again.output_dir) / "left-over.txt").exists()
    [aside] = Path(again.attempt_dir).parent.glob(Path(again.attempt_dir).name + ".moved-*")
    assert (aside / Path(again.output_dir).name / "left-over.txt").read_text() == "another attempt's file"


async def test_products_a_backend_reports_are_those_found_in_the_output_directory(adapter: Adapter):
    # A backend may find a processed attempt's products itself (JobOutcome.products); if it does,
    # they are what the launcher would find, refusals included.
    spec, outcome = await run(adapter, 'echo made > "$HRWSI_OUTPUT_DIR/product.txt"; '
                                       'ln -s /etc/hostname "$HRWSI_OUTPUT_DIR/link"')
    assert outcome.state == "processed", outcome.message
    if outcome.products is not None:
        found, refused = outcome.products
        assert (found, refused) == discover_products(spec.output_dir)
        assert [Path(path).name for path, _ in found] == ["product.txt"] and "is not a regular file" in refused[0]


@pytest.mark.parametrize("code, state", [(3, "internal_error"), (210, "external_error")])
async def test_an_exit_code_decides_the_outcome(adapter: Adapter, code: int, state: str):
    if not adapter.runs_commands:
        pytest.skip("the dry-run backend runs nothing: every attempt succeeds")
    _, outcome = await run(adapter, f"exit {code}")
    assert (outcome.state, outcome.exit_code) == (state, code), outcome.message


async def test_a_cancelled_attempt_ends_cancelled_and_cancel_again_is_harmless(adapter: Adapter):
    backend = adapter.backend
    spec = adapter.spec(script_until_exists(adapter.work / "never"))
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(backend.wait(spec, spec.job_id, progress))
    if adapter.runs_commands:
        await asyncio.wait_for(progress.running.wait(), GUARD_S)
        await backend.cancel(spec, spec.job_id)
        assert (await asyncio.wait_for(following, GUARD_S)).state == "cancelled"
    else:
        assert (await asyncio.wait_for(following, GUARD_S)).state in FINAL_STATES
    await backend.cancel(spec, spec.job_id)  # already over: no error
    await backend.forget(spec.job_id)
    await backend.cancel(adapter.spec("exit 0"), "hrwsi-never-submitted-1-1")  # unknown: no error
    await backend.forget("hrwsi-never-submitted-1-1")


async def test_stop_all_stops_the_jobs_only_of_a_backend_whose_jobs_die_with_the_launcher(adapter: Adapter):
    backend = adapter.backend
    if not adapter.runs_commands:
        await backend.stop_all()  # nothing runs: nothing to do, and no error
        return
    spec = adapter.spec(script_until_exists(adapter.work / "release"))
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(backend.wait(spec, spec.job_id, progress))
    await asyncio.wait_for(progress.running.wait(), GUARD_S)
    await backend.stop_all()
    if backend.jobs_outlive_launcher:
        await asyncio.sleep(0.3)
        assert not following.done()  # it runs on, for another launcher to adopt
        (adapter.work / "release").touch()
        assert (await asyncio.wait_for(following, GUARD_S)).state == "processed"
    else:
        outcome = await asyncio.wait_for(following, GUARD_S)
        assert outcome.state == "lost"  # retried, not counted as the routine's failure


async def test_worker_activity_reports_nodes_only_for_a_backend_that_has_them(adapter: Adapter):
    activity = await adapter.backend.worker_activity()
    if adapter.backend.reports_worker_activity:
        assert activity == {NODE: True}
    else:
        assert activity == {}


def test_ui_link_is_none_or_a_url_naming_the_job(adapter: Adapter):
    link = adapter.backend.ui_link("hrwsi-parent/dispatch-1-ab")
    assert link is None or (link.startswith(("http://", "https://")) and "hrwsi-parent%2Fdispatch-1-ab" in link)


async def test_close_twice_is_harmless(adapter: Adapter):
    await adapter.backend.close()
    await adapter.backend.close()


def _held_job_ids(value: object, job_ids: set[str], depth: int = 0) -> set[str]:
    """The job ids that `value` still refers to, through the containers a backend keeps (dicts,
    lists, sets, tuples and its own attributes), a few levels deep."""
    if isinstance(value, str):
        return {job for job in job_ids if job in value}
    if isinstance(value, JobSpec):
        return {value.job_id} & job_ids
    if depth >= 4:
        return set()
    if isinstance(value, dict):
        items: list = [*value.keys(), *value.values()]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    elif isinstance(value, Backend):
        items = list(vars(value).values())
    else:
        return set()
    return set().union(*(_held_job_ids(item, job_ids, depth + 1) for item in items))


async def test_a_backend_keeps_nothing_of_a_job_the_launcher_forgot(adapter: Adapter):
    # A launcher runs for months: what a backend keeps per job must go with the outcome.
    job_ids = set()
    for _ in range(3):
        spec, outcome = await run(adapter, "true")
        assert outcome.state == "processed", outcome.message
        await adapter.backend.forget(spec.job_id)
        job_ids.add(spec.job_id)
    deadline = asyncio.get_running_loop().time() + GUARD_S
    while (held := _held_job_ids(adapter.backend, job_ids)) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)  # a backend may clean up after a delay (Nomad: the purge)
    assert not held, f"{adapter.backend.name} still holds {sorted(held)}"
