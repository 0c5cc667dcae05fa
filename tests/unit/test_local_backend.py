"""hrwsi.backends.local: an attempt's outcome survives the launcher that started it.

Two LocalBackend instances play two launchers on one machine: the first starts an attempt and is
gone (its follower never runs again, as after kill -9), the second adopts the job. Real processes."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from pathlib import Path

import pytest

from hrwsi.backends import local_supervisor
from hrwsi.backends.base import AttemptLost, JobSpec
from hrwsi.backends.local import LocalBackend

GUARD_S = 30.0  # a liveness guard against hangs, not a timing assertion

# Counts its runs, waits for `release`, writes a product.
ROUTINE = ("import os, pathlib, sys, time\n"
           "attempt = pathlib.Path(os.environ['HRWSI_OUTPUT_DIR']).parent\n"
           "with open(attempt.parent / 'runs', 'a') as runs: runs.write(os.environ['HRWSI_JOB_ID'] + '\\n')\n"
           "while not (attempt.parent / 'release').exists(): time.sleep(0.05)\n"
           "(pathlib.Path(os.environ['HRWSI_OUTPUT_DIR']) / 'product.txt').write_text('made')\n")


def spec_in(work: Path, attempt: int = 1) -> JobSpec:
    attempt_dir = work / "task-1" / f"attempt-{attempt}"
    return JobSpec(job_id=f"hrwsi-adoption-1-{attempt}", task_id=1, attempt=attempt, routine="adoption",
                   condition="adoption", input_path="/in/1", tile=None, worker=None,
                   command=(sys.executable, "-c", ROUTINE), image=None, cpu=1, ram_mb=10, storage_mb=10,
                   output_dir=str(attempt_dir / "output"), log_path=str(work / "logs" / f"attempt-{attempt}.log"))


class Progress:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, state: str, reason: str) -> None:
        self.calls.append((state, reason))


async def wait_for_file(path: Path) -> None:
    async with asyncio.timeout(GUARD_S):
        while not path.exists():
            await asyncio.sleep(0.02)


async def started_and_abandoned(work: Path) -> tuple[JobSpec, asyncio.Task]:
    """A first launcher starts the attempt, then stops following it (as if killed)."""
    spec = spec_in(work)
    first = LocalBackend(max_parallel_jobs=2)
    await first.submit(spec)
    follower = asyncio.ensure_future(first.wait(spec, spec.job_id, Progress()))
    await wait_for_file(work / "task-1" / "runs")
    follower.cancel()  # the launcher is gone; its supervisor is not
    await asyncio.gather(follower, return_exceptions=True)
    return spec, follower


async def test_an_adopter_follows_a_running_attempt_and_records_its_real_outcome(tmp_path):
    spec, _ = await started_and_abandoned(tmp_path)
    adopter = LocalBackend(max_parallel_jobs=2, adopted_poll_s=0.05)
    progress = Progress()
    following = asyncio.ensure_future(adopter.wait(spec, spec.job_id, progress))
    await asyncio.sleep(0.3)
    assert not following.done(), "a running attempt is waited for, not recorded lost"
    assert progress.calls and progress.calls[0][0] == "running"
    (tmp_path / "task-1" / "release").touch()
    outcome = await asyncio.wait_for(following, GUARD_S)
    assert (outcome.state, outcome.exit_code) == ("processed", 0), outcome.message
    assert (Path(spec.output_dir) / "product.txt").read_text() == "made"
    assert (tmp_path / "task-1" / "runs").read_text() == f"{spec.job_id}\n", "it ran once"


async def test_an_adopter_records_the_outcome_of_an_attempt_that_ended_without_its_launcher(tmp_path):
    spec, _ = await started_and_abandoned(tmp_path)
    (tmp_path / "task-1" / "release").touch()
    await wait_for_file(Path(spec.attempt_dir) / local_supervisor.EXIT_FILE)
    outcome = await LocalBackend().wait(spec, spec.job_id, Progress())
    assert (outcome.state, outcome.exit_code) == ("processed", 0), outcome.message
    assert outcome.started_at is not None and outcome.finished_at >= outcome.started_at


async def test_an_attempt_never_started_is_lost_and_a_late_start_refuses_to_run_it(tmp_path):
    spec = spec_in(tmp_path)
    outcome = await LocalBackend().wait(spec, spec.job_id, Progress())  # adopted before its launcher started it
    assert (outcome.state, outcome.fault) == ("lost", "launcher_gone"), outcome.message
    assert "tombstone" in outcome.message
    late = LocalBackend()  # the paused launcher resumes and starts it
    await late.submit(spec)
    outcome = await asyncio.wait_for(late.wait(spec, spec.job_id, Progress()), GUARD_S)
    assert outcome.state == "lost" and "refused" in outcome.message
    assert not (tmp_path / "task-1" / "runs").exists(), "the attempt never ran"


async def test_an_adopter_cancels_an_attempt_it_did_not_start(tmp_path):
    spec, _ = await started_and_abandoned(tmp_path)
    adopter = LocalBackend(adopted_poll_s=0.05)
    following = asyncio.ensure_future(adopter.wait(spec, spec.job_id, Progress()))
    await asyncio.sleep(0.2)
    await adopter.cancel(spec, spec.job_id)
    outcome = await asyncio.wait_for(following, GUARD_S)
    assert outcome.state == "cancelled", outcome.message
    assert local_supervisor.read_json(str(Path(spec.attempt_dir) / local_supervisor.EXIT_FILE))["stopped"]


async def test_a_killed_routine_is_a_failure_of_the_routine_with_its_signal(tmp_path):
    spec = spec_in(tmp_path)
    spec = JobSpec(**{**spec.__dict__, "command": (sys.executable, "-c", "import os; os.kill(os.getpid(), 9)")})
    backend = LocalBackend()
    await backend.submit(spec)
    outcome = await asyncio.wait_for(backend.wait(spec, spec.job_id, Progress()), GUARD_S)
    assert (outcome.state, outcome.exit_code, outcome.fault) == ("internal_error", -9, None)
    assert "SIGKILL" in outcome.message


async def test_a_supervisor_killed_mid_run_is_lost_with_its_signal_and_its_routine_stopped(tmp_path):
    # Its exit status comes from the backend's own reaping of it (a pidfd, or polling without one).
    spec = spec_in(tmp_path)
    backend = LocalBackend()
    await backend.submit(spec)
    following = asyncio.ensure_future(backend.wait(spec, spec.job_id, Progress()))
    await wait_for_file(tmp_path / "task-1" / "runs")
    os.kill(local_supervisor.holder_pid(spec.attempt_dir), signal.SIGKILL)
    outcome = await asyncio.wait_for(following, GUARD_S)
    assert (outcome.state, outcome.fault) == ("lost", "backend_lost_track"), outcome.message
    assert "the supervisor: killed by signal SIGKILL" in outcome.message
    assert "stopped orphaned process" in outcome.message, "the routine it left running was stopped"


async def test_a_killed_supervisors_routine_is_stopped_but_another_installations_of_the_same_job_id_is_not(tmp_path):
    # Found by CI (2026-12-07): orphans were found by HRWSI_JOB_ID alone, unique within one installation only; a
    # test's launcher stopped another test's routine of the same task number, as a demo's would production's.
    spec = spec_in(tmp_path)
    other = tmp_path / "another-installation" / "task-1" / "attempt-1" / "manifest.json"
    bystander = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(60)",
        env={**os.environ, "HRWSI_JOB_ID": spec.job_id, "HRWSI_MANIFEST": str(other)})
    try:
        backend = LocalBackend()
        await backend.submit(spec)
        following = asyncio.ensure_future(backend.wait(spec, spec.job_id, Progress()))
        await wait_for_file(tmp_path / "task-1" / "runs")
        os.kill(local_supervisor.holder_pid(spec.attempt_dir), signal.SIGKILL)
        outcome = await asyncio.wait_for(following, GUARD_S)
        assert "stopped orphaned process" in outcome.message, "its own routine was stopped"
        assert bystander.returncode is None, "the other installation's routine runs on"
    finally:
        bystander.kill()
        await bystander.wait()


async def test_without_pidfds_an_attempt_is_followed_to_its_end_all_the_same(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "pidfd_open", raising=False)  # not Linux, an old kernel, or a sandbox
    spec = spec_in(tmp_path)
    (tmp_path / "task-1").mkdir(parents=True)
    (tmp_path / "task-1" / "release").touch()
    backend = LocalBackend()
    await backend.submit(spec, first_start=True)
    outcome = await asyncio.wait_for(backend.wait(spec, spec.job_id, Progress()), GUARD_S)
    assert (outcome.state, outcome.exit_code) == ("processed", 0), outcome.message
    found, refused = outcome.products
    assert [Path(path).name for path, _ in found] == ["product.txt"] and refused == []


async def test_a_stop_request_reaches_only_a_supervisor_that_has_not_been_reaped(tmp_path):
    # Once reaped, its pid may be another process's: the backend never signals it again.
    spec = spec_in(tmp_path)
    spec = JobSpec(**{**spec.__dict__, "command": (sys.executable, "-c", "pass")})
    backend = LocalBackend()
    await backend.submit(spec)
    process = backend._supervisors[spec.job_id]
    assert await asyncio.wait_for(process.wait(), GUARD_S) == 0
    with pytest.raises(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    await backend.cancel(spec, spec.job_id)  # no signal, no error
    await asyncio.wait_for(backend.wait(spec, spec.job_id, Progress()), GUARD_S)


async def test_a_submit_given_up_while_its_supervisor_starts_leaves_it_to_the_adopter_and_reaped(tmp_path):
    # A launcher whose lease lapsed cancels its followers, maybe while a supervisor is starting: that
    # supervisor runs the attempt once, an adopter settles it, and it is not left a zombie.
    spec = spec_in(tmp_path)
    first = LocalBackend()
    submitting = asyncio.ensure_future(first.submit(spec, first_start=True))
    await asyncio.sleep(0)  # the thread is starting it
    submitting.cancel()
    await asyncio.gather(submitting, return_exceptions=True)
    await wait_for_file(tmp_path / "task-1" / "runs")
    pid = local_supervisor.holder_pid(spec.attempt_dir)
    (tmp_path / "task-1" / "release").touch()
    outcome = await asyncio.wait_for(LocalBackend(adopted_poll_s=0.05).wait(spec, spec.job_id, Progress()), GUARD_S)
    assert (outcome.state, outcome.exit_code) == ("processed", 0), outcome.message
    assert (tmp_path / "task-1" / "runs").read_text() == f"{spec.job_id}\n", "it ran once"
    async with asyncio.timeout(GUARD_S):
        while Path(f"/proc/{pid}").exists():  # reaped by the first backend: no zombie left behind
            await asyncio.sleep(0.02)


async def test_an_attempt_whose_directory_cannot_be_made_is_lost_not_failed_and_nothing_runs(tmp_path):
    # Found by exploratory testing (2026-12-05): a full products disk made each attempt the
    # routine's failure ("the backend refused the job: [Errno 28] No space left on device"); its
    # tasks were terminated and the routine held. A file where the task's directory goes fails alike.
    (tmp_path / "task-1").write_text("not a directory")
    backend = LocalBackend()
    with pytest.raises(AttemptLost) as lost:
        await backend.submit(spec_in(tmp_path), first_start=True)
    assert lost.value.fault == "storage_unavailable"
    assert "could not prepare the attempt's directory" in str(lost.value) and "not the routine's fault" in str(lost.value)
    assert not (tmp_path / "runs").exists()
    await backend.close()


@pytest.mark.parametrize("first_start", [True, False])
async def test_an_attempt_whose_log_cannot_be_opened_is_lost_to_the_storage_not_failed_and_nothing_runs(tmp_path,
                                                                                                       first_start):
    # Found by exploratory testing (2026-12-06): with the log storage read-only, each attempt was
    # the routine's failure ("the backend refused the job: [Errno 30] Read-only file system: '...log'"),
    # its tasks were terminated and the routine held, where README promises a lost attempt, retried
    # and never charged. (A directory where the log goes fails to open alike, whoever runs the test.)
    spec = spec_in(tmp_path)
    Path(spec.log_path).mkdir(parents=True)
    backend = LocalBackend()
    with pytest.raises(AttemptLost) as lost:
        await backend.submit(spec, first_start=first_start)
    assert lost.value.fault == "storage_unavailable"
    assert f"could not open the attempt's log {spec.log_path}" in str(lost.value)
    assert "not the routine's fault" in str(lost.value)
    assert not (tmp_path / "task-1" / "runs").exists()
    assert backend._slots._value == backend.max_concurrent_jobs  # (its process slot given back)
    await backend.close()


@pytest.mark.parametrize("script, code, says", [
    ("kill -9 $$", -9, "killed by signal SIGKILL (the kernel's OOM killer sends it when memory runs out (or someone's "
                       "kill -9): the system log (`journalctl -k | grep -i oom`) says which; is its routine's ram_mb enough?)"),
    ("exit 137", 137, "exit code 137 (128 + 9: as a shell says of a command SIGKILL ended; the kernel's OOM killer "
                      "sends it when memory runs out"),
    ("exit 143", 143, "exit code 143 (128 + 15: as a shell says of a command SIGTERM ended)"),
    ("exit 3", 3, "exit code 3")])
async def test_a_routine_killed_as_the_oom_killer_kills_says_what_its_signal_or_exit_code_most_often_means(
        tmp_path, script, code, says):
    # Found by exploratory testing (2026-12-06): a routine killed by SIGKILL, or a shell wrapper that
    # exited 137 for it, read "killed by signal SIGKILL" / "exit code 137" and nothing more, where on
    # a local worker nothing else tells that memory ran out.
    spec = dataclasses.replace(spec_in(tmp_path), command=("/bin/sh", "-c", script))
    backend = LocalBackend()
    await backend.submit(spec, first_start=True)
    async with asyncio.timeout(GUARD_S):
        outcome = await backend.wait(spec, spec.job_id, Progress())
    assert (outcome.state, outcome.exit_code) == ("internal_error", code), outcome
    assert outcome.message.startswith(says), outcome.message
    if code == 3:
        assert outcome.message == "exit code 3"
    await backend.close()


def test_launchers_sharing_a_data_directory_share_its_site_and_others_do_not(tmp_path):
    """The site a launcher records with its lease: only launchers that see the same attempts' files
    adopt each other's local jobs. Made once, also by launchers starting at once."""
    from concurrent.futures import ThreadPoolExecutor

    from hrwsi.backends.local import SITE_FILE, local_site

    shared, other = tmp_path / "shared", tmp_path / "other"
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: local_site(str(shared)), range(16)))
    assert len(ids) == 1 and ids == {(shared / SITE_FILE).read_text().strip()}
    assert local_site(str(other)) not in ids
    assert sorted(p.name for p in shared.iterdir()) == [SITE_FILE], "nothing left aside"


async def test_a_new_attempt_on_paths_another_timeline_left_moves_them_aside_and_runs(tmp_path, caplog):
    # Found by exploratory testing: after pg_restore of an older dump into the same HRWSI_HOME, new
    # tasks reuse task ids whose attempt directories exist; "the output directory ... of a new
    # attempt is not empty; refusing to run the attempt there" was charged to the routine, five in
    # a row put it on hold. The old files are kept (renamed, a warning names both paths) and it runs.
    spec = spec_in(tmp_path)
    Path(spec.output_dir).mkdir(parents=True)
    (Path(spec.output_dir) / "old-product.txt").write_text("another timeline's")
    (Path(spec.attempt_dir) / local_supervisor.EXIT_FILE).write_text('{"exit_code": 0}')
    Path(spec.log_path).parent.mkdir(parents=True)
    Path(spec.log_path).write_text("another timeline's log\n")
    (tmp_path / "task-1" / "release").touch()
    backend = LocalBackend()
    await backend.submit(spec, first_start=True)
    outcome = await asyncio.wait_for(backend.wait(spec, spec.job_id, Progress()), GUARD_S)
    await backend.close()
    assert (outcome.state, outcome.exit_code) == ("processed", 0), outcome.message
    assert sorted(p.name for p in Path(spec.output_dir).iterdir()) == ["product.txt"]
    assert "another timeline's log" not in Path(spec.log_path).read_text()
    [aside] = (tmp_path / "task-1").glob("attempt-1.moved-*")
    assert (aside / "output" / "old-product.txt").read_text() == "another timeline's"
    [log_aside] = (tmp_path / "logs").glob("attempt-1.log.moved-*")
    assert log_aside.read_text() == "another timeline's log\n"
    moved = [r.getMessage() for r in caplog.records if "moved aside" in r.getMessage()]
    assert len(moved) == 2 and str(aside) in moved[0] and spec.attempt_dir in moved[0]


def test_a_routine_inherits_no_setting_that_may_hold_a_credential(tmp_path, monkeypatch):
    """NOMAD_ADDR with a password reached a local routine, its job log and the dashboard (found by
    exploratory testing): the settings that hold one, names of an authentication, and URLs with userinfo
    stay out, whatever their names; the rest is inherited."""
    from hrwsi.backends.local import routine_environment

    monkeypatch.setenv("NOMAD_ADDR", "http://nuser:NomadAddrPW@127.0.0.1:47405")
    monkeypatch.setenv("NOMAD_HTTP_AUTH", "nuser:NomadAuthPW")
    monkeypatch.setenv("HRWSI_WEB_TOKEN", "alice:WebTokenValue")
    monkeypatch.setenv("HTTPS_PROXY", "http://puser:ProxyPW@proxy:3128")
    monkeypatch.setenv("MIRROR", "https://ghp_SomeToken@example.org/data")
    monkeypatch.setenv("PLAIN_URL", "https://example.org/data?a=b@c")
    monkeypatch.setenv("GDAL_CACHEMAX", "512")
    environment = routine_environment(spec_in(tmp_path))
    assert not {"NOMAD_ADDR", "NOMAD_HTTP_AUTH", "HRWSI_WEB_TOKEN", "HTTPS_PROXY", "MIRROR"} & set(environment)
    assert not any("PW" in value or "ghp_" in value for value in environment.values())
    assert environment["GDAL_CACHEMAX"] == "512" and environment["PLAIN_URL"] == "https://example.org/data?a=b@c"


async def test_an_attempt_whose_directory_vanished_while_it_ran_is_lost_to_the_storage_not_to_its_launcher(tmp_path):
    """`mv data/products elsewhere` while jobs ran: it was "lost (launcher_gone): its launcher stopped before
    starting it; it will never start (tombstoned)" although the routine had run, and its directory was
    made again for the tombstone (found by exploratory testing)."""
    spec = spec_in(tmp_path)
    backend = LocalBackend()
    await backend.submit(spec, first_start=True)
    follower = asyncio.ensure_future(backend.wait(spec, spec.job_id, Progress()))
    await wait_for_file(tmp_path / "task-1" / "runs")
    os.rename(tmp_path / "task-1" / "attempt-1", tmp_path / "moved")
    (tmp_path / "task-1" / "release").write_text("")
    async with asyncio.timeout(GUARD_S):
        outcome = await follower
    await backend.close()
    assert (outcome.state, outcome.fault) == ("lost", "storage_unavailable"), outcome
    assert "vanished while it ran" in outcome.message and "launcher" not in outcome.message
    assert not (tmp_path / "task-1" / "attempt-1").exists()


def storage_full_under(monkeypatch, full_dir: Path) -> None:
    """os.statvfs says the storage under `full_dir` has 4 KiB left (a real full disk needs a mount)."""
    real = os.statvfs

    def statvfs(path):
        found = real(path)
        if Path(path).resolve().is_relative_to(full_dir.resolve()):
            return os.statvfs_result((found.f_bsize, found.f_frsize, found.f_blocks, 1, 1, found.f_files,
                                      found.f_ffree, found.f_favail, found.f_flag, found.f_namemax))
        return found

    monkeypatch.setattr(os, "statvfs", statvfs)


@pytest.mark.parametrize("exit_code, expected", [(1, ("lost", "storage_unavailable")), (0, ("processed", None))])
async def test_a_routine_that_fails_on_a_full_storage_is_lost_to_the_storage_not_charged_and_one_that_succeeds_stands(
        tmp_path, monkeypatch, exit_code, expected):
    """Its products' (or its log's) storage full, a routine fails writing: the failure was charged to the
    routine, and three such put it on hold, where the storage was ops' to free (found by exploratory
    testing). A routine that says it succeeded keeps its products."""
    spec = spec_in(tmp_path)
    spec = JobSpec(**{**vars(spec), "command": (sys.executable, "-c",
                                                 f"import pathlib, os; (pathlib.Path(os.environ['HRWSI_OUTPUT_DIR']) / "
                                                 f"'p.txt').write_text('x'); raise SystemExit({exit_code})")})
    storage_full_under(monkeypatch, tmp_path / "task-1")
    backend = LocalBackend()
    await backend.submit(spec, first_start=True)
    async with asyncio.timeout(GUARD_S):
        outcome = await backend.wait(spec, spec.job_id, Progress())
    await backend.close()
    assert (outcome.state, outcome.fault) == expected, outcome
    if exit_code:
        assert "is full (4096 bytes free), which most likely failed it" in outcome.message
        assert "not the routine's fault: it is retried" in outcome.message


@pytest.mark.parametrize("log_storage_full", [True, False])
async def test_a_routine_that_succeeds_while_its_logs_storage_is_full_stands_and_says_its_log_may_be_cut_short(
        tmp_path, monkeypatch, caplog, log_storage_full):
    # Found by exploratory testing (2026-12-06): with the logs' storage full, a routine that succeeded
    # was recorded processed with an empty log, and nothing said why: `hrwsi logs` showed nothing.
    spec = spec_in(tmp_path)
    spec = JobSpec(**{**vars(spec), "command": (sys.executable, "-c",
                                                 "import pathlib, os; (pathlib.Path(os.environ['HRWSI_OUTPUT_DIR']) / "
                                                 "'p.txt').write_text('x')")})
    if log_storage_full:
        storage_full_under(monkeypatch, tmp_path / "logs")
    backend = LocalBackend()
    await backend.submit(spec, first_start=True)
    async with asyncio.timeout(GUARD_S):
        outcome = await backend.wait(spec, spec.job_id, Progress())
    await backend.close()
    assert (outcome.state, outcome.fault) == ("processed", None), outcome
    said = f"its log may be cut short: the storage of {tmp_path / 'logs'} is full (4096 bytes free)"
    if log_storage_full:
        assert outcome.message == f"exit code 0; {said}", outcome.message
        assert any(said in r.getMessage() and r.levelname == "WARNING" for r in caplog.records), caplog.text
    else:
        assert outcome.message == "exit code 0" and "cut short" not in caplog.text


# Run in a mount namespace of its own whose tmpfs at argv[1] is a real storage that fills (ENOSPC): one attempt of
# a LocalBackend there (its log outside, at argv[2]), the routine argv[3] (Python), the storage filled first if
# argv[4] is "full"; its outcome as JSON.
ON_A_SMALL_STORAGE = r"""
import asyncio, json, sys
from hrwsi.backends.base import JobSpec
from hrwsi.backends.local import LocalBackend

work, log, routine, filled = sys.argv[1:5]
attempt = f"{work}/task-1/attempt-1"
if filled == "full":
    with open(f"{work}/filler", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"x" * 4096)
        except OSError:
            pass

async def progress(state, reason):
    pass

async def main():
    spec = JobSpec(job_id="hrwsi-full-1-1", task_id=1, attempt=1, routine="full", condition="full", input_path="/in/1",
                   tile=None, worker=None, command=(sys.executable, "-c", routine), image=None, cpu=1, ram_mb=10,
                   storage_mb=10, output_dir=f"{attempt}/output", log_path=log)
    backend = LocalBackend()
    try:
        await backend.submit(spec, first_start=True)
        outcome = await asyncio.wait_for(backend.wait(spec, spec.job_id, progress), 30)
    finally:
        await backend.close()
    print(json.dumps({"state": outcome.state, "fault": outcome.fault, "message": outcome.message,
                      "products": [path.rsplit("/", 1)[-1] for path, _ in (outcome.products or ([], []))[0]]}))

asyncio.run(main())
"""


def on_a_small_storage(tmp_path: Path, script: str, *arguments: str) -> dict:
    """What `script` (Python) prints last, as JSON, run with `arguments` after the path of a real 256 KiB tmpfs
    (tmp_path/small), mounted in a mount namespace of the test's own (`unshare -m` as root, `-Urm` as another user
    where user namespaces are allowed), gone with it."""
    import json
    import subprocess

    (tmp_path / "small").mkdir()
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-Urm"]
    mount = 'mount -t tmpfs -o size=256k tmpfs "$1" && shift && exec "$@"'
    if subprocess.run([*unshare, "sh", "-c", mount, "sh", str(tmp_path / "small"), "true"],
                      capture_output=True).returncode != 0:
        pytest.skip("no mount namespace can be made here to mount a small storage in")
    done = subprocess.run([*unshare, "sh", "-c", mount, "sh", str(tmp_path / "small"), sys.executable, "-c", script,
                           str(tmp_path / "small"), *arguments], capture_output=True, text=True, timeout=GUARD_S * 2)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def one_attempt_on_a_small_storage(tmp_path: Path, routine: str, *, full_before: bool = False) -> dict:
    """The outcome of ON_A_SMALL_STORAGE's attempt on a small storage (on_a_small_storage)."""
    return on_a_small_storage(tmp_path, ON_A_SMALL_STORAGE, str(tmp_path / "attempt.log"), routine,
                              "full" if full_before else "room")


def test_a_routine_that_fills_its_storage_and_succeeds_is_recorded_processed_with_its_products(tmp_path):
    """Found by fault injection (a 2 MiB tmpfs as `hrwsi up`'s data root): a routine that wrote its product to the
    storage's last blocks and exited 0 left no room for its supervisor's exit.json; the supervisor died writing
    it, the launcher logged a traceback and recorded the attempt lost ("the launcher could not follow the job:
    [Errno 28] No space left on device") and ran it again, its finished product left unregistered, taking the
    room that was missing. The supervisor keeps the outcome's room before the routine starts."""
    fills = ("import os, pathlib\n"
             "out = pathlib.Path(os.environ['HRWSI_OUTPUT_DIR'])\n"
             "free = os.statvfs(out).f_bavail * os.statvfs(out).f_frsize\n"
             "(out / 'product.bin').write_bytes(b'x' * (free - 512))\n"
             "assert os.statvfs(out).f_bavail == 0\n")
    outcome = one_attempt_on_a_small_storage(tmp_path, fills)
    assert (outcome["state"], outcome["fault"], outcome["products"]) == ("processed", None, ["product.bin"]), outcome


def test_an_attempt_whose_directory_takes_no_file_is_lost_to_the_storage_and_runs_nothing(tmp_path):
    """Its storage full before it started (its directories made, which take no room on tmpfs, but no file): the
    supervisor died on its lock's pid, the tombstone could not be written either, and the launcher's follower
    raised No space left on device (recorded lost to the launcher, not to the storage)."""
    marks = f"import pathlib; pathlib.Path({str(tmp_path / 'ran')!r}).write_text('ran')"
    outcome = one_attempt_on_a_small_storage(tmp_path, marks, full_before=True)
    assert (outcome["state"], outcome["fault"]) == ("lost", "storage_unavailable"), outcome
    assert "takes no file" in outcome["message"] and "ran nothing" in outcome["message"], outcome
    assert "its storage is full (0 bytes free)" in outcome["message"], outcome
    assert not (tmp_path / "ran").exists()


def test_a_supervisor_killed_on_a_full_storage_is_lost_to_the_storage_not_to_a_traceback(tmp_path):
    """Killed (the OOM killer, an operator's kill -9) once the routine filled the storage: no tombstone could be
    written, and the follower raised No space left on device out of the launcher. None is needed: this launcher's
    own supervisor ended, and no other starts the attempt."""
    fills_then_kills = ("import os, pathlib, signal\n"
                        "out = pathlib.Path(os.environ['HRWSI_OUTPUT_DIR'])\n"
                        "with open(out / 'product.bin', 'wb', buffering=0) as product:\n"
                        "    try:\n"
                        "        while True: product.write(b'x' * 4096)\n"
                        "    except OSError: pass\n"
                        "os.kill(os.getppid(), signal.SIGKILL)\n")
    outcome = one_attempt_on_a_small_storage(tmp_path, fills_then_kills)
    assert (outcome["state"], outcome["fault"]) == ("lost", "storage_unavailable"), outcome
    assert outcome["message"].startswith("its supervisor ended with signal SIGKILL and no outcome, and its attempt "
                                         "directory "), outcome
    assert "takes no file (No space left on device)" in outcome["message"], outcome


# An adopter's follow of an attempt its launcher prepared but never started (paused, say), on a storage full from
# then on (argv[1], a tmpfs; the filler argv[2]), made room only once the adopter said it waits; its outcome and what
# it said, as JSON.
ADOPTED_ON_A_FULL_STORAGE = r"""
import asyncio, json, os, sys
from hrwsi.backends.base import JobSpec, prepare_attempt
from hrwsi.backends.local import LocalBackend

work, filler = sys.argv[1:3]
spec = JobSpec(job_id="hrwsi-full-1-1", task_id=1, attempt=1, routine="full", condition="full", input_path="/in/1",
               tile=None, worker=None, command=("true",), image=None, cpu=1, ram_mb=10, storage_mb=10,
               output_dir=f"{work}/task-1/attempt-1/output", log_path=f"{work}/attempt.log")
prepare_attempt(spec)
with open(filler, "wb", buffering=0) as room:
    try:
        while True:
            room.write(b"x" * 4096)
    except OSError:
        pass
said = []

async def progress(state, reason):
    said.append(reason)

async def main():
    backend = LocalBackend(adopted_poll_s=0.05)
    follower = asyncio.ensure_future(backend.wait(spec, spec.job_id, progress))
    while not said and not follower.done():
        await asyncio.sleep(0.02)
    os.remove(filler)  # room made
    outcome = await asyncio.wait_for(follower, 30)
    await backend.close()
    print(json.dumps({"state": outcome.state, "fault": outcome.fault, "said": said,
                      "tombstone": os.path.exists(f"{work}/task-1/attempt-1/tombstone.json")}))

asyncio.run(main())
"""


def test_an_adopter_that_cannot_tombstone_an_attempt_on_a_full_storage_waits_for_room_instead_of_recording_it_lost(
        tmp_path):
    """An attempt its launcher prepared and never started (paused past its lease), adopted while its storage is
    full: settling it could not write its tombstone, the follower raised No space left on device and the attempt
    was recorded lost without one, which its launcher, resuming once room was made, would have started beside the
    retry. The adopter now waits for room, says so, then tombstones it."""
    outcome = on_a_small_storage(tmp_path, ADOPTED_ON_A_FULL_STORAGE, str(tmp_path / "small" / "filler"))
    assert (outcome["state"], outcome["fault"], outcome["tombstone"]) == ("lost", "launcher_gone", True), outcome
    assert outcome["said"] == ["adopted; it cannot be settled until its attempt directory takes a file (No space left "
                               "on device): a full or read-only storage?"], outcome


def test_a_full_storage_is_told_only_for_a_routine_that_failed_and_a_full_log_storage_too(tmp_path, monkeypatch):
    from hrwsi.backends.base import output_directory_problem

    (tmp_path / "out").mkdir()
    (tmp_path / "logs").mkdir()
    storage_full_under(monkeypatch, tmp_path / "logs")
    assert output_directory_problem(str(tmp_path / "out")) is None
    assert output_directory_problem(str(tmp_path / "out"), str(tmp_path / "out" / "x.log")) is None
    problem = output_directory_problem(str(tmp_path / "out"), str(tmp_path / "logs" / "x.log"))
    assert problem == f"the storage of {tmp_path / 'logs'} is full (4096 bytes free), which most likely failed it"


async def test_a_task_whose_product_inputs_are_gone_is_refused_for_its_own_data_and_nothing_runs(tmp_path):
    """A product file ops deleted failed the routine that read it, charged to it (found by exploratory
    testing). Only the installation's product files are checked: any other path is the routine's."""
    import json

    from hrwsi.backends.base import TaskRefused

    products = tmp_path / "data" / "products" / "inst"
    kept, gone = products / "a" / "kept.json", products / "a" / "gone.json"
    kept.parent.mkdir(parents=True)
    kept.write_text("{}")
    attempt_dir = products / "adoption" / "task-1" / "attempt-1"
    manifest = {"members": [{"path": str(kept)}, {"path": str(gone)}],
                "series": {"previous_products": [{"path": str(products / "b" / "previous.json")}]}}
    spec = dataclasses.replace(spec_in(tmp_path), input_path="/elsewhere/not/checked", output_dir=str(attempt_dir / "output"),
                               manifest=json.dumps(manifest))
    with pytest.raises(TaskRefused) as refused:
        await LocalBackend(max_parallel_jobs=1).submit(spec, first_start=True)
    assert f"{gone}" in str(refused.value) and "previous.json" in str(refused.value)
    assert "kept.json" not in str(refused.value) and "/elsewhere" not in str(refused.value)
    assert "hrwsi retry 1" in str(refused.value) and not attempt_dir.exists(), "nothing ran"


async def test_an_attempt_settled_while_its_launcher_was_paused_before_its_first_start_never_runs(tmp_path):
    # Found by chaos (a paused launcher): another launcher adopted the claimed job and tombstoned its
    # attempt; the launcher resumed, its first start moved the tombstone aside as another timeline's
    # files, and the routine ran after its attempt was recorded lost, beside the retry.
    spec = spec_in(tmp_path)
    outcome = await LocalBackend().wait(spec, spec.job_id, Progress())  # adopted before its launcher started it
    assert (outcome.state, outcome.fault) == ("lost", "launcher_gone"), outcome.message
    late = LocalBackend()  # the paused launcher resumes: its attempt's first start
    await late.submit(spec, first_start=True)
    outcome = await asyncio.wait_for(late.wait(spec, spec.job_id, Progress()), GUARD_S)
    await late.close()
    assert outcome.state == "lost" and "refused" in outcome.message, outcome.message
    assert not (tmp_path / "task-1" / "runs").exists(), "the attempt never ran"
    assert not list((tmp_path / "task-1").glob("attempt-1.moved-*")), "its tombstone stays where the supervisor reads it"


async def test_an_attempt_whose_log_reached_its_cap_says_how_many_bytes_were_dropped(tmp_path):
    spec = dataclasses.replace(spec_in(tmp_path), command=(
        sys.executable, "-c", "import sys\nfor n in range(100_000): print(f'line {n:09d} of the output')"))
    backend = LocalBackend(log_cap=2**20)
    await backend.submit(spec)
    outcome = await asyncio.wait_for(backend.wait(spec, spec.job_id, Progress()), GUARD_S)
    assert outcome.state == "processed", outcome.message
    assert "its log reached its cap: " in outcome.message and "of the 2900000 bytes it wrote" in outcome.message
    log = Path(spec.log_path).read_text()
    assert Path(spec.log_path).stat().st_size < 2**20 + 1024
    assert log.startswith("line 000000000 ") and "line 000099999 of the output\n" in log
    assert "bytes of the routine's output were dropped here" in log


async def test_an_attempt_of_a_supervisor_from_before_log_caps_is_followed_by_a_launcher_with_one(tmp_path):
    # Its documents as a supervisor of protocol 1 wrote them: no "protocol", no log fields.
    spec = spec_in(tmp_path)
    attempt = Path(spec.attempt_dir)
    (attempt / "output").mkdir(parents=True)
    (attempt / local_supervisor.STARTED_FILE).write_text('{"supervisor_pid": 1, "started_at": '
                                                         '"2026-12-06T10:00:00.000000+00:00"}')
    (attempt / local_supervisor.EXIT_FILE).write_text(
        '{"exit_code": 0, "signal": null, "started_at": "2026-12-06T10:00:00.000000+00:00", "finished_at": '
        '"2026-12-06T10:00:01.000000+00:00", "timed_out": false, "timeout_s": null, "stopped": false, '
        '"routine_pid": 2, "leftover_processes": 0, "error": null}')
    outcome = await LocalBackend(log_cap=2**20).wait(spec, spec.job_id, Progress())
    assert (outcome.state, outcome.exit_code, outcome.message) == ("processed", 0, "exit code 0")


def test_an_attempt_whose_log_lost_bytes_to_its_storage_says_how_many_with_its_exit_status():
    # Found by review: with the log's storage failing, the supervisor now writes the outcome anyway, and
    # the bytes its log could not keep are counted there.
    found = {"protocol": 2, "log_bytes": 4_000_000, "log_dropped_bytes": 0, "log_failed_bytes": 3_000_000,
             "exit_code": 3, "signal": None, "started_at": "2026-12-06T10:00:00.000000+00:00",
             "finished_at": "2026-12-06T10:00:01.000000+00:00", "timed_out": False, "timeout_s": None,
             "stopped": False, "routine_pid": 2, "leftover_processes": 0, "error": None}
    outcome = LocalBackend()._outcome("job", found)
    assert (outcome.state, outcome.exit_code) == ("internal_error", 3), outcome
    assert outcome.message.endswith("; 3000000 of the 4000000 bytes it wrote could not be kept in its log: its storage "
                                    "failed"), outcome.message


def test_an_attempt_that_ended_while_its_launcher_was_down_ends_when_it_ended_whatever_the_host_clock_did_since():
    """Its end was read from the host's wall clock as it was then (finished_at), corrected by the offset measured when
    it was recorded: a clock ten minutes fast when it ended and stepped right since put its end ten minutes after it
    was seen (found by review). Its supervisor's reading of the clock that only goes forward tells it on this boot."""
    from datetime import UTC, datetime, timedelta

    from hrwsi import database_clock

    backend = LocalBackend(max_parallel_jobs=1)
    fast = datetime.now(UTC) + timedelta(minutes=10)
    found = {"protocol": 2, "exit_code": 0, "signal": None, "started_at": (fast - timedelta(seconds=3)).isoformat(),
             "finished_at": fast.isoformat(), "run_s": 3.0, "timed_out": False, "stopped": False, "error": None,
             "ended_elapsed_s": database_clock.elapsed() - 5.0, "clock": local_supervisor.elapsed_clock()}
    outcome = backend._outcome("hrwsi-x-1-1", found)
    ago = (datetime.now(UTC) - outcome.finished_at).total_seconds()
    assert 5.0 <= ago < 6.0, outcome
    assert (outcome.finished_at - outcome.started_at).total_seconds() == 3.0
    elsewhere = backend._outcome("hrwsi-x-1-1", found | {"clock": "another-boot -"})  # (its wall clock, said as it is)
    assert elsewhere.finished_at == fast, elsewhere


async def test_a_supervisor_says_when_it_ended_by_the_clock_that_only_goes_forward(tmp_path):
    from hrwsi import database_clock

    spec, _ = await started_and_abandoned(tmp_path)
    (tmp_path / "task-1" / "release").touch()
    await wait_for_file(Path(spec.attempt_dir) / local_supervisor.EXIT_FILE)
    found = local_supervisor.read_json(os.path.join(spec.attempt_dir, local_supervisor.EXIT_FILE))
    assert found["clock"] == local_supervisor.elapsed_clock() is not None
    assert 0 <= database_clock.elapsed() - found["ended_elapsed_s"] < GUARD_S


def test_an_attempts_start_is_read_from_its_end_and_its_run_time_whatever_the_host_clock_did_while_it_ran():
    # Found by exploratory testing: a host clock set an hour back while a routine ran gave it a start an hour
    # after its end (finished_at less started_at is off by the jump); the supervisor's run time is read by the
    # clock a jump does not move (run_s), and the start is its end less that.
    backend = LocalBackend(max_parallel_jobs=1)
    found = {"protocol": 2, "exit_code": 0, "signal": None, "started_at": "2026-12-07T10:00:00.000000+00:00",
             "finished_at": "2026-12-07T09:00:05.000000+00:00", "run_s": 5.0, "timed_out": False, "stopped": False,
             "error": None}
    outcome = backend._outcome("hrwsi-x-1-1", found)
    assert outcome.state == "processed"
    assert (outcome.finished_at - outcome.started_at).total_seconds() == 5.0
    assert outcome.finished_at.isoformat() == "2026-12-07T09:00:05+00:00"
    older = {key: value for key, value in found.items() if key != "run_s"}  # a supervisor before run_s: as it says
    assert backend._outcome("hrwsi-x-1-1", older).started_at.isoformat() == "2026-12-07T10:00:00+00:00"
    for strange in (-1, "5", float("nan"), True):
        assert backend._outcome("hrwsi-x-1-1", found | {"run_s": strange}).started_at.hour == 10
