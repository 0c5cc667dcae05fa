"""`hrwsi timeliness`, `hrwsi reprocess` and `hrwsi campaigns` as ops run them (ADR 0010)."""

from __future__ import annotations

import json

import psycopg
import pytest

from hrwsi.configuration import load
from tests.acceptance.conftest import run
from tests.integration.conftest import single_routine_configuration


@pytest.fixture
def processed(db):
    """One input of 2026-01-10 on 32TLR, processed, with its product registered 2 h after sensing."""
    document = single_routine_configuration(["true"])
    document["condition"][0].update({"deadline_hours": 3})
    load(db, document)
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, published_at)
                  VALUES ('in', '/in/a', '32TLR', now() - interval '2 hours', now() - interval '1 hour')""")
    db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', worker = 'w01', planned_start = now()")
    db.execute("UPDATE hrwsi.processing_task SET state = 'processed'")
    db.execute("INSERT INTO hrwsi.product (task_id, path, product_type) SELECT id, '/out/a', 'OUT' "
               "FROM hrwsi.processing_task")
    return db


def test_timeliness_prints_delays_and_share_on_time_and_json(processed, env):  # noqa: F811
    table = run(["timeliness", "--days", "2"], env).stdout
    assert "work" in table and "nrt" in table and "32TLR" in table
    assert "2.0 h / 2.0 h" in table and "1.0 h / 1.0 h" in table and "100.0 % (1/1)" in table
    data = json.loads(run(["timeliness", "--lane", "nrt", "--json"], env).stdout)
    [summary] = data["summary"]
    assert (summary["products"], summary["on_time"], summary["share_on_time"]) == (1, 1, 1.0)
    assert summary["p50_from_sensing_s"] == pytest.approx(7200, abs=60)
    assert "no product registered in the last 7 day(s) matches" in run(["timeliness", "--lane", "archive"], env).stdout


def test_reprocess_starts_a_campaign_and_campaigns_shows_and_cancels_it(processed, env):  # noqa: F811
    started = run(["reprocess", "--routine", "work", "--from", "2020-01-01", "--to", "2100-01-01",
                   "--tile", "32TLR", "--command", "{python} -c pass", "--name", "v2"], env).stdout
    assert started.startswith("campaign 1: 1 task(s) of routine work") and "archive lane" in started
    shown = run(["campaigns"], env).stdout
    assert "campaign 1 v2: waiting" in shown and "-c pass" in shown and "work" in shown
    [campaign] = json.loads(run(["campaigns", "--json"], env).stdout)
    assert (campaign["status"], campaign["totals"]["waiting"], campaign["tiles"]) == ("waiting", 1, ["32TLR"])
    cancelled = run(["campaigns", "--cancel", "1"], env).stdout
    assert "campaign 1: 1 open task(s) cancelled" in cancelled and "campaign 1 v2: cancelled" in cancelled


@pytest.mark.parametrize(("arguments", "code", "message"), [
    (["--routine", "work", "--from", "2020-01-01", "--to", "2020-02-01"], 1, "nothing to reprocess"),
    (["--routine", "work", "--condition", "in", "--from", "2020-01-01", "--to", "2100-01-01"], 1,
     "give the routine or the condition"),
    (["--routine", "nope", "--from", "2020-01-01", "--to", "2100-01-01"], 1, "no routine 'nope'"),
    (["--routine", "work", "--from", "01/01/2020", "--to", "2100-01-01"], 2, "'01/01/2020' is not a date"),
])
def test_reprocess_refuses_with_one_line_that_says_why(processed, env, arguments, code, message):  # noqa: F811
    result = run(["reprocess", *arguments], env, check=False)
    assert result.returncode == code and message in result.stderr and result.stderr.count("\n") == 1
    assert "campaign 1" not in run(["campaigns"], env).stdout


@pytest.mark.parametrize(("command", "not_done"), [
    (["reprocess", "--routine", "work", "--from", "2020-01-01", "--to", "2100-01-01"], "and started no campaign"),
    (["chain-missed", "in"], "and chained nothing"),
])
def test_a_command_that_waited_for_a_correction_under_way_says_so_naming_its_session(processed, env, database_url,
                                                                                     command, not_done):
    """Found by review: `hrwsi reprocess` waits for a correction of an input under way (migration 0102), and a wait
    that ran out said only "the database cancelled a statement: canceling statement due to lock timeout; it ran past
    lock_timeout", not what it waited for. It says so, naming the session that corrects, as the harvester does."""
    [corrected] = processed.execute("SELECT id FROM hrwsi.input").fetchone()
    correcting = psycopg.connect(database_url)  # a data engineer's correction, not committed yet
    try:
        correcting.execute("SET application_name = 'psql'")
        correcting.execute("SELECT hrwsi.correct_input(%s, mission => 'S2B')", (corrected,))
        result = run(command, {**env, "PGOPTIONS": "-c lock_timeout=300"}, check=False)
        pid = correcting.info.backend_pid
    finally:
        correcting.close()
    said = result.stderr.strip()
    assert result.returncode == 2 and result.stderr.count("\n") == 1, said
    assert said.startswith(f"error: hrwsi {command[0]} waited lock_timeout (300ms) for the correction of an input under "
                           f"way (hrwsi.correct_input in session {pid}, "), said
    assert "application 'psql'" in said and said.endswith(
        f"{not_done}: run it again once that correction commits or rolls back (`hrwsi status` names a session left "
        "open)"), said
    assert processed.execute("SELECT count(*) FROM hrwsi.campaign").fetchone()[0] == 0


def test_a_held_campaign_is_shown_by_status_and_campaigns_and_released_with_one_option(processed, env):  # noqa: F811
    run(["reprocess", "--routine", "work", "--from", "2020-01-01", "--to", "2100-01-01", "--command", "x"], env)
    # (as the failure policy does it, at the routine's hold_after_failures: tests/integration/test_operations.py)
    processed.execute("UPDATE hrwsi.campaign SET on_hold = true, consecutive_failures = 5, hold_reason = "
                      "'5 consecutive failures (limit 5 of routine work); last: cannot start the routine ''x'' [red]'")
    status = run(["status"], env).stdout
    assert "campaign on hold: 1 (routine work, 1 task(s) held" in status
    assert "why: 5 consecutive failures (limit 5 of routine work); last: cannot start the routine 'x' [red]" in status
    assert "hrwsi campaigns --release 1" in status and "production goes on" in status
    assert "routine on hold" not in status and "tasks on hold one by one" not in status
    shown = run(["campaigns"], env).stdout
    assert "campaign 1: on hold (5 consecutive failures" in shown and "`hrwsi campaigns --release 1` starts it" in shown
    released = run(["campaigns", "--release", "1"], env).stdout
    assert "campaign 1 released; 1 held task(s) will be planned" in released and "campaign 1: waiting" in released
    missing = run(["campaigns", "--release", "9"], env, check=False)
    assert missing.returncode == 1 and missing.stderr.strip() == "error: no campaign 9"
    again = run(["campaigns", "--release", "1"], env, check=False)  # (it said "released; 0 held task(s)")
    assert again.returncode == 1 and again.stderr.strip() == \
        "error: campaign 1 is not on hold: only a held campaign can be released"
    # Held by hand (found by exploratory testing: only its failures, or its routine's hold, could hold it),
    # then cancelled: ended, no longer "on hold ... --release" (it still said so after its cancel).
    held = run(["campaigns", "--hold", "1"], env).stdout
    assert ("campaign 1 is on hold: 1 waiting task(s) held, 0 dispatched or running go on; production goes on. "
            "`hrwsi campaigns --release 1` starts it again") in " ".join(held.split())
    assert "campaign 1: on hold (held by an operator" in held
    assert "campaign 1 was already on hold" in run(["campaigns", "--hold", "1"], env).stdout
    cancelled = run(["campaigns", "--cancel", "1"], env).stdout
    assert "campaign 1: cancelled" in cancelled and "on hold" not in cancelled
    assert "campaign on hold" not in run(["status"], env).stdout


def test_campaigns_says_finished_with_a_task_cancelled_by_hand_and_refuses_to_cancel_it(processed, env):  # noqa: F811
    run(["reprocess", "--routine", "work", "--from", "2020-01-01", "--to", "2100-01-01", "--no-chain"], env)
    [task] = [r[0] for r in processed.execute("SELECT id FROM hrwsi.processing_task WHERE campaign_id = 1")]
    run(["cancel", str(task)], env)  # one task by hand: the campaign itself goes on (and here, ends)
    shown = run(["campaigns"], env).stdout
    assert "campaign 1: finished with 1 cancelled" in shown  # it said "campaign 1: cancelled"
    assert json.loads(run(["campaigns", "--json"], env).stdout)[0]["status"] == "finished with 1 cancelled"
    refused = run(["campaigns", "--cancel", "1"], env, check=False)  # it said "0 open task(s) cancelled", exit 0
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == "error: campaign 1 had already finished (finished with 1 cancelled): nothing was cancelled\n"


def test_reprocess_refuses_to_start_an_open_campaign_twice_unless_told_again(processed, env):  # noqa: F811
    request = ["reprocess", "--routine", "work", "--from", "2020-01-01", "--to", "2100-01-01", "--tile", "32TLR"]
    run(request, env)
    twice = run(request, env, check=False)  # it started campaign 2 silently: both ran
    assert twice.returncode == 1 and twice.stdout == "" and twice.stderr.count("\n") == 1
    assert twice.stderr.startswith("error: campaign 1 already reprocesses these inputs with this version and is waiting: "
                                   "`hrwsi campaigns --id 1` shows it; add --again to start another one anyway")
    assert "campaign 2" not in run(["campaigns"], env).stdout
    assert run([*request, "--again"], env).stdout.startswith("campaign 2: 1 task(s) of routine work")
