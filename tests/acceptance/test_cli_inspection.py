"""The reading commands as ops run them: logs (local, following, Nomad not yet saved), lineage,
alerts, held routines in status, the current schedule, --json everywhere, config validate/show and
prune. Real processes, real PostgreSQL."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import psycopg
import psycopg.sql
import pytest

from hrwsi.configuration import load, to_toml
from hrwsi.migrations import build_version
from tests.acceptance.conftest import HRWSI, run, wait_for
from tests.integration.conftest import chain_configuration, single_routine_configuration
from tests.integration.harvest.test_multi_input import chain, gfsc_rule, member  # noqa: F401 - a fixture
from tests.integration.test_campaigns import add_input, finish, reprocess
from tests.integration.test_retention import add_product, make_task

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COUNTING = [sys.executable, "-c", "import time\nfor i in range(6):\n    print('line', i, flush=True)\n"
                                  "    time.sleep(0.4)\n"]


def services(env):
    return subprocess.Popen([*HRWSI, "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stop(process) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    return stderr


def test_logs_prints_an_attempt_and_follows_a_running_one_to_its_end(db, env):
    load(db, single_routine_configuration(COUNTING))
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path) VALUES ('in', '/a')")
    process = services(env)
    try:
        wait_for(db, "SELECT count(*) = 1 FROM hrwsi.job WHERE state = 'running'")
        task = db.execute("SELECT id FROM hrwsi.processing_task").fetchone()[0]
        followed = run(["logs", str(task), "--follow"], env, timeout=60)
        wait_for(db, "SELECT count(*) = 1 FROM hrwsi.processing_task WHERE state = 'processed'")
    finally:
        stop(process)
    assert [line for line in followed.stdout.splitlines() if line.startswith("line")] == \
        [f"line {i}" for i in range(6)], followed.stdout
    assert f"==> task {task} attempt 1 (local job hrwsi-work-{task}-1" in followed.stderr
    again = run(["logs", str(task), "--attempt", "1"], env)
    assert again.stdout.count("line ") == 6
    missing = run(["logs", str(task), "--attempt", "7"], env, check=False)
    assert missing.returncode == 1 and f"task {task} has no attempt 7" in missing.stderr


def test_logs_follow_ends_saying_how_the_attempt_ended_and_where_its_task_is_now(db, env):
    # Found by exploratory testing (2026-12-07): --follow stopped with the log, exit code 0, and said nothing of
    # whether the attempt was processed or failed, nor that its task was given up.
    load(db, single_routine_configuration([sys.executable, "-c", "import time\nfor i in range(4):\n"
                                           "    print('line', i, flush=True)\n    time.sleep(0.4)\n"
                                           "raise SystemExit('KeyError: B11')"], max_attempts=1))
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path) VALUES ('in', '/a')")
    process = services(env)
    try:
        wait_for(db, "SELECT count(*) = 1 FROM hrwsi.job WHERE state = 'running'")
        task = db.execute("SELECT id FROM hrwsi.processing_task").fetchone()[0]
        followed = run(["logs", str(task), "--follow"], env, timeout=60)
    finally:
        stop(process)
    said = " ".join(followed.stderr.split())
    assert (f"==> task {task} attempt 1 ended internal_error: exit code 1: KeyError: B11; task {task} is terminated "
            f"now (`hrwsi task show {task}` says what comes next)") in said, said
    assert "KeyError: B11" in followed.stdout, "the log itself, on stdout"


HOSTILE_LOG = b"ok\x1b[2J\x1b]52;c;ZXZpbA==\x07 caf\xc3\xa9 \xe2\x80\xaeevil\r\nline\rover\n"


def test_logs_shows_a_routines_escape_sequences_escaped_on_a_terminal_and_as_they_are_in_a_pipe(db, env, tmp_path):
    # Found by exploratory testing (2026-12-05): a routine's log cleared the operator's screen, set
    # its window title and wrote its clipboard (OSC 52) through `hrwsi logs`.
    load(db, single_routine_configuration(["true"]))
    task = make_task(db, "/in/e", condition="in", logs=tmp_path / "logs")
    (tmp_path / "logs" / f"hrwsi-{task}-1.log").write_bytes(HOSTILE_LOG)
    piped = subprocess.run([*HRWSI, "logs", str(task)], env=env, capture_output=True, timeout=60, check=True)
    assert piped.stdout == HOSTILE_LOG, "a file or a pipe gets the bytes as they are"
    shown = _on_a_terminal([*HRWSI, "logs", str(task)], env)
    assert b"\x1b" not in shown and b"\x07" not in shown and "\u202e".encode() not in shown
    assert b"ok\\x1b[2J\\x1b]52;c;ZXZpbA==\\x07 caf\xc3\xa9 \\u202eevil" in shown
    assert b"line\\x0dover" in shown, "a carriage return alone is shown, not obeyed"
    assert _on_a_terminal([*HRWSI, "logs", str(task), "--raw"], env).count(b"\x1b") == 2


def test_logs_names_the_attempt_above_its_log_with_a_backends_escape_sequences_shown_not_obeyed(db, env, tmp_path):
    # Found by review: the line naming the attempt (stderr) printed the job's backend, id and log path as they were.
    load(db, single_routine_configuration(["true"]))
    task = make_task(db, "/in/e", condition="in", logs=tmp_path / "logs")
    db.execute("UPDATE hrwsi.job SET backend = 'local\x1b[2J', backend_job_id = 'job\x1b]0;owned\x07' WHERE task_id = %s",
               (task,))
    said = subprocess.run([*HRWSI, "logs", str(task)], env=env, capture_output=True, timeout=60, check=True).stderr
    assert b"\x1b" not in said and b"\x07" not in said, said
    assert b"(local\\x1b[2J job job\\x1b]0;owned\\x07, processed)" in said, said


def _on_a_terminal(command: list[str], env: dict) -> bytes:
    """What `command` writes to stdout when stdout is a terminal (a pseudo-terminal read here)."""
    import os
    import pty

    leader, follower = pty.openpty()
    try:
        subprocess.run(command, env=env, stdout=follower, stderr=subprocess.DEVNULL, timeout=60, check=True)
    finally:
        os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # (EIO: the terminal's other end is closed and everything was read)
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return out


def test_a_nomad_log_not_saved_yet_is_said_so(db, env, tmp_path):
    load(db, single_routine_configuration(["true"]))
    task = make_task(db, "/in/n", condition="in", state="planned")
    db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', attempts = 1 WHERE id = %s", (task,))
    db.execute("INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, state, log_path) "
               "VALUES (%s, 1, 'nomad', 'hrwsi-work-n-1', 'running', %s)", (task, str(tmp_path / "n.log")))
    result = run(["logs", str(task)], env, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "the Nomad log of" in result.stderr and "is not available yet" in result.stderr
    assert "when the job ends" in result.stderr and "nomad alloc logs -job hrwsi-work-n-1" in result.stderr


def test_a_nomad_log_never_kept_is_not_blamed_on_retention(db, env, tmp_path):
    # Found by exploratory testing: Nomad had refused the logs, and `hrwsi logs` said the log "was pruned
    # by the retention policy", which had not run (it deletes a log only with its attempt's row).
    load(db, single_routine_configuration(["true"]))
    task = make_task(db, "/in/k", condition="in", state="planned")
    db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', attempts = 1 WHERE id = %s", (task,))
    db.execute("INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, state, log_path) "
               "VALUES (%s, 1, 'nomad', 'hrwsi-work-k-1', 'running', %s)", (task, str(tmp_path / "k.log")))
    db.execute("UPDATE hrwsi.job SET state = 'processed', exit_code = 0, finished_at = now() WHERE task_id = %s",
               (task,))
    result = run(["logs", str(task)], env, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert "pruned by the retention policy" not in message, message
    assert "it was never kept there" in message and "Nomad refused or failed to show the task's output" in message


def test_status_shows_each_services_version_and_says_when_they_differ(db, env):
    process = services(env)
    try:
        # `hrwsi up` runs four services; counted once all four have registered (with three, the web's could
        # come between the count and `hrwsi status`: it did, 2026-12-05)
        wait_for(db, "SELECT count(*) = 4 FROM hrwsi.service_instance")
        running = 4
        lines = [line for line in run(["status"], env).stdout.splitlines() if "│" in line]
        assert sum(f"│ {build_version()} " in line for line in lines) == running, lines
        assert "different hrwsi versions" not in run(["status"], env).stdout
        db.execute("INSERT INTO hrwsi.service_instance (id, kind, host, pid, version) VALUES "
                   "('launcher-old-1-x', 'launcher', 'old', 1, '0.0.9'), ('launcher-older-2-y', 'launcher', 'older', 2, NULL)")
        # (read with a lease of 10 minutes: the two rows above beat no more, and with the test's 1.5 s they were
        # stale by the time a slow `hrwsi status` read them)
        status = run(["status"], env | {"HRWSI_LEASE_TIMEOUT_S": "600"}).stdout
        assert f"services run different hrwsi versions: 0.0.9, {build_version()}, not recorded" in status, status
        versions = [s["version"] for s in json.loads(run(["status", "--json"], env).stdout)["services"]]
        assert sorted(versions, key=str) == sorted([build_version()] * running + ["0.0.9", None], key=str)
        # Stopped before the upgrade (stale rows): listed, but no upgrade is under way any more.
        db.execute("UPDATE hrwsi.service_instance SET heartbeat_at = now() - interval '16 minutes' "
                   "WHERE id IN ('launcher-old-1-x', 'launcher-older-2-y')")
        status = run(["status"], env).stdout
        assert "0.0.9" in status and "different hrwsi versions" not in status
        # A live launcher whose lease lapsed goes on under a new identity: its old one is the same
        # process, not a dead one (it read "stale: dead or hung?" for an hour beside the live one).
        db.execute("INSERT INTO hrwsi.service_instance (id, kind, host, pid, version, started_at, heartbeat_at) "
                   "SELECT 'launcher-before-lapse', kind, host, pid, version, started_at - interval '1 hour', "
                   "now() - interval '5 minutes' FROM hrwsi.service_instance WHERE kind = 'launcher' AND host "
                   "NOT IN ('old', 'older')")
        live = db.execute("SELECT id FROM hrwsi.service_instance WHERE kind = 'launcher' AND host NOT IN "
                          "('old', 'older') AND id <> 'launcher-before-lapse'").fetchone()[0]
        replaced = {s["id"]: s["replaced_by"] for s in json.loads(run(["status", "--json"], env).stdout)["services"]}
        assert replaced["launcher-before-lapse"] == live and replaced[live] is None
        shown = " ".join(run(["status"], env).stdout.split())
        assert shown.count("dead or hung?") == 2, "the two stopped before the upgrade, not the one replaced"
    finally:
        stop(process)


def test_status_names_the_services_older_than_the_databases_schema_and_the_newest_version(db, env):
    env = env | {"HRWSI_LEASE_TIMEOUT_S": "600"}  # (the rows below beat no more: alive for this test)
    # Found by exploratory testing: old services left running while a newer hrwsi migrated the database
    # each logged so and sent ops to `hrwsi status`, which listed them with fresh heartbeats and no word.
    newest, name = db.execute("SELECT version, name FROM public.hrwsi_schema_migration ORDER BY version DESC "
                              "LIMIT 1").fetchone()
    old = f"0.1.0+schema{newest - 1:04d}"
    db.execute("INSERT INTO hrwsi.service_instance (id, kind, host, pid, version) VALUES "
               "('launcher-old', 'launcher', 'h', 1, %s), ('orchestrator-new', 'orchestrator', 'h', 2, %s)",
               (old, build_version()))
    shown = " ".join(run(["status"], env).stdout.split())
    assert (f"1 service(s) run an hrwsi older than the database's schema (it records migration {newest:04d}_{name}): "
            f"launcher launcher-old ({old}); their SQL was written for the schema they know: stop them and start "
            "the new version (README.md, Upgrading)") in shown, shown
    assert f"services run different hrwsi versions: {old}, {build_version()}; the newest is {build_version()}" in shown
    versions = json.loads(run(["status", "--json"], env).stdout)["versions"]
    assert versions["database_migration"] == newest and versions["newest"] == build_version()
    assert versions["older_than_database"] == [{"id": "launcher-old", "kind": "launcher", "version": old}]
    # Upgraded: nothing older, one version, nothing to say.
    db.execute("UPDATE hrwsi.service_instance SET version = %s", (build_version(),))
    shown = run(["status"], env).stdout
    assert "older than the database" not in shown and "different hrwsi versions" not in shown


def test_status_answers_within_seconds_while_a_session_locks_a_table_and_names_that_session(db, env, database_url):
    # Found by exploratory testing: with `LOCK TABLE hrwsi.job IN ACCESS EXCLUSIVE MODE` left open in psql,
    # status printed nothing for 40 s (killed), while the services' log sent ops to it to name the session.
    import time

    import psycopg

    from hrwsi.reports import STATUS_LOCK_WAIT_S

    # What the lock costs, beside a status without it on the same machine at the same time: a loaded CI machine
    # took 11 s for the command alone (its start-up), and a bound on the whole of it failed there. Each of its
    # four reads of the locked table waiting its 2 s took 8 s more than without the lock.
    started = time.monotonic()
    run(["status"], env, timeout=30)
    unlocked = time.monotonic() - started
    with psycopg.connect(database_url) as locker:
        locker.execute("SET application_name = 'psql'")
        locker.execute("LOCK TABLE hrwsi.job IN ACCESS EXCLUSIVE MODE")
        pid = locker.info.backend_pid
        started = time.monotonic()
        result = run(["status"], env, timeout=30)
        took = time.monotonic() - started
        data = json.loads(run(["status", "--json"], env, timeout=30).stdout)
        locker.rollback()
    assert took - unlocked < 2 * STATUS_LOCK_WAIT_S + 1, (took, unlocked)
    out = " ".join(result.stdout.split())
    assert ("could not read the jobs, the recent failures, the jobs queued in the backend, the jobs running long within "
            "2 s: a lock is held; see below") in out, out
    assert f"a session holds a lock hrwsi waits for: pid {pid} (role" in out and "psql" in out, out
    assert "holds an ACCESS EXCLUSIVE lock on: hrwsi.job" in out and f"pg_terminate_backend({pid})" in out, out
    assert data["unread"] == ["the jobs", "the recent failures", "the jobs queued in the backend",
                              "the jobs running long"] and data["tasks"] == {}
    assert [(s["pid"], s["locked"]) for s in data["blocking_sessions"]] == [(pid, ["hrwsi.job"])]
    assert "could not read" not in run(["status"], env).stdout


def test_status_names_the_jobs_queued_in_the_backend_for_over_a_minute_with_the_backends_reason(db, env, tmp_path):
    # Found by exploratory testing: four jobs Nomad could not place stayed queued; status showed only counts.
    load(db, single_routine_configuration(["true"]))
    reason = 'Nomad cannot place it yet: Resources exhausted on 1 nodes: cpu; Constraint "${node.unique.name} = node-02"'
    tasks = [make_task(db, f"/in/q{n}", condition="in", state="planned") for n in range(2)]
    for n, task in enumerate(tasks):
        db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', attempts = 1 WHERE id = %s", (task,))
        db.execute("INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, state, worker, message, "
                   "submitted_at) VALUES (%s, 1, 'nomad', %s, 'queued', 'node-02', %s, now() - %s * interval '1 s')",
                   (task, f"hrwsi-work-q{n}-1", reason, 300 if n == 0 else 5))
    said = " ".join(run(["status"], env).stdout.split())
    assert "jobs queued in the backend for over a minute:" in said, said
    assert re.search(rf"task {tasks[0]} \(work\) attempt 1, job hrwsi-work-q0-1 on node-02, queued 30[0-9] s: "
                     + re.escape(reason), said), said
    assert "hrwsi-work-q1-1" not in said  # (queued for seconds: placing it is under way)
    queued = json.loads(run(["status", "--json"], env).stdout)["queued_long"]
    assert [job["backend_job_id"] for job in queued] == ["hrwsi-work-q0-1"]


def test_status_names_a_job_running_far_longer_than_its_routine_is_expected_to_and_what_happens_next(db, env):
    # Found by exploratory testing (2026-12-06): a job running ten times its expected time (a routine
    # hung on a stalled mount, with no timeout) was said nowhere: status counted it running.
    load(db, single_routine_configuration(["true"]))  # (expected_duration_s = 1)
    tasks = [make_task(db, f"/in/r{n}", condition="in", state="planned") for n in range(3)]
    for n, (task, running_s) in enumerate(zip(tasks, (600, 30, 50), strict=True)):
        db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', attempts = 1 WHERE id = %s", (task,))
        db.execute("INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, state, worker, submitted_at, "
                   "started_at) VALUES (%s, 1, 'local', %s, 'running', 'w01', now() - %s * interval '1 s', "
                   "now() - %s * interval '1 s')", (task, f"hrwsi-work-r{n}-1", running_s, running_s))
    said = " ".join(run(["status"], env).stdout.split())
    assert "jobs running far longer than expected:" in said, said
    assert re.search(rf"task {tasks[0]} \(work\) attempt 1, job hrwsi-work-r0-1 on w01: running 10 min, expected 1 s "
                     rf"\(60[0-9]x\) next: routine work has no timeout_s: nothing stops it; read its log "
                     rf"\(`hrwsi logs {tasks[0]} --follow`\), and if it hangs, `hrwsi cancel {tasks[0]}` stops it", said), said
    assert "hrwsi-work-r1-1" not in said and "hrwsi-work-r2-1" not in said  # (under a minute: start-up may triple it)
    db.execute("UPDATE hrwsi.processing_routine SET timeout = interval '2 hours'")
    running = json.loads(run(["status", "--json"], env).stdout)["running_long"]
    assert [(job["backend_job_id"], job["timeout_s"]) for job in running] == [("hrwsi-work-r0-1", 7200.0)]
    assert running[0]["next"].startswith("it is stopped and failed at its routine's timeout_s (7200 s)")


def test_status_says_the_state_each_recently_failed_task_is_in_now(db, env):
    # Found by exploratory testing (2026-12-06): a task's lost attempts (its storage read-only a while)
    # stayed at the top of the recent failures after the task was processed, read as work to act on.
    load(db, single_routine_configuration(["true"]))
    task = make_task(db, "/in/lost-then-processed", condition="in", state="planned")
    db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', attempts = 1 WHERE id = %s", (task,))
    db.execute("INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, state, message, submitted_at, "
               "finished_at) VALUES (%s, 1, 'local', 'hrwsi-work-l-1', 'lost', 'could not prepare the attempt''s "
               "directory: Read-only file system', now(), now())", (task,))
    db.execute("UPDATE hrwsi.processing_task SET state = 'processed' WHERE id = %s", (task,))
    failures = json.loads(run(["status", "--json"], env).stdout)["recent_failures"]
    assert [(f["task_id"], f["state"], f["task_state"]) for f in failures] == [(task, "lost", "processed")]
    for columns in ("80", "250"):
        said = run(["status"], {**env, "COLUMNS": columns}).stdout
        assert "task now" in said and "processed" in said.split("recent failures")[1], said


def test_status_shows_a_failed_attempts_last_line_of_output_whole_next_to_its_exit_code(db, env):
    # A failed attempt's message ends with the routine's last line of output (at most 200 characters:
    # backends.base.log_last_line); cut at 80 characters in status's table, it showed 53 of them.
    load(db, single_routine_configuration(["true"]))
    task = make_task(db, "/in/failed", condition="in", state="planned")
    db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', attempts = 1 WHERE id = %s", (task,))
    words = " ".join(["reading"] * 23) + " band B11 is missing"  # (199 characters)
    db.execute("INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, state, exit_code, message, submitted_at, "
               "finished_at) VALUES (%s, 1, 'local', 'hrwsi-work-l-1', 'internal_error', 3, %s, now(), now())",
               (task, f"exit code 3 (allocation 1234abcd on node n1); its log ends: {words}"))
    for columns in ("80", "250"):
        said = run(["status"], {**env, "COLUMNS": columns}).stdout.split("recent failures")[1]
        assert "its log ends:" in said and "B11 is missing" in " ".join(said.split()), said


def test_status_starts_with_one_line_saying_the_database_refuses_writes_since_when_and_what_to_do(db, env):
    # A failover onto a standby (or default_transaction_read_only turned on): status showed stale heartbeats and
    # little else, while it could still read.
    db.execute("INSERT INTO hrwsi.service_instance (id, kind, host, pid, started_at, heartbeat_at) VALUES "
               "('launcher-1', 'launcher', 'ops1', 100, '2026-12-01 09:00:00+00', '2026-12-01 09:40:01.654321+00')")
    name = db.execute("SELECT current_database()").fetchone()[0]

    def refuse_writes(on: bool) -> None:
        db.execute("SET default_transaction_read_only = off")  # (this session may write, whatever it was given)
        db.execute(psycopg.sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = {}").format(
            psycopg.sql.Identifier(name), psycopg.sql.SQL("on" if on else "off")))

    refuse_writes(True)
    try:
        said = run(["status"], env).stdout
        data = json.loads(run(["status", "--json"], env).stdout)
    finally:
        refuse_writes(False)
    assert said.startswith("the database refuses hrwsi's writes (default_transaction_read_only is on for this role or "
                           "database) since 2026-12-01 09:40:01Z at the latest (the newest heartbeat): the services "
                           "wait and retry"), said
    assert "point HRWSI_DATABASE_URL at the primary" in said.split("\n\n")[0]
    assert data["writes_refused"] == " ".join(said.split("tasks and jobs per state")[0].split())
    assert json.loads(run(["status", "--json"], env).stdout)["writes_refused"] is None, "writes taken again: nothing said"


def test_status_says_which_service_has_no_instance_alive_what_stops_and_what_to_start(db, env):
    # Found by exploratory testing (2026-12-06): after a kill -9 of `hrwsi up`, status showed rows each
    # "(stale: dead or hung?)" and said nowhere that nothing was dispatched, nor what to start.
    # (A lease of a minute: with the suite's 1.5 s, the orchestrator's heartbeat of `now()` went stale between
    # the two commands on a loaded machine.)
    env = {**env, "HRWSI_LEASE_TIMEOUT_S": "60"}
    db.execute("""INSERT INTO hrwsi.service_instance (id, kind, host, pid, version, heartbeat_at) VALUES
                  ('launcher-a-1', 'launcher', 'a', 1, '0.1.0', now() - interval '10 minutes'),
                  ('launcher-a-2', 'launcher', 'a', 2, '0.1.0', now() - interval '5 minutes'),
                  ('orchestrator-b-3', 'orchestrator', 'b', 3, '0.1.0', now()),
                  ('harvester-b-4', 'harvester', 'b', 4, '0.1.0', now() - interval '2 hours')""")
    said = " ".join(run(["status"], {**env, "COLUMNS": "200"}).stdout.split())
    assert ("no launcher is alive (the last, launcher-a-2, beat 5 min ago): next: nothing is dispatched and ended jobs "
            "are not recorded") in said, said
    assert "start it (`hrwsi launcher`, or `hrwsi up`), after checking why pid 2 on a stopped (its log)" in said, said
    assert "no harvester is alive (the last, harvester-b-4, beat 2.0 h ago)" in said, said
    assert "no orchestrator is alive" not in said
    gone = json.loads(run(["status", "--json"], env).stdout)["services_gone"]
    assert [(g["kind"], g["last"]) for g in gone] == [("harvester", "harvester-b-4"), ("launcher", "launcher-a-2")]


def test_status_names_a_service_stopped_cleanly_whose_row_is_gone_while_the_others_run(db, env):
    # Found by exploratory testing (2026-12-07): a service stopped cleanly (SIGTERM, `systemctl stop`) deletes
    # its row; with the orchestrator alone stopped, status listed the harvester, launcher and dashboard and said
    # nothing, while nothing was planned, no alert sent and retention did not run.
    env = {**env, "HRWSI_LEASE_TIMEOUT_S": "60"}
    db.execute("""INSERT INTO hrwsi.service_instance (id, kind, host, pid, version, heartbeat_at) VALUES
                  ('harvester-a-1', 'harvester', 'a', 1, '0.1.0', now()),
                  ('launcher-a-1', 'launcher', 'a', 1, '0.1.0', now()),
                  ('web-a-2', 'web', 'a', 2, '0.1.0', now())""")
    said = " ".join(run(["status"], {**env, "COLUMNS": "200"}).stdout.split())
    assert ("no orchestrator is alive (none is registered: one stopped cleanly removes its row, or none was started): "
            "next: nothing is planned, no alert is sent and retention does not run until one runs: start it "
            "(`hrwsi orchestrator`, or `hrwsi up`)") in said, said
    assert "no harvester is alive" not in said and "no launcher is alive" not in said
    gone = json.loads(run(["status", "--json"], env).stdout)["services_gone"]
    assert [(g["kind"], g["last"]) for g in gone] == [("orchestrator", None)]
    db.execute("DELETE FROM hrwsi.service_instance")
    said = " ".join(run(["status"], env).stdout.split())
    assert "no service is registered: start them with `hrwsi up`" in said and "is alive" not in said, "said once"


def test_status_says_when_the_launcher_cannot_reach_nomad_and_what_happens_to_its_jobs(db, env):
    # Found by exploratory testing (2026-12-05): with Nomad out of reach, only the launcher's log said
    # so; status showed the task dispatched and its job submitted, as though all were well.
    process = services({**env, "HRWSI_BACKEND": "nomad", "NOMAD_ADDR": "http://127.0.0.1:9"})  # (nothing listens)
    try:
        wait_for(db, "SELECT EXISTS (SELECT FROM hrwsi.service_instance WHERE kind = 'launcher' AND problem IS NOT NULL)")
        status = run(["status"], env).stdout
        said = " ".join(status.split())  # (rich wraps the line at the terminal's width)
        assert "launcher cannot work as it should (launcher-" in said
        assert "cannot reach Nomad at http://127.0.0.1:9: Failed to establish a new connection" in said
        assert "lost (backend_unavailable) and its task retried, not charged to the routine" in said
        # (it claimed task after task meanwhile, each lost, while launchers reaching Nomad had room)
        assert "meanwhile this launcher claims no new work (launchers that reach their backend take it)" in said
        launcher = next(s for s in json.loads(run(["status", "--json"], env).stdout)["services"]
                        if s["kind"] == "launcher")
        assert launcher["problem"].startswith("cannot reach Nomad") and launcher["problem_since"]
        assert all(s["problem"] is None for s in json.loads(run(["status", "--json"], env).stdout)["services"]
                   if s["kind"] != "launcher")
    finally:
        stop(process)


def test_status_names_the_harvest_sources_that_fail_are_held_by_a_dead_harvester_or_are_overdue(db, env):
    # Found by exploratory testing (2026-12-05): with eight sources failing and four starved, status
    # showed only tasks and services; `hrwsi sources` had no column for who runs a source.
    for name, active, extra in (
            ("failing", True, "last_error = 'HTTP 503 from the catalogue <b>', next_run_at = now() + interval '1 min'"),
            ("orphaned", True, "claimed_by = 'harvester-gone-1', claimed_until = now() + interval '5 min', "
                               "claim_token = gen_random_uuid(), next_run_at = now() - interval '4 min'"),
            ("forgotten", True, "next_run_at = now() - interval '10 min'"),
            ("fine", True, "next_run_at = now() + interval '1 hour'"),
            ("sleeping", False, "last_error = 'old error', next_run_at = now() - interval '1 day'")):
        db.execute("INSERT INTO hrwsi.harvest_source (name, kind, product_type, config, cron, active) VALUES "
                   "(%s, 'catalogue', 'L1C', '{\"url\": \"http://cat.example/odata\", \"collection\": \"S2\"}', "
                   "'* * * * *', %s)", (name, active))
        db.execute(f"UPDATE hrwsi.harvest_source SET {extra} WHERE name = %s", (name,))
    said = " ".join(run(["status"], env).stdout.split())
    assert ("harvest source needs attention: failing (catalogue) its last run failed: HTTP 503 from the catalogue "
            "<b>; it is tried again at") in said
    assert ("harvest source needs attention: orphaned (catalogue) held by harvester-gone-1, which is not alive "
            "(killed?): a running harvester takes it over at its next round") in said
    assert "harvest source needs attention: forgotten (catalogue) due since" in said
    assert "and no harvester runs it" in said
    assert "fine (catalogue)" not in said and "sleeping" not in said
    listed = " ".join(run(["sources"], env).stdout.split())
    assert "running on harvester-gone-1" in listed and "inactive" in listed


def _landing_files(db, source: str, files: list[tuple[str, str, str | None, str]]) -> None:
    """A landing source and the files its scans tracked: (name, state, message, how long ago it got that state)."""
    db.execute("INSERT INTO hrwsi.harvest_source (name, kind, product_type, config, next_run_at) VALUES "
               "(%s, 'landing_directory', 'L1C', %s, now() + interval '1 min')",
               (source, json.dumps({"directory": f"/srv/{source}/in", "work_directory": f"/srv/{source}/work"})))
    for name, state, message, ago in files:
        db.execute("INSERT INTO hrwsi.landing_file (source, path, size_bytes, modified_at, state, message, prepared_path, "
                   "first_seen_at, last_seen_at, updated_at) VALUES (%s, %s, 10, now() - %s::interval, %s, %s, "
                   "CASE WHEN %s = 'prepared' THEN '/srv/prepared/' || %s END, now() - %s::interval, now() - %s::interval, "
                   "now() - %s::interval)",
                   (source, f"/srv/{source}/in/{name}", ago, state, message, state, name, ago, ago, ago))


def test_status_names_a_landing_source_whose_files_were_refused_the_newest_with_its_reason(db, env):
    # Found by exploratory testing (2026-12-07): a landing directory that refused every file dropped in it
    # (empty, a symbolic link, a name it cannot read) ran without error; status said nothing, the dashboard
    # nothing, and `hrwsi sources` only "4 failed" (ever), without which or why: only the harvester's log had them.
    _landing_files(db, "landing-s2", [
        ("S2B_MSIL1C_empty.zip", "failed", "empty (a transfer that failed or has not started?)", "3 hours"),
        ("S2B_<b>odd</b>.zip", "failed", "S2B_<b>odd</b>.zip: not a product name hrwsi can read", "10 minutes"),
        ("S2A_MSIL1C_20261201T101010_N0510_R108_T32TLR_20261201T120000.zip", "prepared", None, "5 minutes"),
        ("S2B_old.zip", "failed", "a symbolic link: refused", "2 days")])
    _landing_files(db, "landing-fine", [("S2A_fine.zip", "failed", "empty", "3 days")])
    said = " ".join(run(["status"], env).stdout.split())
    assert ("harvest source needs attention: landing-s2 (landing_directory) 2 file(s) refused in the last 24 h, left in "
            "its landing directory and not retried by themselves; the newest: /srv/landing-s2/in/S2B_<b>odd</b>.zip, ") \
        in said, said
    assert ": S2B_<b>odd</b>.zip: not a product name hrwsi can read; fix the cause and `touch` the file to retry it" in said
    assert "landing-fine" not in said  # (its refused file is older than a day)
    source, = json.loads(run(["status", "--json"], env).stdout)["sources"]
    assert (source["name"], source["refused"], source["refused_path"]) == ("landing-s2", 2,
                                                                     "/srv/landing-s2/in/S2B_<b>odd</b>.zip")
    assert source["refused_at"].endswith("Z")


def test_status_names_a_held_routine_with_why_and_what_happens_next_and_alerts_list_the_outbox(db, env):
    document = single_routine_configuration([sys.executable, "-c", "import sys; sys.exit(3)"], max_attempts=1)
    document["routine"][0]["hold_after_failures"] = 2
    load(db, document)
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path) VALUES ('in', '/a'), ('in', '/b')")
    process = services(env)
    try:
        wait_for(db, "SELECT on_hold FROM hrwsi.processing_routine WHERE name = 'work'")
    finally:
        stop(process)
    status = run(["status"], env).stdout
    assert "routine on hold: work" in status
    assert "why: 2 consecutive failures (limit 2)" in status
    assert "next: its new and waiting tasks stay on hold" in status and "hrwsi release work" in status
    data = json.loads(run(["status", "--json"], env).stdout)
    assert data["held_routines"][0]["routine"] == "work" and "consecutive failures" in data["held_routines"][0]["reason"]
    alerts = json.loads(run(["alerts", "--json"], env).stdout)
    assert {a["kind"] for a in alerts["alerts"]} == {"routine_on_hold", "task_terminated"}
    assert all(a["status"] == "unsent" for a in alerts["alerts"]) and "no channel configured" in alerts["delivery"]
    db.execute("UPDATE hrwsi.alert SET attempts = 10, last_error = 'webhook answered HTTP 500' "
               "WHERE kind = 'routine_on_hold'")
    failed = run(["alerts", "--status", "failed"], env).stdout
    assert "webhook answered HTTP 500" in failed and "routine work is on hold" in failed
    assert "1 failed" in failed


def test_task_show_says_what_happens_next_to_a_task_that_waits_for_an_operator(db, env):
    """Found by exploratory testing: `hrwsi task show` of a terminated or held task said why it stopped ("attempt 3
    internal_error: ..."), not that nothing happens by itself nor which command moves it."""
    load(db, single_routine_configuration(["true"]))
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path) VALUES ('in', '/a'), ('in', '/b'), ('in', '/c')")
    failed, held, cancelled = (row[0] for row in db.execute("SELECT id FROM hrwsi.processing_task ORDER BY id"))
    db.execute("SELECT hrwsi.hold_task(%s)", (held,))
    db.execute("SELECT hrwsi.cancel_task(%s)", (cancelled,))
    db.execute("UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w01', planned_start = now() WHERE id = %s",
               (failed,))
    for state in ("dispatched", "running"):
        db.execute("UPDATE hrwsi.processing_task SET state = %s WHERE id = %s", (state, failed))
    db.execute("UPDATE hrwsi.processing_task SET state = 'terminated', state_reason = %s WHERE id = %s",
               ("attempt 1 internal_error: exit code 1:\nTraceback (most recent call last):\nKeyError: 'B11'", failed))
    shown = run(["task", "show", str(failed)], env).stdout
    assert (f"next: it is never retried by itself: `hrwsi retry {failed}` plans it again (its failure count starts "
            "afresh)") in " ".join(shown.split()), shown
    assert f"next: it is not planned until an operator runs `hrwsi release {held}`" in run(["task", "show", str(held)],
                                                                                          env).stdout
    assert f"next: it is final: `hrwsi retry {cancelled}` plans it again" in run(["task", "show", str(cancelled)],
                                                                               env).stdout
    db.execute("SELECT hrwsi.release_task(%s)", (held,))
    db.execute("SELECT hrwsi.hold_routine('work', 'the bucket is full')")
    said = json.loads(run(["task", "show", str(held), "--json"], env).stdout)["next"]
    assert said.startswith("its routine work is on hold: its new and waiting tasks stay on hold"), said


def test_lineage_goes_up_and_down_the_chain_from_a_task_or_a_product(db, env):
    load(db, chain_configuration(["true"]))
    t1 = make_task(db, "/l1c/S2A_L1C.SAFE", condition="l1c", age=None)
    p1 = add_product(db, t1, "/p/S2A_L2A.tif", "L2A")
    t2 = make_task(db, "/p/S2A_L2A.tif", condition="l2a", product_id=p1, age=None)
    p2 = add_product(db, t2, "/p/S2A_FSC.tif", "FSC")
    t3 = make_task(db, "/p/S2A_FSC.tif", condition="fsc", product_id=p2, age=None)
    add_product(db, t3, "/p/S2A_QL.png", "QUICKLOOK")
    data = json.loads(run(["lineage", str(t2), "--json"], env).stdout)
    assert [(n["depth"], n["task_id"]) for n in data["chain"]] == [(-1, t1), (0, t2), (1, t3)]
    from_product = json.loads(run(["lineage", "S2A_QL.png", "--json"], env).stdout)
    assert [n["task_id"] for n in from_product["chain"]] == [t1, t2, t3]
    shown = run(["lineage", "/l1c/S2A_L1C.SAFE"], env).stdout
    assert "2 downstream" in shown and "product QUICKLOOK: /p/S2A_QL.png" in shown
    unknown = run(["lineage", "nothing.tif"], env, check=False)
    assert unknown.returncode == 1 and "no product or input with path or name 'nothing.tif'" in unknown.stderr


def test_lineage_says_which_input_a_correction_superseded_and_which_products_it_outdated(db, env):
    # (found by exploratory testing: after `hrwsi.correct_input`, `hrwsi lineage` of a product's name showed the old
    # version's chain and the new one alike, nothing saying which products were outdated)
    load(db, chain_configuration(["true"]))
    t1 = make_task(db, "/l1c/S2A_L1C.SAFE", condition="l1c", age=None)
    p1 = add_product(db, t1, "/p/old/S2A_L2A.tif", "L2A")
    t2 = make_task(db, "/p/old/S2A_L2A.tif", condition="l2a", product_id=p1, age=None)
    add_product(db, t2, "/p/old/S2A_FSC.tif", "FSC")
    old_input = db.execute("SELECT input_id FROM hrwsi.processing_task WHERE id = %s", (t1,)).fetchone()[0]
    new_input = db.execute("SELECT hrwsi.correct_input(%s, tile => '32TPR')", (old_input,)).fetchone()[0]
    data = json.loads(run(["lineage", str(t1), "--json"], env).stdout)
    assert [(n["task_id"], n["input_superseded_by"]) for n in data["chain"]] == [(t1, new_input), (t2, None)]
    assert [p["outdated_by"] for n in data["chain"] for p in n["products"]] == [new_input, new_input]
    shown = " ".join(run(["lineage", str(t2)], env).stdout.split())
    assert (f"input (l1c, from sql): /l1c/S2A_L1C.SAFE (superseded by input {new_input}, its correction)"
            in shown), shown
    assert (f"product L2A: /p/old/S2A_L2A.tif (outdated: made from a version input {new_input} corrects)"
            in shown), shown
    assert f"product FSC: /p/old/S2A_FSC.tif (outdated: made from a version input {new_input} corrects)" in shown


def test_plan_show_draws_the_current_schedule_with_every_task_holding_a_worker(db, env, tmp_path):
    load(db, single_routine_configuration(["true"], workers=2))
    planned = [make_task(db, f"/in/{i}", condition="in", state="planned") for i in range(3)]
    db.execute("UPDATE hrwsi.processing_task SET worker = 'w02' WHERE id = %s", (planned[2],))
    running = make_task(db, "/in/r", condition="in", state="planned")
    db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', attempts = 1 WHERE id = %s", (running,))
    db.execute("INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, state, started_at) "
               "VALUES (%s, 1, 'local', 'hrwsi-work-r-1', 'running', now())", (running,))
    db.execute("UPDATE hrwsi.processing_task SET state = 'running' WHERE id = %s", (running,))
    chart = tmp_path / "schedule.png"
    data = json.loads(run(["plan", "show", "--json", "--plot", str(chart)], env).stdout)
    assert sorted(t["task_id"] for t in data["tasks"]) == sorted([*planned, running])
    assert data["per_state"] == {"planned": 3, "running": 1} and data["workers"] == 2
    assert chart.read_bytes().startswith(PNG_MAGIC)
    text = run(["plan", "show"], env).stdout
    assert "3 planned, 1 running on 2 worker(s)" in text
    missing = run(["plan", "show", "--id", "12345"], env, check=False)
    assert missing.returncode == 1 and "no plan 12345" in missing.stderr


@pytest.mark.parametrize("command", [["status"], ["tasks"], ["sources"], ["alerts"], ["plan", "show"],
                                     ["config", "show"], ["config", "keys"], ["prune", "--dry-run"]])
def test_every_reading_command_prints_json(db, env, command):
    load(db, single_routine_configuration(["true"]))
    make_task(db, "/in/j", condition="in", age=None)
    json.loads(run([*command, "--json"], env).stdout)


def test_task_show_and_lineage_print_json(db, env):
    load(db, single_routine_configuration(["true"]))
    task = make_task(db, "/in/j", condition="in", age=None)
    shown = json.loads(run(["task", "show", str(task), "--json"], env).stdout)
    assert shown["id"] == task and [h["state"] for h in shown["history"]][-1] == "processed"
    assert shown["jobs"][0]["state"] == "processed" and shown["history"][0]["at"].endswith("Z")
    assert json.loads(run(["lineage", str(task), "--json"], env).stdout)["chain"][0]["task_id"] == task


def test_config_validate_reports_every_problem_and_config_show_loads_back(db, env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[routine]]\nname = "a"\ncpu = nan\nram_mb = 10\nstorage_mb = 10\nexpected_duration_s = 1\n'
                   'command = ["x"]\ninput_product_type = "A"\noutput_product_type = "B"\nmax_attempt = 3\n')
    result = run(["config", "validate", str(bad)], env, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"error: {bad}: 2 problems, nothing written:",
                                          "error: routine[0].cpu: must be a finite number, not nan",
                                          "error: routine[0].max_attempt: unknown key (did you mean max_attempts?)"]
    loaded = run(["config", "load", str(bad)], env, check=False)
    assert loaded.returncode == 2 and db.execute("SELECT count(*) FROM hrwsi.processing_routine").fetchone()[0] == 0
    from hrwsi.demo import CONFIGURATION

    run(["config", "load", str(CONFIGURATION)], env)
    shown = tmp_path / "shown.toml"
    shown.write_text(run(["config", "show"], env).stdout)
    assert run(["config", "validate", "--offline", str(shown)], env).stdout.strip() == f"{shown}: valid"
    # Online, validate runs load's checks in a transaction it rolls back: the database's too (a cycle
    # of chaining through a routine loaded before), and a valid file is written nowhere.
    back = tmp_path / "back.toml"
    back.write_text('[[routine]]\nname = "fsc_to_l2a"\ncpu = 1\nram_mb = 10\nstorage_mb = 10\nexpected_duration_s = 1\n'
                    'command = ["x"]\ninput_product_type = "FSC"\noutput_product_type = "L2A"\n'
                    '[[condition]]\nname = "fsc_back"\nroutine = "fsc_to_l2a"\n')
    assert run(["config", "validate", "--offline", str(back)], env).returncode == 0  # the file alone has no cycle
    result = run(["config", "validate", str(back)], env, check=False)
    assert result.returncode == 2 and "routines 'fsc_to_l2a', 'snow_cover' chain into each other" in result.stderr
    assert "Traceback" not in result.stderr
    back.write_text(back.read_text().replace('"L2A"', '"QL2"'))
    said = run(["config", "validate", str(back)], env).stdout.splitlines()
    assert said[0] == f"{back}: valid"
    # (a partial file: what the database keeps beside it is said, in one line per kind)
    assert any(note.startswith("note: the database keeps 5 routine(s) this file does not name: atmospheric_correction")
               for note in said[1:])
    assert db.execute("SELECT count(*) FROM hrwsi.processing_routine WHERE name = 'fsc_to_l2a'").fetchone()[0] == 0


def test_config_load_says_what_the_database_keeps_beside_the_file_and_what_no_worker_fits(db, env, tmp_path):
    # Found by exploratory testing (2026-12-05): a routine renamed in the file stayed in the database
    # beside the new one, a worker left out stayed active, and load said only "1 workers"; a routine
    # raised beyond every flavour was loaded without a word.
    load(db, single_routine_configuration(["true"], workers=2))
    changed = single_routine_configuration(["true"], workers=1, cpu=8)
    changed["routine"][0]["name"] = "work2"
    changed["condition"][0]["routine"] = "work2"
    changed["condition"].append({"name": "in_old", "routine": "work", "active": False})
    path = tmp_path / "changed.toml"
    path.write_text(to_toml(changed))
    said = " ".join(run(["config", "load", str(path)], env).stdout.split())
    assert ("note: the database keeps 1 worker(s) this file does not name: w02: still planned on (list it with "
            "active = false to stop that)") in said
    assert "note: the database keeps 1 routine(s) this file does not name: work: a routine with no active" in said
    assert "note: routine work2 (8 CPU, 1000 MB RAM, 100 MB storage) fits no active worker" in said


def test_prune_deletes_old_finished_work_and_a_dry_run_only_counts(db, env):
    load(db, single_routine_configuration(["true"]))
    make_task(db, "/in/old", condition="in", state="terminated")
    make_task(db, "/in/new", condition="in", age=None)
    done = make_task(db, "/in/done", condition="in")
    counted = json.loads(run(["prune", "--dry-run", "--json"], env).stdout)
    assert counted["finished_tasks"] == 1 and counted["task_history"] == 2
    assert db.execute("SELECT count(*) FROM hrwsi.processing_task").fetchone()[0] == 3
    pruned = run(["prune"], env).stdout
    assert "1 finished tasks" in pruned and "2 task history" in pruned
    assert [r[0] for r in db.execute("SELECT i.input_path FROM hrwsi.processing_task t "
                                     "JOIN hrwsi.input i ON i.id = t.input_id ORDER BY t.id")] == ["/in/new", "/in/done"]
    shown = run(["task", "show", str(done)], env).stdout
    assert "history and attempts pruned" in shown and "processed" in shown
    gone = run(["logs", str(done)], env, check=False)
    assert gone.returncode == 1 and "were deleted by the retention policy" in gone.stderr
    assert db.execute("SELECT last_report IS NOT NULL FROM hrwsi.retention_policy").fetchone()[0]


def test_lineage_shows_every_match_by_task_id_and_says_production_or_campaign(db, env):
    # Found by exploratory testing: two products named snow_fixed.dat showed one lineage, picked at
    # random; an input production and a campaign both processed showed production's only; neither
    # said whose a lineage was.
    db.execute("INSERT INTO hrwsi.flavour VALUES ('f', 8, 16000, 10000)")
    db.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w1', 'f')")
    db.execute("INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command, "
               "input_product_type, output_product_type) VALUES ('snow', 1, 100, 10, '1 min', ARRAY['true'], 'L2A', 'FSC')")
    db.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('l2a', 'snow')")
    first = add_input(db, "l2a", "/in/a.SAFE")
    finish(db, first, [("/p/a/snow_fixed.dat", "FSC")])
    second = add_input(db, "l2a", "/in/b.SAFE")
    finish(db, second, [("/p/b/snow_fixed.dat", "FSC")])
    campaign = reprocess(db, routine="snow", chain=False)[0]
    again = db.execute("SELECT id FROM hrwsi.processing_task WHERE campaign_id = %s ORDER BY id", (campaign,)).fetchone()[0]
    by_name = json.loads(run(["lineage", "snow_fixed.dat", "--json"], env).stdout)
    assert [one["task_id"] for one in by_name["lineages"]] == [first, second] and by_name["task_id"] == first
    assert [one["campaign_id"] for one in by_name["lineages"]] == [None, None] and not by_name["more_matches"]
    shown = run(["lineage", "snow_fixed.dat"], env).stdout
    assert f"2 tasks match snow_fixed.dat: tasks {first}, {second}" in shown
    assert f"lineage of task {first} (production)" in shown and f"lineage of task {second} (production)" in shown
    by_input = json.loads(run(["lineage", "/in/a.SAFE", "--json"], env).stdout)
    assert [(one["task_id"], one["campaign_id"]) for one in by_input["lineages"]] == [(first, None), (again, campaign)]
    assert f"lineage of task {again} (campaign {campaign})" in run(["lineage", "/in/a.SAFE"], env).stdout
    assert json.loads(run(["lineage", str(again), "--json"], env).stdout)["campaign_id"] == campaign


def test_groups_lists_a_multi_input_group_that_cannot_complete_and_refuses_an_unknown_condition(db, env, chain):  # noqa: F811
    # Found by exploratory testing: a group that never completed was listed nowhere.
    gfsc_rule(db)
    member(db, "SWS", tile="31TCH")
    data = json.loads(run(["groups", "--json"], env).stdout)
    assert data["total"] == 1 and data["groups"][0]["state"] == "cannot complete now: nothing open upstream"
    assert data["late"] == {"groups": [], "total": 0, "days": 30}
    shown = run(["groups", "--tile", "31tch", "--condition", "gfsc_daily", "--days", "3"], env).stdout
    assert "lacks FSC: 0 of 1" in shown
    assert "no member arrived after its group's composite was made (groups sensed in the last 3 days)" in shown
    assert "multi-input groups that cannot complete" in run(["status"], env).stdout
    unknown = run(["groups", "--condition", "nope"], env, check=False)
    assert unknown.returncode == 2 and "no multi-input condition 'nope': one of gfsc_daily" in unknown.stderr


def test_groups_says_which_members_no_group_takes_for_want_of_a_tile_or_sensing_time(db, env, chain):  # noqa: F811
    # (found by exploratory testing: an input inserted without tile and measured_at made an FSC and an SWS, no
    # composite was ever made of them, and `hrwsi groups` said "no multi-input group waits")
    gfsc_rule(db)
    member(db, "FSC", tile=None)
    member(db, "SWS", tile=None)
    member(db, "SWS", tile="31TCH")  # (placed: a group that lacks its FSC)
    data = json.loads(run(["groups", "--json"], env).stdout)
    assert [(p["condition"], p["products"]) for p in data["placeless"]] == [("gfsc_daily", 2)]
    assert data["placeless"][0]["newest"].startswith("/products/SWS_")
    shown = " ".join(run(["groups"], env).stdout.split())
    assert ("2 product(s) of the types condition 'gfsc_daily' groups (made in the last 30 days) have no tile or no "
            "sensing time, their inputs had none: no group takes them, and no composite is made of them") in shown
    assert "SELECT hrwsi.correct_input(ID, tile => ..., measured_at => ...)" in shown


def test_groups_shows_a_product_types_markup_and_escape_sequences_not_obeyed(db, env, chain):  # noqa: F811
    # Found by exploratory testing: the "has / needs" cell was given to rich as markup, so a product type's
    # "[bold]" vanished into bold text and its escape sequence reached the terminal.
    hostile = "[bold]SWS[/bold]\x1b[2J\x1b[31m"
    # (a row stored before migration 0115, which refuses a control character in a requirement's product type from
    # then on and leaves the rows stored before as they were, NOT VALID, as does migration 0124's trigger: what the CLI
    # prints of them is escaped still)
    db.execute("ALTER TABLE hrwsi.multi_input_requirement DROP CONSTRAINT multi_input_requirement_product_type_is_a_name")
    db.execute("ALTER TABLE hrwsi.multi_input_requirement "
               "DISABLE TRIGGER multi_input_requirement_product_type_is_a_configuration_name")
    db.execute("INSERT INTO hrwsi.multi_input_rule (processing_condition) VALUES ('gfsc_daily')")
    db.execute("INSERT INTO hrwsi.multi_input_requirement VALUES ('gfsc_daily', 'FSC', 1), ('gfsc_daily', %s, 1)",
               (hostile,))
    db.execute("ALTER TABLE hrwsi.multi_input_requirement "
               "ENABLE TRIGGER multi_input_requirement_product_type_is_a_configuration_name")
    member(db, "FSC", tile="31TCH")
    shown = run(["groups"], env).stdout
    assert "\x1b[" not in shown, repr(shown)
    assert "lacks [bold]SWS[/bold]\\x1b[2J\\x1b[31m: 0 of 1" in shown, shown
