"""The reading commands on whatever terminal ops have: times in UTC whatever the client's zone, on a
terminal that is not UTF-8, in 80 columns (the width when piped), durations as people read them.
Found by exploratory testing (round 5b)."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime

import pytest

from hrwsi.configuration import load
from tests.acceptance.conftest import HRWSI, run
from tests.integration.conftest import single_routine_configuration

LONG_PATH = "/in/d/a/quite/long/path/S2B_MSIL1C_20260101T103421_N0510_R008_T32TLR_20260101T120000.SAFE"
# A time as --json writes it (ISO 8601), with the zone it says: Z, or an offset such as +13:00.
JSON_TIME = re.compile(r'"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(Z|[+-]\d\d:\d\d)"')


@pytest.fixture
def production(db, env):
    """Processed tasks with products (one of a scene sensed in 1950, one of a scene whose times were
    given later than its product was made), a planned task, a campaign, alerts, a source and services."""
    document = single_routine_configuration(["true"])
    document["condition"][0].update({"deadline_hours": 3})
    load(db, document)
    # (the scene of 1950 in lane nrt, as a data engineer may keep it: given no lane, an input more than a
    # day past its deadline is back-fill, and timeliness would count it in its own row)
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, published_at, lane)
                  VALUES ('in', '/in/a', '32TLR', now() - interval '2 hours', now() - interval '1 hour', NULL),
                         ('in', '/in/1950', '32TLR', '1950-01-01T00:00Z', '1950-01-02T00:00Z', 'nrt'),
                         ('in', '/in/later', '32TLR', now() + interval '50 minutes', now() + interval '55 minutes',
                          NULL)""")
    db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w01', planned_start = now()")
    db.execute("UPDATE hrwsi.processing_task SET state = 'processed'")
    db.execute("INSERT INTO hrwsi.product (task_id, path, product_type) SELECT id, '/out/' || id, 'OUT' "
               "FROM hrwsi.processing_task")
    db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, published_at) "
               "VALUES ('in', %s, '32TLR', now() - interval '1 hour', now())", (LONG_PATH,))
    db.execute("UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w02', planned_start = now(), "
               "planned_end = now() + interval '1 minute', state_reason = 'waiting for w02 to finish what it runs "
               "before this task can start (café ☃ 雪)' WHERE state = 'pending'")
    run(["reprocess", "--routine", "work", "--from", "2020-01-01", "--to", "2100-01-01", "--name", "v2"], env)
    db.execute("""INSERT INTO hrwsi.alert (kind, subject, body, sent_at, attempts)
                  VALUES ('task_terminated', 'task 2 (work) terminated after 3 attempts', 'b', now(), 1)""")
    db.execute("""INSERT INTO hrwsi.alert (kind, subject, body, attempts, last_error)
                  VALUES ('deadline_missed', 'task 4 (work) missed its deadline', 'b', 3,
                          'https://hooks.example.org/services/T000/B000/XXXX answered 500 Internal Server Error')""")
    db.execute("""INSERT INTO hrwsi.harvest_source (name, kind, product_type, config, cron, last_run_at, next_run_at)
                  VALUES ('copernicus-s2-l1c', 'catalogue', 'IN',
                          '{"url": "https://catalogue.dataspace.copernicus.eu/odata/v1/Products",
                            "collection": "SENTINEL-2"}', '0 * * * *', now() - interval '1 hour',
                          now() + interval '1 hour')""")
    db.execute("""INSERT INTO hrwsi.service_instance (id, kind, host, pid, version)
                  VALUES ('orchestrator-prod-orchestrator-01-1234', 'orchestrator', 'prod-orchestrator-01.example.org',
                          1234, '0.1.0')""")
    return db


READING = [["status"], ["tasks"], ["task", "show", "1"], ["lineage", "1"], ["alerts"], ["sources"], ["plan", "show"],
           ["timeliness"], ["campaigns"], ["campaigns", "--id", "1"]]


@pytest.mark.parametrize("command", READING, ids=" ".join)
def test_every_json_writes_times_in_utc_with_a_z_whatever_the_clients_time_zone(production, env, command):
    # `hrwsi campaigns --json` wrote "2026-01-01T13:00:00+13:00" under PGTZ=Pacific/Auckland.
    out = run([*command, "--json"], {**env, "PGTZ": "Pacific/Auckland"}).stdout
    zones = {match.group(1) for match in JSON_TIME.finditer(out)}
    assert zones <= {"Z"}, out
    if command[0] == "campaigns":
        [campaign] = json.loads(out)
        assert (campaign["measured_from"], campaign["measured_to"]) == ("2020-01-01T00:00:00Z", "2100-01-01T00:00:00Z")
        assert campaign["created_at"].endswith("Z")


@pytest.mark.parametrize("encoding", ["iso-8859-15", "ascii"])
@pytest.mark.parametrize("command", [*READING, ["task", "show", "4"]], ids=" ".join)
def test_every_reading_command_prints_on_a_terminal_that_is_not_utf8(production, env, command, encoding):
    # Each of them ended with "'charmap' codec can't encode character '\u2026'" (a cell cut short),
    # '\u2019' (campaigns), '\u2014' (task show), exit 2; `status` after 15 lines.
    result = subprocess.run([*HRWSI, *command], env={**env, "COLUMNS": "80", "PYTHONIOENCODING": encoding},
                            capture_output=True, timeout=120)
    assert (result.returncode, result.stderr) == (0, b"")
    shown = " ".join(result.stdout.decode(encoding).split())  # (as one line: a long line wraps at 80 columns)
    if command == ["task", "show", "4"]:
        assert "task 4 (work): planned - waiting for w02" in shown
        assert "(caf" + ("\u00e9" if encoding != "ascii" else "?") + " ? ??)" in shown
    if command[0] == "campaigns":
        assert "version the routine's own" in shown


@pytest.mark.parametrize("encoding", ["iso-8859-15", "ascii"])
def test_json_on_a_terminal_that_is_not_utf8_holds_every_character(production, env, encoding):
    result = subprocess.run([*HRWSI, "task", "show", "4", "--json"], env={**env, "PYTHONIOENCODING": encoding},
                            capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout.decode(encoding))
    assert data["state_reason"].endswith("(café ☃ 雪)")


def _as_printed(value: str) -> str:
    """A --json time as the tables print it (2026-01-31 10:00:00Z: to the second, as the dashboard), or a day as it is."""
    if len(value) == 10:
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S") + "Z"


# The times each command's table shows, as --json has them.
SHOWN_TIMES = {
    "tasks": lambda data: [row[key] for row in data for key in ("deadline_at", "planned_start") if row[key]],
    "alerts": lambda data: [row[key] for row in data["alerts"] for key in ("created_at", "sent_at") if row[key]],
    "status": lambda data: [service["started_at"] for service in data["services"]],
    "sources": lambda data: [row[key] for row in data for key in ("last_run_at", "next_run_at")],
    "timeliness": lambda data: [row["day"] for row in data["per_day"]],
    "plan show": lambda data: [row[key] for row in data["tasks"] for key in ("planned_start", "planned_end")],
    "task show 1": lambda data: [row["at"] for row in data["history"]],
}


@pytest.mark.parametrize("command", list(SHOWN_TIMES))
def test_in_80_columns_every_time_is_printed_whole(production, env, command):
    # At 80 columns (the width when piped) `hrwsi tasks` showed a deadline as 202…/00:…, `hrwsi
    # timeliness` a day as 2026-12…, `hrwsi alerts` and `hrwsi status` lost their times' Z.
    times = SHOWN_TIMES[command](json.loads(run([*command.split(), "--json"], env).stdout))
    printed = run(command.split(), {**env, "COLUMNS": "80"}).stdout
    assert times and all(_as_printed(value) in printed for value in times), printed


@pytest.mark.parametrize("command, names", [
    ("status", ("orchestrator-prod-orchestrator-01-1234", "prod-orchestrator-01.example.org", "launcher-prod-2-99",
                "0.1.0+schema0074")),
    ("alerts", ("task_terminated", "deadline_missed", "task 4 (work) missed its deadline"))])
def test_in_80_columns_every_name_that_tells_rows_apart_is_printed_whole(production, env, command, names):
    # Found by exploratory testing (2026-12-06): at 80 columns (an ssh terminal's, and the width when
    # piped) `hrwsi status` cut each service's kind, instance and version to six characters, `harve…`,
    # `launc…`, `0.1.0…`, and its stale-heartbeat sentence to a column of words; `hrwsi alerts` its kinds.
    production.execute("""INSERT INTO hrwsi.service_instance (id, kind, host, pid, version, heartbeat_at)
                          VALUES ('launcher-prod-2-99', 'launcher', 'prod-2', 99, '0.1.0+schema0074',
                                  now() - interval '5 minutes')""")
    production.execute("UPDATE hrwsi.alert SET sent_at = NULL")  # (none sent: the table fitted, its kinds cut)
    printed = run(command.split(), {**env, "COLUMNS": "80"}).stdout
    assert all(name in printed for name in names), printed
    if command == "status":
        assert "(stale: dead or hung?)" in printed, printed


def test_timeliness_says_years_and_marks_and_counts_negative_delays(production, env):
    # A scene sensed in 1950 showed as 23755.4 d; a scene "sensed" after its product was made (times
    # inserted without a zone) was shown and averaged without a mark.
    printed = run(["timeliness"], env).stdout
    assert re.search(r"\d+\.\d years", printed) and not re.search(r"\d{3,}\.\d d", printed), printed
    assert "3 (1 negative)" in printed
    assert "1 product(s) have a negative delay: registered before their input was sensed or published" in printed
    data = json.loads(run(["timeliness", "--json"], env).stdout)
    assert [row["negative_delays"] for row in data["summary"]] == [1]
    assert [row["negative_delays"] for row in data["per_day"]] == [1]


def test_status_never_says_a_heartbeat_came_a_negative_time_ago(production, env):
    # (a service whose clock is ahead of the database's; the dashboard already said 0 s)
    production.execute("UPDATE hrwsi.service_instance SET heartbeat_at = now() + interval '30 seconds'")
    printed = run(["status"], env).stdout
    assert "0 s ago" in printed and not re.search(r"-\d+ s ago", printed), printed
