"""Every CLI error is one line saying what to do, never a traceback (unless --debug): the real
`hrwsi` command in a subprocess, against real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hrwsi.configuration import load
from tests.acceptance.conftest import HRWSI, run
from tests.integration.conftest import single_routine_configuration
from tests.integration.test_retention import make_task


def one_line_error(result, *needles: str, code: int) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_a_database_without_the_schema_says_to_run_db_init(env, empty_database_url):
    result = run(["status"], {**env, "HRWSI_DATABASE_URL": empty_database_url}, check=False)
    one_line_error(result, "has no hrwsi schema", "run `hrwsi db init`", code=2)


@pytest.mark.parametrize(("arguments", "said"), [(["--backend", "foo"], "unknown demo backend 'foo': local or nomad-emulator"),
                                                 (["--inputs", "-1"], "must be at least 0"),
                                                 (["--database", "d" * 64], "a database name of 1 to 63 bytes")])
def test_a_demo_option_that_cannot_work_is_refused_before_the_previous_demo_is_removed(env, tmp_path, arguments, said):
    # Found walking README through: --backend foo was said after the previous demo's home was removed, its
    # configuration loaded and its INSERT printed; --inputs -1 ran, saying "-1 sample L1C scene(s)".
    home = tmp_path / "demo"
    home.mkdir()
    (home / "plan.png").write_text("the previous demo's")
    result = run(["demo", "--home", str(home), *arguments], env, check=False)
    assert result.returncode == 2 and said in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == "" and (home / "plan.png").read_text() == "the previous demo's"


@pytest.mark.parametrize(("arguments", "setting", "said"), [
    (["launcher", "--backend", "foo"], {}, "unknown backend 'foo': choose local, nomad, dry-run"),
    (["up", "--no-web"], {"HRWSI_BACKEND": "foo"}, "unknown backend 'foo'"),
    (["launcher", "--backend", "nomad"], {"NOMAD_ADDR": "zz"}, "NOMAD_ADDR='zz': expected http://host:port"),
    (["orchestrator"], {"HRWSI_ALERT_SMTP_PORT": "abc"}, "HRWSI_ALERT_SMTP_PORT='abc' is not a TCP port"),
    (["up", "--no-web"], {"HRWSI_ALERT_SMTP_STARTTLS": "maybe"}, "HRWSI_ALERT_SMTP_STARTTLS='maybe' is neither")])
def test_a_services_refused_setting_is_the_only_line_it_says(env, arguments, setting, said):
    """(`hrwsi launcher --backend foo` logged the launcher's start, "launcher (hrwsi ...) on the uvloop event loop",
    and applied the pending migrations before its one-line error; the orchestrator's alert settings alike; found by
    review) A refused setting is read before the log says anything."""
    result = run(arguments, {**env, **setting}, timeout=30, check=False)
    one_line_error(result, said, code=2)
    assert result.stdout == ""


def test_db_check_of_a_database_without_the_schema_says_to_run_db_init_in_one_line(env, empty_database_url):
    # Found walking README through (db check before db init): some 1,700 lines of "only in a fresh install".
    result = run(["db", "check"], {**env, "HRWSI_DATABASE_URL": empty_database_url}, check=False)
    one_line_error(result, "has no hrwsi schema, so nothing to compare", "run `hrwsi db init`", code=2)
    assert result.stdout.strip() == ""


def test_a_database_a_newer_hrwsi_upgraded_is_refused_by_db_init_and_the_services(env, db):
    db.execute("INSERT INTO public.hrwsi_schema_migration (version, name, checksum) VALUES (9999, 'from_the_future', 'x')")
    one_line_error(run(["db", "init"], env, check=False), "upgraded by a newer hrwsi", "9999_from_the_future",
                   "upgrade this installation", code=2)
    service = run(["orchestrator"], env, check=False)  # (its log says first which event loop it runs on)
    assert service.returncode == 2 and "Traceback" not in service.stderr, service.stderr
    last = service.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the database was upgraded by a newer hrwsi") and "9999_from_the_future" in last


def test_a_bad_environment_variable_is_named(env):
    result = run(["status"], {**env, "HRWSI_BACKSTOP_POLL_S": "abc"}, check=False)
    one_line_error(result, "HRWSI_BACKSTOP_POLL_S='abc' is not a number", "fix or unset", code=2)


@pytest.mark.parametrize("variable, value, says", [
    ("HRWSI_LOG_LEVEL", "loud", "HRWSI_LOG_LEVEL='LOUD' must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("HRWSI_LOG_FORMAT", "xml", "HRWSI_LOG_FORMAT='xml' must be text or json")])
def test_a_log_level_or_format_that_does_not_exist_stops_a_service_in_one_line(env, variable, value, says):
    """(Python's logging said "error: Unknown level: 'LOUD'", naming no variable.)"""
    one_line_error(run(["launcher"], {**env, variable: value}, check=False), says, "fix or unset", code=2)


def test_an_unreachable_database_says_where_and_what_to_check(env):
    url = "postgresql://nobody@127.0.0.1:1/nowhere?connect_timeout=3"
    result = run(["tasks"], {**env, "HRWSI_DATABASE_URL": url}, check=False)
    one_line_error(result, "cannot connect to", "127.0.0.1", code=2)


def test_an_embedded_server_that_is_not_running_says_how_to_start_it(env, tmp_path):
    quiet = {k: v for k, v in env.items() if k != "HRWSI_DATABASE_URL"}
    result = run(["alerts"], {**quiet, "HRWSI_HOME": str(tmp_path / "nothing-here")}, check=False)
    one_line_error(result, "is not running", "hrwsi db start", code=2)


@pytest.mark.parametrize("command", [["config", "load"], ["config", "validate", "--offline"]])
def test_a_missing_file_is_one_line(env, tmp_path, command):
    result = run([*command, str(tmp_path / "absent.toml")], env, check=False)
    one_line_error(result, "no such file", "absent.toml", code=2)


def test_a_constraint_the_database_adds_is_named_and_nothing_is_written(env, db, tmp_path):
    db.execute("ALTER TABLE hrwsi.flavour ADD CONSTRAINT flavour_cpu_is_at_most_64 CHECK (cpu <= 64)")
    path = tmp_path / "big.toml"
    path.write_text('[[flavour]]\nname = "small"\ncpu = 2\nram_mb = 1000\ndisk_mb = 1000\n\n'
                    '[[flavour]]\nname = "huge"\ncpu = 128\nram_mb = 1000\ndisk_mb = 1000\n')
    result = run(["config", "load", str(path)], env, check=False)
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert lines[1] == ("error: flavour[1]: the database refused it: new row for relation \"flavour\" violates check "
                        "constraint \"flavour_cpu_is_at_most_64\""), lines
    assert db.execute("SELECT count(*) FROM hrwsi.flavour").fetchone()[0] == 0, "the first flavour was rolled back"


def test_a_refused_operator_action_is_one_line(env, db):
    load(db, single_routine_configuration([sys.executable, "-c", "pass"]))
    task = make_task(db, "/in/a", condition="in", age=None)
    one_line_error(run(["retry", str(task)], env, check=False),
                   f"task {task} is processed: only a terminated", code=1)
    one_line_error(run(["hold", "nosuch"], env, check=False), "no routine 'nosuch'", "hrwsi config show", code=1)


@pytest.mark.parametrize("command, says", [(["hold", ""], "no routine ''"), (["release", ""], "no routine ''"),
                                           (["hold", "  "], "no routine '  '"), (["chain-missed", ""], "no condition ''"),
                                           (["move-tasks", "", "x"], "no routine ''"),
                                           (["reprocess", "--routine", "", "--from", "2020-01-01", "--to", "2020-01-02"],
                                            "no routine ''"),
                                           (["hold", "a\\b"], "no routine 'a\\b'"),
                                           (["chain-missed", "it's"], "no condition 'it''s'")])
def test_a_name_that_names_nothing_is_quoted_in_the_refusal(env, command, says):
    """(`hrwsi hold ''` said "no routine : `hrwsi config show` lists the routines", the empty name unseen; and
    `hrwsi hold 'a\\b'` said "no routine E'a\\\\b'", another name to a reader; found by review)"""
    one_line_error(run(command, env, check=False), says, code=1)


@pytest.mark.parametrize("command", [["task", "show", "999999"], ["logs", "999999"], ["lineage", "999999"],
                                     ["retry", "999999"], ["cancel", "999999"]])
def test_an_unknown_task_id_is_one_line(env, command):
    one_line_error(run(command, env, check=False), "no task 999999", "hrwsi tasks", code=1)


@pytest.mark.parametrize("command", [["retry"], ["cancel"], ["hold"], ["release"], ["task", "show"], ["logs"]])
def test_a_task_id_beyond_what_a_table_holds_is_no_task(env, command):
    """(beyond a bigint, retry said the database had no hrwsi schema: its function was not found for a numeric)"""
    one_line_error(run([*command, str(2**63)], env, check=False), f"no task {2**63}", "hrwsi tasks", code=1)


def test_an_empty_alert_status_is_quoted_in_the_refusal(env):
    """(`hrwsi alerts --status ''` said "--status : choose sent, unsent or failed", the empty value unseen)"""
    one_line_error(run(["alerts", "--status", ""], env, check=False), "--status '': choose sent", code=2)


@pytest.mark.parametrize("command, says", [(["hold", "\u00b2"], "no routine '\u00b2'"),
                                           (["release", "\u0661\u0662"], "no routine '\u0661\u0662'"),
                                           (["lineage", "\u00b2"], "no product or input with path or name '\u00b2'"),
                                           (["lineage", "9" * 30], f"no task {'9' * 30}"),
                                           (["hold", "1" * 5000], f"no task {'1' * 5000}"),
                                           (["release", "--", "-" + "1" * 5000], f"no task -{'1' * 5000}"),
                                           (["lineage", "1" * 5000], f"no task {'1' * 5000}")])
def test_a_digit_of_another_script_or_an_id_beyond_a_bigint_is_one_line(env, command, says):
    """(str.isdigit is true of '\u00b2' and of Arabic-Indic digits: `hrwsi hold \u00b2` and `hrwsi lineage \u00b2` ended
    in "invalid literal for int()", a bug's exit; found by exploratory testing; and int() of 5,000 digits
    said "Exceeds the limit (4300 digits) for integer string conversion"; found by review)"""
    one_line_error(run(command, env, check=False), says, code=1)


@pytest.mark.parametrize("command", [["hold"], ["release"]])
def test_a_negative_task_id_is_no_task_not_a_routine(env, command):
    one_line_error(run([*command, "--", "-1"], env, check=False), "no task -1", "hrwsi tasks", code=1)


@pytest.mark.parametrize("command", [["logs", "1", "--attempt", str(2**31)], ["campaigns", "--id", str(2**63)],
                                     ["campaigns", "--cancel", str(2**63)], ["plan", "show", "--id", str(2**63)],
                                     ["tasks", "--limit", "-1"], ["timeliness", "--days", "99999999999"]])
def test_a_number_out_of_its_range_is_refused_before_any_query(env, command):
    """(they reached the database and came back as "integer out of range", "LIMIT must not be negative")"""
    result = run(command, env, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "out of range" not in result.stderr
    assert f"Invalid value for '{command[-2]}'" in result.stderr, result.stderr


@pytest.mark.parametrize("command, option", [(["tasks", "--tile", ""], "--tile"), (["tasks", "--tile", " "], "--tile"),
                                             (["tasks", "--routine", ""], "--routine"), (["tasks", "--lane", ""], "--lane"),
                                             (["groups", "--tile", ""], "--tile"), (["groups", "--condition", ""], "--condition"),
                                             (["timeliness", "--tile", ""], "--tile"),
                                             (["timeliness", "--routine", ""], "--routine"),
                                             (["timeliness", "--lane", ""], "--lane")])
def test_an_empty_filter_is_refused_not_taken_for_no_filter(env, db, command, option):
    """(`hrwsi tasks --tile ''` listed every task, as if no --tile had been given)"""
    load(db, single_routine_configuration([sys.executable, "-c", "pass"]))
    make_task(db, "/in/a", condition="in", age=None)
    line = one_line_error(run(command, env, check=False), f"{option} '", "is empty", f"leave {option} out", code=2)
    assert "/in/a" not in line


def test_an_unknown_task_state_is_named_with_the_states_there_are(env):
    """(`hrwsi tasks --state bogus` listed no task, as if none were in that state)"""
    one_line_error(run(["tasks", "--state", "bogus"], env, check=False), "no task state 'bogus': one of pending",
                   "terminated", code=2)


def test_an_unknown_routine_or_lane_is_named_with_those_there_are(env):
    """(`hrwsi tasks --routine nope` listed no task, as if that routine had none; found by exploratory testing)"""
    one_line_error(run(["tasks", "--routine", "nope"], env, check=False), "no routine 'nope': one of", code=2)
    one_line_error(run(["tasks", "--lane", "bogus"], env, check=False), "no lane 'bogus': one of nrt, archive", code=2)


@pytest.mark.parametrize("plot, says", [("", "--plot takes a file name, like plan.png"),
                                        (".", "--plot takes a file name, like plan.png")])
def test_a_chart_path_that_is_no_file_name_is_one_line(env, plot, says):
    """(`--plot ''` wrote a hidden ./.png and said "written to .")"""
    assert one_line_error(run(["plan", "show", "--plot", plot], env, check=False), says, code=1) == f"error: {says}"


def test_a_chart_path_that_is_a_directory_is_one_line(env, tmp_path):
    one_line_error(run(["plan", "show", "--plot", str(tmp_path)], env, check=False),
                   f"--plot takes a file name, like plan.png: '{tmp_path}' is a directory", code=1)


def test_db_stop_leaves_a_server_the_url_names_that_is_not_the_embedded_one(env, db):
    """(it stopped the embedded server of HRWSI_HOME, under services that used it, whatever the URL named)"""
    result = run(["db", "stop"], env)
    assert "is not the embedded server of" in result.stdout and "nothing stopped" in result.stdout
    assert db.execute("SELECT 1").fetchone() == (1,)


def test_db_stop_names_a_home_directory_as_it_is_never_as_markup(env, tmp_path):
    # Found by review: the data directory was printed as rich markup: "[bold]" in HRWSI_HOME was taken as a style.
    home = tmp_path / "[bold]home\x1b[2J"
    result = run(["db", "stop"], {k: v for k, v in env.items() if k != "HRWSI_DATABASE_URL"} | {"HRWSI_HOME": str(home)})
    assert f"no embedded server runs in {tmp_path}/[bold]home\\x1b[2J/" in result.stdout, result.stdout
    assert "\x1b" not in result.stdout


def test_a_url_names_the_embedded_server_by_its_socket_directory(tmp_path):
    from hrwsi.database import names_embedded_server

    pgdata = tmp_path / "pgdata"
    assert names_embedded_server(f"postgresql://postgres@/hrwsi?host={pgdata}", pgdata)
    assert names_embedded_server(f"host={pgdata}/ dbname=hrwsi", pgdata)
    assert not names_embedded_server("postgresql://postgres@db.internal:5432/hrwsi", pgdata)
    assert not names_embedded_server(f"postgresql://postgres@/hrwsi?host={tmp_path}/other", pgdata)


def test_debug_shows_the_traceback(env, empty_database_url):
    result = run(["--debug", "status"], {**env, "HRWSI_DATABASE_URL": empty_database_url}, check=False)
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "UndefinedTable" in result.stderr
    assert "run `hrwsi db init`" in result.stderr.splitlines()[-1]


def test_the_environment_variable_debug_switch_works_too(env, empty_database_url):
    result = run(["status"], {**env, "HRWSI_DATABASE_URL": empty_database_url, "HRWSI_DEBUG": "1"}, check=False)
    assert "Traceback" in result.stderr
    assert os.environ.get("HRWSI_DEBUG") is None


def test_db_init_by_a_role_that_may_only_run_the_services_says_to_run_it_as_the_schema_owner(env, db,
                                                                                               empty_database_url):
    """(it advised "the schema owner, or one granted hrwsi_service": the role that had just failed)"""
    import uuid

    import psycopg
    name = f"hrwsi_test_{uuid.uuid4().hex[:8]}"
    db.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN IN ROLE hrwsi_service").format(psycopg.sql.Identifier(name)))
    try:
        as_service = empty_database_url.replace("postgresql://postgres@", f"postgresql://{name}@")
        line = one_line_error(run(["db", "init"], {**env, "HRWSI_DATABASE_URL": as_service}, check=False),
                              "not allowed: permission denied for schema public", "run it as the schema's owner",
                              code=1)
        assert "not as a role granted hrwsi_service" in line
    finally:
        db.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(name)))


def test_a_reading_command_on_a_database_that_lacks_migrations_names_them(env, db):
    """(status said "has no hrwsi schema, or lacks a migration (column k.hold_reason does not exist)"; the
    services named the migrations; found by exploratory testing)"""
    db.execute("DELETE FROM public.hrwsi_schema_migration WHERE version >= 45")
    db.execute("ALTER TABLE hrwsi.campaign DROP COLUMN hold_reason CASCADE")  # (what 0045 added)
    line = one_line_error(run(["status"], env, check=False), "lacks", "0045_a_campaign_s_failures_hold_the_campaign",
                          "run `hrwsi db init` as the schema's owner", code=2)
    assert "0049_an_unavailable_backend_loses_the_attempt" in line


@pytest.fixture
def login_role(db):
    """A login role of its own (dropped after the test), its name; the test gives it what it needs."""
    import uuid

    import psycopg
    name = f"hrwsi_test_{uuid.uuid4().hex[:8]}"
    db.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN").format(psycopg.sql.Identifier(name)))
    yield name
    for (left,) in db.execute("SELECT datname FROM pg_database WHERE datdba = %s::regrole", (name,)).fetchall():
        db.execute(psycopg.sql.SQL("DROP DATABASE {} WITH (FORCE)").format(psycopg.sql.Identifier(left)))
    db.execute(psycopg.sql.SQL("DROP OWNED BY {}").format(psycopg.sql.Identifier(name)))
    db.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(name)))


def as_role(url: str, role: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://{role}@")


def test_db_init_by_a_non_superuser_owner_names_the_grant_of_the_custom_parameter_it_needs(env, db, server_url,
                                                                                           login_role):
    # Found by exploratory testing: the database's owner was told to "run it as the schema's owner".
    import psycopg

    from hrwsi.database import create_database, drop_database
    version = db.execute("SHOW server_version_num").fetchone()[0]
    if int(version) < 150000:
        pytest.skip("GRANT SET ON PARAMETER is PostgreSQL 15+")
    db.execute(psycopg.sql.SQL("ALTER ROLE {} CREATEROLE").format(psycopg.sql.Identifier(login_role)))
    name = f"{login_role}_db"
    url = create_database(server_url, name)
    try:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(psycopg.sql.SQL("ALTER DATABASE {} OWNER TO {}").format(psycopg.sql.Identifier(name),
                                                                                  psycopg.sql.Identifier(login_role)))
        line = one_line_error(run(["db", "init"], {**env, "HRWSI_DATABASE_URL": as_role(url, login_role)}, check=False),
                              'not allowed: permission denied to set parameter "hrwsi.in_dispatch_claim"',
                              f"a superuser must run GRANT SET ON PARAMETER hrwsi.in_dispatch_claim TO {login_role}",
                              code=1)
        assert "schema's owner" not in line
    finally:
        drop_database(server_url, name)


def test_db_check_by_a_role_without_createdb_says_it_needs_createdb(env, db, database_url, login_role):
    # Found by exploratory testing: it advised a role granted hrwsi_service, which may not either.
    line = one_line_error(run(["db", "check"], {**env, "HRWSI_DATABASE_URL": as_role(database_url, login_role)},
                              check=False),
                          "not allowed: permission denied to create database", "run it as a role with CREATEDB",
                          code=1)
    assert "hrwsi_service" not in line


def test_a_statement_timeout_of_the_role_is_named_not_taken_for_an_unreachable_database(env, db, database_url,
                                                                                        login_role):
    # Found by exploratory testing: with a role statement_timeout of 30 ms (1 ms here: 30 ms was enough at
    # times), `hrwsi db check` said "cannot reach the database ... check HRWSI_DATABASE_URL, or run `hrwsi db start`".
    import psycopg
    # (a superuser: a role without one met the GRANT SET ON PARAMETER refusal first on a quick run)
    db.execute(psycopg.sql.SQL("ALTER ROLE {} SUPERUSER").format(psycopg.sql.Identifier(login_role)))
    db.execute(psycopg.sql.SQL("ALTER ROLE {} SET statement_timeout = 1").format(psycopg.sql.Identifier(login_role)))
    line = one_line_error(run(["db", "check"], {**env, "HRWSI_DATABASE_URL": as_role(database_url, login_role)},
                              check=False),
                          "cancelled a statement: canceling statement due to statement timeout",
                          f"it ran past statement_timeout (1ms for role {login_role}): raise it for this role",
                          code=2)
    assert "cannot reach" not in line and "hrwsi db start" not in line


def wait_for_line(process: subprocess.Popen, log: Path, needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while not (found := [line for line in log.read_text().splitlines() if needle in line]):
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return found[0]


@pytest.mark.parametrize("command", [["up", "--no-web"], ["orchestrator"]])
def test_services_started_while_their_role_refuses_writes_wait_say_why_and_start_once_ops_lift_it(env, db, database_url,
                                                                                                   login_role, tmp_path,
                                                                                                   command):
    # Found by exploratory testing: `hrwsi up` exited with "database error: cannot execute INSERT in a read-only
    # transaction"; then, named, it still exited with code 2. A role (or database) set read-only on a primary is
    # ops' configuration, but it heals as a standby does: once ops set it off, or promote the primary. Exiting
    # made a restart during a failover (systemd, Nomad's restart) fail, the services staying down after the new
    # primary was up. They wait as the dashboard does: one line saying why and what they retry, then they start
    # once writes go through; a stop meanwhile ends them at once with code 0.
    import psycopg
    role = psycopg.sql.Identifier(login_role)
    db.execute(psycopg.sql.SQL("GRANT hrwsi_service TO {}").format(role))
    db.execute(psycopg.sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role))
    environment = {**env, "HRWSI_DATABASE_URL": as_role(database_url, login_role), "HRWSI_BACKEND": "dry-run"}
    log = tmp_path / "services.log"
    for lifted in (False, True):
        with log.open("w") as out:
            process = subprocess.Popen([*HRWSI, *command], env=environment, stdout=out, stderr=out)
        try:
            line = wait_for_line(process, log, "the database refuses hrwsi's writes")
            assert "cannot execute INSERT in a read-only transaction" in line and "default_transaction_read_only" in line
            assert "all the same and register" in line and "once the database takes writes, trying every 5 s" in line
            if command[0] == "up":
                assert "harvester, launcher, orchestrator: the database refuses" in line, "one line for the process's services"
            if lifted:
                db.execute(psycopg.sql.SQL("ALTER ROLE {} RESET default_transaction_read_only").format(role))
                wait_for_line(process, log, "started; listening on", timeout=30)
                assert "the database takes hrwsi's writes again" in log.read_text()
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0, log.read_text()
            assert time.monotonic() - started < 10, "stopped at once"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        text = log.read_text()
        assert "Traceback" not in text and text.count("the database refuses hrwsi's writes") == 1, text


def test_db_init_refuses_a_template_database_and_names_the_database_it_installs_into(env, server_url,
                                                                                   empty_database_url):
    # Found by exploratory testing: with HRWSI_DATABASE_URL naming template1 (or postgres), `db init`
    # printed "installed the current schema ..." without naming where; template1 then gave every new
    # database hrwsi's schema.
    import psycopg

    from hrwsi.database import with_database

    template1 = with_database(server_url, "template1")
    one_line_error(run(["db", "init"], {**env, "HRWSI_DATABASE_URL": template1}, check=False),
                   "refusing to install hrwsi into database template1", "template database", "--force", code=2)
    installed = run(["db", "init"], {**env, "HRWSI_DATABASE_URL": empty_database_url}).stdout
    name = psycopg.conninfo.conninfo_to_dict(empty_database_url)["dbname"]
    assert f"installed the current schema (sql/schema.sql) into database {name} (" in " ".join(installed.split())
    assert "password" not in installed
    names = sorted(path.stem for path in (Path(__file__).parents[2] / "sql" / "migrations").glob("*.sql"))
    assert f"recorded as applied the {len(names)} migrations {names[0]} to {names[-1]}" in " ".join(installed.split())
    assert names[1] not in installed, "the range, not every migration's name"
    again = run(["db", "init"], {**env, "HRWSI_DATABASE_URL": empty_database_url}).stdout
    assert f"schema up to date in database {name}" in " ".join(again.split())


def test_a_server_that_takes_no_more_connections_is_said_so_not_taken_for_one_that_does_not_run(env, db, database_url,
                                                                                                 login_role):
    # Found by exploratory testing (2026-12-06): with max_connections reached, `hrwsi status` said "FATAL:
    # sorry, too many clients already; check that the server runs and that HRWSI_DATABASE_URL names it",
    # true of neither. A role's CONNECTION LIMIT is refused alike ("too many connections for role").
    import psycopg
    db.execute(psycopg.sql.SQL("ALTER ROLE {} CONNECTION LIMIT 0").format(psycopg.sql.Identifier(login_role)))
    line = one_line_error(run(["status"], {**env, "HRWSI_DATABASE_URL": as_role(database_url, login_role)}, check=False),
                          "runs but takes no more connections", f'too many connections for role "{login_role}"',
                          "max_connections, or a role's or database's CONNECTION LIMIT, is reached", "pg_stat_activity",
                          "lower hrwsi's pools (HRWSI_POOL_SIZE, HRWSI_WEB_POOL_SIZE)", code=2)
    assert "check that the server runs" not in line


def test_a_metrics_port_already_taken_stops_a_service_in_one_line_naming_the_setting(env):
    # Found by exploratory testing (2026-12-06): "error: error while attempting to bind on address
    # ('127.0.0.1', 47512): address already in use", naming no setting (the dashboard's names HRWSI_WEB_PORT).
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(["launcher"], {**env, "HRWSI_HTTP_PORT": str(port), "HRWSI_LOG_LEVEL": "ERROR"}, check=False,
                     timeout=60)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert lines[-1] == (f"error: the /metrics, /healthz and /readyz endpoints cannot listen on 127.0.0.1:{port}: address "
                         "already in use; choose another port with HRWSI_HTTP_PORT (0 picks a free one), or unset it to "
                         "serve none"), result.stderr


NOT_UTF8 = os.fsdecode(b"snow\xffcover")  # what Python makes of an argument in Latin-1 (or of stray bytes)


@pytest.mark.parametrize("command", [["hold", NOT_UTF8], ["release", NOT_UTF8], ["groups", "--tile", NOT_UTF8],
                                     ["chain-missed", NOT_UTF8], ["move-tasks", NOT_UTF8, "other"],
                                     ["timeliness", "--tile", NOT_UTF8], ["tasks", "--tile", NOT_UTF8]])
def test_an_argument_that_is_not_utf8_is_named_with_its_bytes_in_one_line(env, command):
    """(they said "'utf-8' codec can't encode character '\\udcff' in position 4: surrogates not allowed",
    naming neither the argument nor what to do; found by exploratory testing)"""
    line = one_line_error(run(command, env, check=False), "is not valid UTF-8", code=2)
    assert "'snow\\xffcover'" in line.lower() and "\\udcff" not in line and "codec" not in line


@pytest.mark.parametrize("command, says", [
    (["--" + NOT_UTF8], "No such option: --snow\\xffcover; see `hrwsi --help`"),
    ([NOT_UTF8], "No such command 'snow\\xffcover'; see `hrwsi --help`"),
    (["db", NOT_UTF8], "No such command 'snow\\xffcover'; see `hrwsi db --help`"),
    (["tasks", "--" + NOT_UTF8], "No such option: --snow\\xffcover"),
    (["it's"], "No such command 'it''s'")])
def test_a_usage_error_shows_a_byte_that_is_not_utf8_as_every_refusal_does(env, command, says):
    """(a byte that is not UTF-8 went out as it came in "No such option", a replacement character on the terminal,
    and read `\\udcff` in "No such command", which quoted the word with repr(); found by review) One escaping, the
    byte as `\\xff`, as `hrwsi hold` says such a name (hrwsi.terminal), and a name quoted as every refusal quotes it."""
    result = subprocess.run([*HRWSI, *command], env=env, capture_output=True, timeout=60)
    assert result.returncode == 2, result
    line = result.stderr.decode("ascii")  # (no byte of the argument as it came)
    assert line.startswith("error: ") and says in line and "\\udc" not in line and line.count("\n") == 1, line


def test_a_refused_name_is_quoted_as_it_is_as_the_database_s_refusals_quote_it(db, env):
    """The CLI's own refusals quoted a name with repr(), which doubles a backslash ('a\\\\b') and switches to double
    quotes for a name holding a quote, while the database's refusals show it as it is between single quotes, a quote
    doubled (hrwsi.quoted_name): one name read two ways (found by review). A control character is still shown as its
    escape, never obeyed."""
    load(db, single_routine_configuration(["true"]))
    name = "snow\\cover's"
    by_the_database = one_line_error(run(["hold", name], env, check=False), code=1)
    assert "no routine 'snow\\cover''s'" in by_the_database, by_the_database
    for args in (["retry", "--routine", name], ["tasks", "--routine", name]):
        one_line_error(run(args, env, check=False), "no routine 'snow\\cover''s': one of work", code=2)
    one_line_error(run(["tasks", "--state", "a\tb\x1b[2J"], env, check=False), "no task state 'a\\x09b\\x1b[2J'", code=2)


def test_a_name_with_a_line_break_or_a_tab_is_one_line_of_the_databases_refusal_its_characters_shown(db, env):
    """The database's refusal quotes the name as given: printed as it came, a line break in it split the refusal
    into two `error:` lines ("no routine 'snow" and "cover': ..."), and a tab read as a space, another name
    (found by review). Shown as escapes, as the CLI's own refusals show them (hrwsi.terminal.quoted)."""
    load(db, single_routine_configuration(["true"]))
    one_line_error(run(["hold", "snow\ncover"], env, check=False), "no routine 'snow\\x0acover': ", code=1)
    one_line_error(run(["release", "snow\tcover"], env, check=False), "no routine 'snow\\x09cover': ", code=1)
    # (move-tasks, chain-missed, reprocess and retry said the database's refusal as it came: found by review)
    one_line_error(run(["move-tasks", "snow\ncover", "work"], env, check=False), "no routine 'snow\\x0acover'", code=1)
    one_line_error(run(["chain-missed", "fsc\tdaily"], env, check=False), "no condition 'fsc\\x09daily'", code=1)
    one_line_error(run(["reprocess", "--condition", "fsc\ndaily", "--from", "2026-01-01", "--to", "2026-01-02"], env,
                       check=False), "'fsc\\x0adaily'", code=1)


@pytest.mark.parametrize("command, says", [
    (["tasks", "--limit", "1_0"], "'1_0' is not a whole number (ASCII digits 0-9)"),
    (["tasks", "--limit", " 7 "], "' 7 ' is not a whole number"),
    (["tasks", "--limit", "\u0663"], "'\u0663' is not a whole number"),
    (["logs", "1_0"], "'1_0' is not a whole number"),
    (["task", "show", "1_0"], "'1_0' is not a whole number"), (["task", "show", " 7 "], "' 7 ' is not a whole number"),
    (["cancel", "1_0"], "'1_0' is not a whole number"), (["cancel", "\u0663"], "'\u0663' is not a whole number"),
    (["timeliness", "--days", "9" * 5000], "'999"),
    (["health", "launcher", "--fresh-s", "nan"], "'nan' is not a finite number"),
    (["health", "launcher", "--fresh-s", "1_0"], "'1_0' is not a finite number"),
    (["health", "launcher", "--fresh-s", "0"], "'0': must be more than 0")])
def test_a_number_option_is_read_in_ascii_decimal_notation_alone(env, command, says):
    """(Typer read them with int() and float(): `--limit 1_0` listed 10 tasks, ' 7 ' 7, '\u0663' 3, and `--fresh-s
    nan` judged every heartbeat fresh; found by review; `task show 1_0` showed task 10 and `cancel 1_0` cancelled it,
    found walking README through) A long value is cut in the line."""
    result = run(command, env, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    said = " ".join(result.stderr.split())
    assert f"Invalid value for '{command[-2] if command[-2].startswith('-') else 'TASK_ID'}'" in said and says in said, said
    assert len(result.stderr) < 2000


@pytest.mark.parametrize("command", [["timeliness"], ["groups"]])
def test_every_commands_days_reach_back_as_far_and_no_further(db, env, command):
    """(`hrwsi groups --days` took up to 36,600 and `hrwsi timeliness --days` 36,500; found by review) One limit:
    100 years, as a condition's windows (hrwsi.cli.common.DAYS_MAX)."""
    from hrwsi.configuration import MAX_WINDOW_DAYS

    DAYS_MAX = MAX_WINDOW_DAYS  # noqa: N806
    one_line_error(run([*command, "--days", str(DAYS_MAX + 1)], env, check=False),
                   f"Invalid value for '--days': '{DAYS_MAX + 1}': must be at most {DAYS_MAX}", code=2)
    assert run([*command, "--days", str(DAYS_MAX), "--json"], env).returncode == 0


def test_a_long_name_is_cut_in_the_error_line_saying_how_long_it_was(env):
    """(a 5,000-character --state made a 5,000-character error line, the states there are lost at its end)"""
    line = one_line_error(run(["tasks", "--state", "x" * 5000], env, check=False), "... (5,000 characters)",
                          ": one of pending", code=2)
    assert len(line) < 400


@pytest.mark.parametrize("command, says, help_of", [
    (["status", "--bogus"], "No such option: --bogus", "hrwsi status"),
    (["task", "show"], "Missing argument 'TASK_ID'", "hrwsi task show"),
    (["nosuch"], "No such command 'nosuch'", "hrwsi"),
    (["stauts"], "No such command 'stauts'. Did you mean 'status'", "hrwsi"),
    (["tasks", "--limit"], "Option '--limit' requires an argument", "hrwsi tasks"),
    (["db", "init", "--json"], "No such option: --json", "hrwsi db init"),
    (["status", "--" + "x" * 5000], "... (5,018 characters)", "hrwsi status"),
    (["nomad-emulator", "--bogus"], "unrecognized arguments: --bogus", "hrwsi nomad-emulator"),
    (["nomad-emulator", "--port", "abc"], "argument --port: 'abc' is not a port number from 0 to 65535", "hrwsi nomad-emulator"),
    # (any int was taken: 70000 and -1 ended in "unexpected error (OverflowError: bind(): port must be 0-65535.)" as the
    # emulator started, 1_0 was port 10; found by review)
    (["nomad-emulator", "--port", "70000"], "argument --port: '70000' is not a port number from 0 to 65535 (0 picks a free",
     "hrwsi nomad-emulator"),
    (["nomad-emulator", "--port=-1"], "argument --port: '-1' is not a port number from 0 to 65535", "hrwsi nomad-emulator"),
    (["nomad-emulator", "--port", "1_0"], "argument --port: '1_0' is not a port number", "hrwsi nomad-emulator"),
    (["nomad-emulator", "--node", "a:b\nc"], "--node 'a:b\\nc': expected NAME", "hrwsi nomad-emulator"),
    # (its other whole numbers took any int too: --nodes -1 started an emulator of no node, a negative or zero size
    # made nodes no job fits on, a reserve of all a node has left it nothing; found by review)
    (["nomad-emulator", "--nodes=-1"], "argument --nodes: '-1' is not a whole number from 0 to 10,000", "hrwsi nomad-emulator"),
    (["nomad-emulator", "--nodes", "0"], "--nodes 0 and no --node make no node", "hrwsi nomad-emulator"),
    (["nomad-emulator", "--nodes", "1_0"], "argument --nodes: '1_0' is not a whole number", "hrwsi nomad-emulator"),
    (["nomad-emulator", "--node-cpu-mhz", "0"], "argument --node-cpu-mhz: '0' is not a whole number from 1 to",
     "hrwsi nomad-emulator"),
    (["nomad-emulator", "--node-memory-mb=-8192"], "argument --node-memory-mb: '-8192' is not a whole number from 1 to",
     "hrwsi nomad-emulator"),
    (["nomad-emulator", "--node-disk-mb", "99999999999"], "argument --node-disk-mb: '99999999999' is not a whole number",
     "hrwsi nomad-emulator"),
    (["nomad-emulator", "--node-reserved-memory-mb=-1"], "argument --node-reserved-memory-mb: '-1' is not a whole number "
     "from 0 to", "hrwsi nomad-emulator"),
    (["nomad-emulator", "--node-reserved-cpu-mhz", "4000"], "--node-reserved-cpu-mhz 4000 leaves the nodes no CPU "
     "(--node-cpu-mhz 4000)", "hrwsi nomad-emulator"),
    (["nomad-emulator", "--node", "a:-1"], "--node 'a:-1': expected NAME", "hrwsi nomad-emulator"),
    (["nomad-emulator", "--node", "a:4000:0"], "--node 'a:4000:0': expected NAME", "hrwsi nomad-emulator")])
def test_a_usage_error_is_one_line_with_exit_code_2_naming_the_commands_help(env, command, says, help_of):
    """(Typer's own usage errors were a box of four lines: the usage, "Try ... for help." and the message framed;
    found walking README through) A long unknown option is cut. (`hrwsi nomad-emulator`, argparse's, printed its
    usage, 25 lines naming `python -m hrwsi.testing.nomad_emulator`, then the error; found by review)"""
    line = one_line_error(run(command, env, check=False), says, code=2)
    assert line.endswith(f"ee `{help_of} --help`"), line  # ("; see ...", or "... Did you mean 'status'? See ...")
    assert line.startswith("error: ") and len(line) < 400, line


@pytest.mark.parametrize("command, usage", [([], "Usage: hrwsi [OPTIONS] COMMAND"),
                                            (["db"], "Usage: hrwsi db [OPTIONS] COMMAND"),
                                            (["task"], "Usage: hrwsi task [OPTIONS] COMMAND")])
def test_hrwsi_or_a_group_alone_prints_its_help_with_exit_code_0_as_help_does(env, command, usage):
    """(they printed the help and exited 2, Click's usage error, which hrwsi's exit codes read as "the environment is
    not ready"; found by review) As `--help`, kubectl's and docker's: the help on stdout, exit code 0."""
    alone = run(command, env, check=False)
    assert alone.returncode == 0 and alone.stderr == "", (alone.returncode, alone.stderr)
    assert usage in " ".join(alone.stdout.split()), alone.stdout
    assert alone.stdout.rstrip() == run([*command, "--help"], env).stdout.rstrip()


def test_a_configuration_files_name_or_key_holding_a_line_break_stays_on_its_problems_line(env, tmp_path):
    """(the file's name and a key the file wrote were printed as they came: a line break in them split a problem's
    line into two `error:` lines, the second with no sense of its own; the other refusals pass what a user wrote
    through one_sentence; found by review)"""
    one_line_error(run(["config", "validate", "--offline", str(tmp_path / "a\nb.toml")], env, check=False),
                   "no such file", "a\\x0ab.toml", code=2)
    odd = tmp_path / "c\nd.toml"
    odd.write_text('[[flavour]]\nname = "eo2.large"\ncpu = 4\nram_mb = 16000\ndisk_mb = 100000\n"x\\ny" = 1\n')
    result = run(["config", "validate", "--offline", str(odd)], env, check=False)
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 2, result.stderr
    assert lines[0].startswith("error: ") and "c\\x0ad.toml: 1 problem, nothing written" in lines[0], lines
    assert lines[1].startswith("error: flavour[0].x\\x0ay: unknown key"), lines


def test_db_inits_refusal_of_a_newer_schema_is_one_line_whatever_the_migrations_name_holds(env, db):
    """(`hrwsi db init` said the names of the database's migrations as they came: a line break split its refusal;
    found by review)"""
    db.execute("INSERT INTO public.hrwsi_schema_migration (version, name, checksum) VALUES (9998, 'from\nbeyond', 'x')")
    one_line_error(run(["db", "init"], env, check=False), "upgraded by a newer hrwsi", "9998_from\\x0abeyond", code=2)


def test_a_server_that_lacks_the_urls_database_is_said_to_run_and_what_creates_it(env, server_url):
    """(after a demo, whose embedded server has the demo's database alone, `hrwsi status` said "cannot connect ...:
    FATAL: database "hrwsi" does not exist; check that the server runs", of a server that ran; found walking README
    through)"""
    from hrwsi.database import with_database

    result = run(["status"], {**env, "HRWSI_DATABASE_URL": with_database(server_url, "hrwsi_never_made")}, check=False)
    line = one_line_error(result, "runs but has no database 'hrwsi_never_made'", "`hrwsi db start` creates",
                          "CREATE DATABASE", code=2)
    assert "check that the server runs" not in line, line


def test_the_demo_refuses_in_one_line_to_replace_a_database_of_its_name_it_did_not_create(env, server_url, tmp_path):
    """(the demo dropped a user's `hrwsi_demo`, on the server HRWSI_DATABASE_URL named, with its tables); and a refused
    demo leaves the previous demo's home alone (its services may be working in it)."""
    import psycopg

    from hrwsi.database import drop_database
    from tests.integration.test_demo import a_users_database

    url = a_users_database(server_url, "hrwsi_demo")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "plan.png").write_text("the previous demo's")
    try:
        result = run(["demo", "--inputs", "0", "--home", str(tmp_path / "demo")],
                     {**env, "HRWSI_DATABASE_URL": server_url}, check=False)
        one_line_error(result, "database 'hrwsi_demo' (", "was not created by `hrwsi demo`",
                       "--database <another name>, or drop it yourself", code=1)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT id FROM orders").fetchall() == [(42,)]
        assert (tmp_path / "demo" / "plan.png").read_text() == "the previous demo's"
    finally:
        drop_database(server_url, "hrwsi_demo")
