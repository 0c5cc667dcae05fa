"""hrwsi.record_outcomes: how attempts ended, their products and their tasks' next states, in one call."""

import psycopg
import pytest

LEASE = 30.0
ME = "launcher-test"


@pytest.fixture
def world(db):
    """One worker, one routine making products of type OUT, a launcher with a fresh lease."""
    db.execute("INSERT INTO hrwsi.flavour VALUES ('big', 64, 64000, 64000)")
    db.execute("INSERT INTO hrwsi.worker (name, flavour) VALUES ('w1', 'big')")
    db.execute("INSERT INTO hrwsi.service_instance (id, kind, host, pid) VALUES (%s, 'launcher', 'here', 1)", (ME,))
    db.execute("""INSERT INTO hrwsi.processing_routine (name, cpu, ram_mb, storage_mb, expected_duration, command,
                  input_product_type, output_product_type) VALUES ('work', 1, 100, 10, '1 min', ARRAY['true'], 'IN', 'OUT')""")
    db.execute("INSERT INTO hrwsi.processing_condition (name, routine) VALUES ('work_c', 'work')")
    return db


def dispatched_jobs(db, count: int, measured_at: str | None = None) -> list[int]:
    """`count` new tasks, dispatched: their job ids, in the order of their tasks."""
    db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, measured_at)
                  SELECT 'work_c', '/in/' || gen_random_uuid(), %s FROM generate_series(1, %s)""", (measured_at, count))
    rows = db.execute("""SELECT (job).job_id FROM hrwsi.dispatch(%s, 'dry-run', %s, 1000, '/data')
                         WHERE (job).job_id IS NOT NULL ORDER BY (job).task_id""", (ME, LEASE)).fetchall()
    assert len(rows) == count
    return [r[0] for r in rows]


def record(db, jobs: list[int], products: list[tuple[int, str]]) -> dict[int, tuple[str, str]]:
    """Record every job processed with the given (job, path) products; the job and task state per job."""
    rows = db.execute(
        """SELECT job_id, job_state, task_state FROM hrwsi.record_outcomes(
               %s, %s, 1, %s::bigint[], %s::text[], %s::integer[], %s::text[], %s::timestamptz[], %s::timestamptz[],
               %s::text[], %s::bigint[], %s::text[], %s::bigint[])""",
        (ME, LEASE, jobs, ["processed"] * len(jobs), [0] * len(jobs), ["ok"] * len(jobs), [None] * len(jobs),
         [None] * len(jobs), [None] * len(jobs), [j for j, _ in products], [p for _, p in products],
         [7] * len(products))).fetchall()
    return {job: (job_state, task_state) for job, job_state, task_state in rows}


def products_of(db, job: int) -> list[tuple[str, str, int]]:
    return db.execute("""SELECT p.path, p.product_type, p.size_bytes FROM hrwsi.product p
                         JOIN hrwsi.job j ON j.task_id = p.task_id WHERE j.id = %s ORDER BY p.path""",
                      (job,)).fetchall()


def reason_of(db, job: int) -> str:
    return db.execute("""SELECT t.state_reason FROM hrwsi.processing_task t JOIN hrwsi.job j ON j.task_id = t.id
                         WHERE j.id = %s""", (job,)).fetchone()[0]


def message_of(db, job: int) -> str:
    return db.execute("SELECT message FROM hrwsi.job WHERE id = %s", (job,)).fetchone()[0]


def test_each_processed_attempt_of_a_batch_registers_the_products_it_listed_and_only_those(world):
    a, b, c = dispatched_jobs(world, 3)
    got = record(world, [a, b, c], [(a, "/p/a1"), (c, "/p/c1"), (c, "/p/c2")])
    assert got == {a: ("processed", "processed"), b: ("processed", "processed"), c: ("processed", "processed")}
    assert products_of(world, a) == [("/p/a1", "OUT", 7)]
    assert products_of(world, b) == []
    assert products_of(world, c) == [("/p/c1", "OUT", 7), ("/p/c2", "OUT", 7)]
    assert [reason_of(world, j) for j in (a, b, c)] == ["1 product(s)", "0 product(s)", "2 product(s)"]


def test_a_product_already_registered_fails_its_attempt_with_the_reason_and_the_rest_of_the_batch_is_recorded(world):
    first, = dispatched_jobs(world, 1)
    record(world, [first], [(first, "/p/x")])
    clash, fine = dispatched_jobs(world, 2)
    got = record(world, [clash, fine], [(clash, "/p/x"), (clash, "/p/y"), (fine, "/p/z")])
    assert got[clash] == ("internal_error", "pending")  # retried
    first_task = world.execute("SELECT task_id FROM hrwsi.job WHERE id = %s", (first,)).fetchone()[0]
    assert message_of(world, clash) == (f"product /p/x is already registered (by task {first_task}); "
                                        f"nothing of this attempt was registered")
    assert products_of(world, clash) == [], "not /p/y either: nothing of that attempt"
    assert got[fine] == ("processed", "processed")
    assert products_of(world, fine) == [("/p/z", "OUT", 7)]


def test_a_path_listed_twice_in_one_batch_fails_both_attempts_that_list_it(world):
    one, other, fine = dispatched_jobs(world, 3)
    got = record(world, [one, other, fine], [(one, "/p/dup"), (other, "/p/dup"), (fine, "/p/ok")])
    assert got[one][0] == got[other][0] == "internal_error"
    assert "product /p/dup is already registered (twice in this batch)" in message_of(world, one)
    assert got[fine] == ("processed", "processed")


def test_products_listed_out_of_the_order_of_their_outcomes_are_refused_and_nothing_is_recorded(world):
    a, b = dispatched_jobs(world, 2)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not among the outcomes after the job"):
        record(world, [a, b], [(b, "/p/b1"), (a, "/p/a1")])
    assert world.execute("SELECT count(*) FROM hrwsi.job WHERE state = 'submitted'").fetchone()[0] == 2


def test_an_attempt_an_operator_asked_to_stop_is_recorded_cancelled_whatever_it_reported(world):
    stopped, fine = dispatched_jobs(world, 2)
    world.execute("UPDATE hrwsi.job SET cancel_requested = true WHERE id = %s", (stopped,))
    got = record(world, [stopped, fine], [(stopped, "/p/s1"), (fine, "/p/f1")])
    assert got[stopped][0] == "cancelled"
    assert message_of(world, stopped) == "cancelled by an operator: ok"
    assert products_of(world, stopped) == []
    assert got[fine] == ("processed", "processed") and products_of(world, fine) == [("/p/f1", "OUT", 7)]


def test_a_batch_is_recorded_the_same_in_whatever_order_its_outcomes_come(world):
    jobs = dispatched_jobs(world, 5)
    shuffled = [jobs[3], jobs[0], jobs[4], jobs[1], jobs[2]]
    got = record(world, shuffled, [(j, f"/p/{j}") for j in shuffled])
    assert set(got) == set(jobs) and all(v == ("processed", "processed") for v in got.values())
    assert all(products_of(world, j) == [(f"/p/{j}", "OUT", 7)] for j in jobs)


def test_a_job_listed_twice_in_a_batch_is_recorded_once_with_the_products_of_its_first_listing(world):
    job, = dispatched_jobs(world, 1)
    got = record(world, [job, job], [(job, "/p/once")])
    assert got == {job: ("processed", "processed")}
    assert products_of(world, job) == [("/p/once", "OUT", 7)]
    assert reason_of(world, job) == "1 product(s)"


def test_a_batch_reads_each_job_and_task_through_its_primary_key_whatever_the_statistics(world, database_url):
    # The plan a session caches at its first call follows the statistics of that moment. Taken while
    # nothing ran (every task pending), they estimate one running task; a plan that then read the
    # running tasks through the index of states compared each with every outcome of the batch: a
    # nested loop of one batch against the other, 1,000 outcomes in 200 ms instead of 50.
    world.execute("""INSERT INTO hrwsi.input (processing_condition, input_path)
                     SELECT 'work_c', '/in/' || gen_random_uuid() FROM generate_series(1, 60)""")
    world.execute("ANALYZE")
    jobs = [r[0] for r in world.execute("""SELECT (job).job_id FROM hrwsi.dispatch(%s, 'dry-run', %s, 1000, '/data')
                                             WHERE (job).job_id IS NOT NULL""", (ME, LEASE)).fetchall()]
    plans: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as session:  # a new session: a new cached plan
        session.add_notice_handler(lambda notice: plans.append(notice.message_primary))
        try:
            session.execute("LOAD 'auto_explain'")
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("this role may not load auto_explain (HRWSI_DATABASE_URL names a server where it is not a superuser)")
        for setting in ("SET auto_explain.log_min_duration = 0", "SET auto_explain.log_nested_statements = on",
                        "SET auto_explain.log_level = notice"):
            session.execute(setting)
        recorded = record(session, jobs, [])
    assert len(recorded) == 60 and set(recorded.values()) == {("processed", "processed")}
    [plan] = [p for p in plans if "WITH finished AS" in p]
    assert keyed_reads(plan, "processing_task") and keyed_reads(plan, "job"), plan


def keyed_reads(plan: str, table: str) -> bool:
    """True when every read of `table` in an EXPLAIN text is a probe by its key (id = ...), not a
    range of an index of states that every outcome of the batch is then compared with."""
    lines = plan.splitlines()
    reads = [i for i, line in enumerate(lines) if " Scan " in line and f" on {table} " in line]
    for i in reads:
        block = []
        for line in lines[i + 1:]:
            if "->" in line:
                break
            block.append(line)
        if block and block[0].strip() == "Index Cond: (priority > 0)":
            continue  # (whether back-fill waits, for a hand-over hold: once per call, never per outcome; migration 0117)
        if not any("Index Cond: (id = " in line or "Recheck Cond: (id = " in line for line in block):
            return False
    return bool(reads)


def fail(db, jobs: list[int]) -> dict[int, str]:
    """Record every job failed (exit code 3); the task state per job."""
    rows = db.execute(
        """SELECT job_id, task_state FROM hrwsi.record_outcomes(
               %s, %s, 1, %s::bigint[], %s::text[], %s::integer[], %s::text[], %s::timestamptz[], %s::timestamptz[],
               %s::text[], '{}'::bigint[], '{}'::text[], '{}'::bigint[])""",
        (ME, LEASE, jobs, ["external_error"] * len(jobs), [3] * len(jobs), ["exit code 3"] * len(jobs),
         [None] * len(jobs), [None] * len(jobs), [None] * len(jobs))).fetchall()
    return dict(rows)


def test_a_failed_attempt_of_a_held_routine_is_held_not_sent_back_to_be_retried(world):
    """The hold held the tasks waiting then; one whose attempt ended later went back to pending."""
    first, second = dispatched_jobs(world, 2)
    world.execute("SELECT hrwsi.hold_routine('work', 'held by ops')")
    assert fail(world, [first]) == {first: "on_hold"}
    assert reason_of(world, first) == "routine on hold: held by ops"
    world.execute("SELECT hrwsi.release_routine('work')")
    assert fail(world, [second]) == {second: "pending"}, "once released, a failed attempt is retried again"


def test_a_failed_attempt_of_a_held_campaign_is_held_and_production_s_is_retried(world):
    [production] = dispatched_jobs(world, 1, measured_at="2026-01-01T10:00Z")
    record(world, [production], [])
    campaign = world.execute("""SELECT campaign_id FROM hrwsi.reprocess(routine => 'work',
                                measured_from => '2026-01-01', measured_to => '2026-01-02')""").fetchone()[0]
    [redo] = [r[0] for r in world.execute("""SELECT (job).job_id FROM hrwsi.dispatch(%s, 'dry-run', %s, 1000, '/data')
                                             WHERE (job).job_id IS NOT NULL""", (ME, LEASE))]
    [fresh] = dispatched_jobs(world, 1)
    world.execute("UPDATE hrwsi.campaign SET on_hold = true, hold_reason = '5 consecutive failures'")
    assert fail(world, [redo, fresh]) == {redo: "on_hold", fresh: "pending"}
    assert reason_of(world, redo) == f"campaign {campaign} on hold: 5 consecutive failures"



def history_of(db, job: int) -> list[tuple[str, str]]:
    return db.execute("""SELECT e.state, e.reason FROM hrwsi.task_event e JOIN hrwsi.job j ON j.task_id = e.task_id
                         WHERE j.id = %s ORDER BY e.id""", (job,)).fetchall()


@pytest.mark.parametrize("held", ["routine", "back-fill", "campaign"])
def test_a_failed_attempt_that_holds_its_routine_ends_its_history_on_hold_after_its_failure(world, held):
    """The failure policy holds the routine (its back-fill, its campaign) from the job UPDATE's trigger,
    in the outcome writer's statement, before that statement's task trigger writes the failure's row: the
    history said "on_hold", then "pending - attempt 1 external_error" last, of a task on hold."""
    world.execute("UPDATE hrwsi.processing_routine SET hold_after_failures = 1")
    if held == "back-fill":
        world.execute("UPDATE hrwsi.processing_condition SET lane = 'archive'")
    measured = "2026-01-01T10:00Z" if held == "campaign" else None
    [job] = dispatched_jobs(world, 1, measured_at=measured)
    if held == "campaign":
        record(world, [job], [])
        world.execute("""SELECT hrwsi.reprocess(routine => 'work', measured_from => '2026-01-01',
                                                measured_to => '2026-01-02')""")
        [job] = [r[0] for r in world.execute("""SELECT (job).job_id FROM hrwsi.dispatch(%s, 'dry-run', %s, 1000, '/data')
                                                WHERE (job).job_id IS NOT NULL""", (ME, LEASE))]
    waiting = world.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, measured_at)
                               VALUES ('work_c', '/in/waiting', %s) RETURNING id""", (measured,)).fetchone()[0]
    assert fail(world, [job]) == {job: "on_hold"}
    history = history_of(world, job)
    assert [state for state, _ in history[-2:]] == ["pending", "on_hold"], history
    assert history[-2][1].startswith("attempt 1 external_error: exit code 3")
    assert [state for state, _ in history].count("on_hold") == 1
    if held == "routine":
        assert history[-1][1] == reason_of(world, job) == "routine on hold: 1 consecutive failures (limit 1); last: exit code 3"
        assert world.execute("""SELECT t.state FROM hrwsi.processing_task t WHERE t.input_id = %s""",
                             (waiting,)).fetchone()[0] == "on_hold", "the routine's waiting task is held with it"
        assert world.execute("SELECT count(*) FROM hrwsi.alert WHERE kind = 'routine_on_hold'").fetchone()[0] == 1


def test_the_back_fill_hold_s_alert_counts_the_failed_task_it_holds(world):
    """Found by review: the failed task whose failure puts the back-fill on hold is held by the outcome writer's next
    statement (its history lags behind it when the hold's trigger runs): the alert's count of the tasks held left it
    out, "1 waiting task(s) held" of two."""
    world.execute("UPDATE hrwsi.processing_routine SET hold_after_failures = 1")
    world.execute("UPDATE hrwsi.processing_condition SET lane = 'archive'")
    [job] = dispatched_jobs(world, 1)
    world.execute("INSERT INTO hrwsi.input (processing_condition, input_path) VALUES ('work_c', '/in/waiting')")
    assert fail(world, [job]) == {job: "on_hold"}
    assert world.execute("SELECT count(*) FROM hrwsi.processing_task WHERE state = 'on_hold'").fetchone() == (2,)
    [body] = [r[0] for r in world.execute("SELECT body FROM hrwsi.alert WHERE kind = 'routine_on_hold'")]
    assert " 2 waiting task(s) held" in body, body
    # (it said "its new back-fill tasks will be;", a word missing: found by review, migration 0106)
    assert "its new back-fill tasks will be held too; its near-real-time work goes on" in body, body


def test_a_routine_held_by_failures_recorded_together_names_the_one_that_finished_last(world):
    """Two failures of one call hold the routine: its reason said "last: " the greatest message of the batch (max),
    here the earlier failure's, which `hrwsi status` and the alert then gave as the routine's latest."""
    world.execute("UPDATE hrwsi.processing_routine SET hold_after_failures = 2")
    latest, earlier = dispatched_jobs(world, 2)
    world.execute(
        """SELECT hrwsi.record_outcomes(%s, %s, 1, %s::bigint[], %s::text[], %s::integer[], %s::text[],
               %s::timestamptz[], %s::timestamptz[], %s::text[], '{}'::bigint[], '{}'::text[], '{}'::bigint[])""",
        (ME, LEASE, [latest, earlier], ["external_error"] * 2, [1, 9],
         ["exit code 1: the input has no band B11", "exit code 9: the disk was full"],
         ["2026-01-01T10:00Z", "2026-01-01T09:00Z"], ["2026-01-01T10:05Z", "2026-01-01T09:05Z"], [None, None]))
    reason = world.execute("SELECT hold_reason FROM hrwsi.processing_routine WHERE name = 'work'").fetchone()[0]
    assert reason == "2 consecutive failures (limit 2); last: exit code 1: the input has no band B11"


def test_timeliness_counts_production_s_products_not_a_reprocessing_campaign_s(world):
    """A campaign's products (scenes sensed long before, reprocessed) were counted with production's in the lane's
    rows of `hrwsi timeliness` and the dashboard: here a back-fill product sensed an hour before, and its campaign's
    made years after sensing, one row of 2 products whose delays were the campaign's."""
    from hrwsi.timeliness import Filters, report

    world.execute("UPDATE hrwsi.processing_condition SET lane = 'archive'")
    [production] = dispatched_jobs(world, 1, measured_at="2026-01-01T10:00Z")
    record(world, [production], [(production, "/out/production")])
    world.execute("""SELECT hrwsi.reprocess(routine => 'work', measured_from => '2026-01-01',
                                            measured_to => '2026-01-02')""")
    [redo] = [r[0] for r in world.execute("""SELECT (job).job_id FROM hrwsi.dispatch(%s, 'dry-run', %s, 1000, '/data')
                                             WHERE (job).job_id IS NOT NULL""", (ME, LEASE))]
    record(world, [redo], [(redo, "/out/reprocessed")])
    assert world.execute("SELECT count(*) FROM hrwsi.product_timeliness").fetchone()[0] == 2
    assert world.execute("SELECT sum(products) FROM hrwsi.timeliness").fetchone()[0] == 1
    said = report(world, Filters())
    assert [(row["lane"], row["products"]) for row in said["summary"]] == [("archive", 1)]
    assert sum(row["products"] for row in said["per_day"]) == 1
