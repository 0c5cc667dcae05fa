"""Retention on a real database: what the policy deletes, what it keeps (lineage, open work), the
append-only history, batches that skip locked rows, files, and the orchestrator's side task."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import psycopg
import pytest

from hrwsi import retention
from hrwsi.configuration import load
from tests.integration.conftest import (
    chain_configuration,
    insert_inputs,
    running,
    single_routine_configuration,
    wait_until,
)

OLD = "40 days"


@pytest.fixture
def chain(configure):
    configure(chain_configuration(["true"]))


def make_task(db, path: str, *, condition: str = "l1c", state: str = "processed", product_id: int | None = None,
              age: str | None = OLD, logs: Path | None = None, failed_first: bool = False,
              measured_at: str | None = None) -> int:
    """A task that went through the real transitions to `state` (planned ones stop there), with its jobs."""
    input_id = db.execute("INSERT INTO hrwsi.input (processing_condition, input_path, product_id, measured_at) "
                          "VALUES (%s, %s, %s, %s) RETURNING id", (condition, path, product_id, measured_at)).fetchone()[0]
    # The input's trigger created its task (pending) in the same statement.
    task_id = db.execute("SELECT id FROM hrwsi.processing_task WHERE input_id = %s", (input_id,)).fetchone()[0]
    if state == "cancelled":
        db.execute("UPDATE hrwsi.processing_task SET state = 'cancelled' WHERE id = %s", (task_id,))
    if state in ("planned", "processed", "terminated"):
        db.execute("UPDATE hrwsi.processing_task SET state = 'planned', worker = 'w01', planned_start = now(), "
                   "planned_end = now() + interval '1 min' WHERE id = %s", (task_id,))
    if state in ("processed", "terminated"):
        attempts = [("internal_error", 1), (state if state == "processed" else "internal_error", 2)] \
            if failed_first else [("processed" if state == "processed" else "internal_error", 1)]
        for job_state, attempt in attempts:
            log = logs / f"hrwsi-{task_id}-{attempt}.log" if logs else None
            # (the launcher's layout: the attempt's directory holds its output, manifest and bookkeeping)
            output = logs.parent / "products" / f"task-{task_id}" / f"attempt-{attempt}" / "output" if logs else None
            if log:
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text(f"attempt {attempt}\n")
                output.mkdir(parents=True)
                (output / "out.dat").write_text("x")
                (output.parent / "manifest.json").write_text("{}")
            db.execute("INSERT INTO hrwsi.job (task_id, attempt, backend, backend_job_id, worker, state, log_path, "
                       "output_dir) VALUES (%s, %s, 'local', %s, 'w01', %s, %s, %s)",
                       (task_id, attempt, f"hrwsi-{task_id}-{attempt}", job_state, str(log) if log else None,
                        str(output) if output else None))
        db.execute("UPDATE hrwsi.processing_task SET state = 'dispatched', attempts = %s WHERE id = %s",
                   (len(attempts), task_id))
        db.execute("UPDATE hrwsi.processing_task SET state = %s WHERE id = %s", (state, task_id))
    if age and state in ("processed", "terminated", "cancelled"):
        db.execute("UPDATE hrwsi.processing_task SET finished_at = now() - %s::interval WHERE id = %s", (age, task_id))
    return task_id


def add_product(db, task_id: int, path: str, product_type: str = "L2A", age: str | None = OLD) -> int:
    return db.execute("INSERT INTO hrwsi.product (task_id, path, product_type, chained_at, created_at) "
                      "VALUES (%s, %s, %s, now(), now() - coalesce(%s::interval, '0'))  RETURNING id",
                      (task_id, path, product_type, age)).fetchone()[0]


async def prune(database_url: str, data_dir: Path) -> retention.PruneReport:
    conn = await asyncpg.connect(database_url)
    try:
        return await retention.prune(conn, data_dir)
    finally:
        await conn.close()


def count(db, sql: str, *args) -> int:
    return db.execute(sql, args).fetchone()[0]


def set_policy(db, **keys):
    load(db, {"retention": keys})


async def test_old_history_and_attempts_go_and_the_task_and_its_products_stay(db, database_url, chain, tmp_path):
    data = tmp_path / "data"
    old = make_task(db, "/l1c/old", logs=data / "logs", failed_first=True)
    add_product(db, old, "/p/old.L2A")
    young = make_task(db, "/l1c/young", age=None, logs=data / "logs")
    report = await prune(database_url, data)
    assert report.rows["task_history"] == 1
    assert count(db, "SELECT count(*) FROM hrwsi.task_event WHERE task_id = %s", old) == 0
    assert count(db, "SELECT count(*) FROM hrwsi.job WHERE task_id = %s", old) == 0
    assert count(db, "SELECT count(*) FROM hrwsi.processing_task WHERE id = %s AND state = 'processed' "
                     "AND history_pruned_at IS NOT NULL", old) == 1
    assert count(db, "SELECT count(*) FROM hrwsi.product WHERE task_id = %s", old) == 1
    assert not (data / "logs" / f"hrwsi-{old}-1.log").exists() and not (data / "logs" / f"hrwsi-{old}-2.log").exists()
    # The failed attempt's output went, with its manifest and bookkeeping (found by exploratory testing).
    assert not (data / "products" / f"task-{old}" / "attempt-1").exists(), "the failed attempt's directory went"
    assert (data / "products" / f"task-{old}" / "attempt-2" / "output" / "out.dat").exists(), "the product stays"
    assert count(db, "SELECT count(*) FROM hrwsi.task_event WHERE task_id = %s", young) > 0
    assert (data / "logs" / f"hrwsi-{young}-1.log").exists()


async def test_a_deleted_task_leaves_no_directory_behind(db, database_url, chain, tmp_path):
    # Found by exploratory testing (2026-12-05): a terminated task's attempt directories (manifest,
    # bookkeeping) stayed on disk for ever; only their output directories were removed.
    data = tmp_path / "data"
    failed = make_task(db, "/l1c/failed", state="terminated", logs=data / "logs", failed_first=True)
    assert (data / "products" / f"task-{failed}" / "attempt-2" / "manifest.json").exists()
    await prune(database_url, data)
    assert count(db, "SELECT count(*) FROM hrwsi.processing_task WHERE id = %s", failed) == 0
    assert not (data / "products" / f"task-{failed}").exists()


async def test_a_processed_attempt_whose_history_went_leaves_only_its_products_on_disk(
        db, database_url, configure, settings, tmp_path):
    # Found by exploratory testing: after retention deleted a processed task's attempts, its attempt
    # directory (exit.json, manifest.json, started.json, supervisor.lock) stayed for ever, five inodes
    # per task. The local backend's real files: a routine that writes one product and one that writes none.
    script = tmp_path / "routine.py"
    script.write_text("import os, pathlib\n"
                      "if not os.environ['HRWSI_INPUT_PATH'].endswith('0'):\n"
                      "    (pathlib.Path(os.environ['HRWSI_OUTPUT_DIR']) / 'out.txt').write_text('product')\n")
    configure(single_routine_configuration([sys.executable, str(script)]))
    async with running(database_url, ["orchestrator", "launcher"], settings, backend="local"):
        insert_inputs(db, 3)
        await wait_until(database_url, "SELECT count(*) = 3 FROM hrwsi.processing_task WHERE state = 'processed'")
    attempts = {Path(d).parent: t for d, t in db.execute("SELECT output_dir, task_id FROM hrwsi.job").fetchall()}
    young = max(attempts.values())
    assert all((a / "exit.json").exists() and (a / "manifest.json").exists() for a in attempts)
    db.execute("UPDATE hrwsi.processing_task SET finished_at = now() - interval '40 days' WHERE id <> %s", (young,))
    for attempt, task in attempts.items():
        if task != young:
            os.utime(attempt, (time.time() - 40 * 86_400,) * 2)
    report = await prune(database_url, settings.data_dir)
    assert report.rows["task_history"] == 2 and not report.file_errors
    for attempt, task in attempts.items():
        if task == young:
            assert (attempt / "exit.json").exists(), "a task whose history is kept keeps its attempt's files"
        elif (attempt / "output" / "out.txt").exists():
            assert sorted(p.name for p in attempt.parent.rglob("*")) == ["attempt-1", "out.txt", "output"], \
                "only the product (and the directories above it) stays"
        else:
            assert not attempt.parent.exists(), "an attempt without products leaves no directory"
    assert sum(1 for a in attempts if (a / "output" / "out.txt").exists()) == 2
    assert count(db, "SELECT count(*) FROM hrwsi.product") == 2


async def test_bookkeeping_an_earlier_version_left_is_cleaned_at_a_processs_first_run_then_daily(
        db, database_url, settings, monkeypatch):
    """Before migration 0071 a processed attempt's directory stayed when retention deleted its job: the
    products tree is looked at for such leftovers at a process's first run and then once a day (it
    lists every attempt directory, and products stay for ever)."""
    from hrwsi import retention

    installation = db.execute("SELECT installation_id::text FROM hrwsi.installation").fetchone()[0]
    def leftover(task):
        attempt = settings.data_dir / "products" / installation / "work" / f"task-{task}" / "attempt-1"
        (attempt / "output").mkdir(parents=True)
        (attempt / "output" / "product.tif").write_text("p")
        (attempt / "exit.json").write_text("{}")
        os.utime(attempt, (time.time() - 40 * 86_400,) * 2)
        return attempt

    first = leftover(900001)
    monkeypatch.setattr(retention, "_attempts_swept_at", None)
    await prune(database_url, settings.data_dir)
    assert sorted(p.name for p in first.rglob("*")) == ["output", "product.tif"], "its product stays, alone"
    second = leftover(900002)
    await prune(database_url, settings.data_dir)
    assert (second / "exit.json").exists(), "not looked at again the same day"
    monkeypatch.setattr(retention, "_attempts_swept_at", time.monotonic() - retention.ATTEMPT_SWEEP_EVERY_S)
    await prune(database_url, settings.data_dir)
    assert not (second / "exit.json").exists() and (second / "output" / "product.tif").exists()


async def test_the_bookkeeping_of_an_attempt_run_under_its_claims_own_id_goes_with_its_job_row(
        db, database_url, settings, monkeypatch):
    """An attempt that ran under its claim's own Nomad job ID (a job this database does not know held the
    first: after a restore) has an attempt directory of its own, attempt-<n>-c<8 hex> (claims_own_spec): its
    bookkeeping goes once its job row is gone, as attempt-<n>'s does, and its products stay. The sweep read
    the attempt's number from the name and skipped it (found with the fix of its paths)."""
    installation = db.execute("SELECT installation_id::text FROM hrwsi.installation").fetchone()[0]
    task = settings.data_dir / "products" / installation / "work" / "task-900003"
    attempts = [task / "attempt-1", task / "attempt-1-c0123abcd"]
    for attempt in attempts:
        (attempt / "output").mkdir(parents=True)
        (attempt / "output" / "product.tif").write_text("p")
        (attempt / "manifest.json").write_text("{}")
        os.utime(attempt, (time.time() - 40 * 86_400,) * 2)
    aside = task / "attempt-1.moved-20261206T000000.000000Z"  # (not an attempt directory: left alone)
    (aside / "output").mkdir(parents=True)
    (aside / "manifest.json").write_text("{}")
    os.utime(aside, (time.time() - 40 * 86_400,) * 2)
    monkeypatch.setattr(retention, "_attempts_swept_at", None)
    await prune(database_url, settings.data_dir)
    for attempt in attempts:
        assert sorted(p.name for p in attempt.rglob("*")) == ["output", "product.tif"], "its product stays, alone"
    assert (aside / "manifest.json").exists()


async def test_old_terminated_and_cancelled_tasks_go_with_their_inputs_and_alerts_keep_their_text(
        db, database_url, chain, tmp_path):
    terminated = make_task(db, "/l1c/bad", state="terminated")
    make_task(db, "/l1c/cancelled", state="cancelled")
    recent = make_task(db, "/l1c/recent-bad", state="terminated", age="1 day")
    needed = make_task(db, "/l1c/needed", state="terminated")
    waiting = make_task(db, "/l1c/waiting", state="planned")
    db.execute("UPDATE hrwsi.processing_task SET depends_on = %s WHERE id = %s", (needed, waiting))
    assert count(db, "SELECT count(*) FROM hrwsi.alert WHERE task_id = %s", terminated) == 1
    report = await prune(database_url, tmp_path / "data")
    assert report.rows["finished_tasks"] == 2
    remaining = {r[0] for r in db.execute("SELECT id FROM hrwsi.processing_task")}
    assert remaining == {recent, needed, waiting}, "an open task's dependency stays"
    assert count(db, "SELECT count(*) FROM hrwsi.input WHERE input_path IN ('/l1c/bad', '/l1c/cancelled')") == 0
    assert count(db, "SELECT count(*) FROM hrwsi.alert WHERE task_id IS NULL AND subject LIKE %s",
                 f"%task {terminated} %") == 1
    # The history went with its tasks (it has no foreign key that would refuse an orphan).
    assert count(db, "SELECT count(*) FROM hrwsi.task_event e "
                     "WHERE NOT EXISTS (SELECT 1 FROM hrwsi.processing_task t WHERE t.id = e.task_id)") == 0
    assert {r[0] for r in db.execute("SELECT DISTINCT task_id FROM hrwsi.task_event")} == {recent, waiting}, \
        "the kept old task's history went too; the young tasks' stays"


async def test_a_campaign_task_that_ended_goes_and_the_input_its_production_task_names_stays(
        db, database_url, chain, tmp_path):
    """A campaign's task names the production task's input: deleting the input with it was refused,
    and every run of retention failed on that same oldest batch after that."""
    production = make_task(db, "/l1c/reprocessed", measured_at="2026-01-01T10:00Z")
    campaign = db.execute("""SELECT campaign_id FROM hrwsi.reprocess(routine => 'atmospheric_correction',
                             measured_from => '2026-01-01', measured_to => '2026-01-02')""").fetchone()[0]
    redo = db.execute("SELECT id FROM hrwsi.processing_task WHERE campaign_id = %s", (campaign,)).fetchone()[0]
    db.execute("SELECT hrwsi.cancel_campaign(%s)", (campaign,))
    db.execute("UPDATE hrwsi.processing_task SET finished_at = now() - interval '40 days' WHERE id = %s", (redo,))
    gone = make_task(db, "/l1c/gone", state="terminated")
    report = await prune(database_url, tmp_path / "data")
    assert report.rule_errors == {} and report.rows["finished_tasks"] == 2
    assert {r[0] for r in db.execute("SELECT id FROM hrwsi.processing_task")} == {production}
    assert [r[0] for r in db.execute("SELECT input_path FROM hrwsi.input")] == ["/l1c/reprocessed"]
    assert gone not in {r[0] for r in db.execute("SELECT task_id FROM hrwsi.task_event")}


async def test_a_rule_the_database_refuses_is_reported_and_the_other_rules_run(db, database_url, chain, tmp_path):
    set_policy(db, alert_days=1)
    make_task(db, "/l1c/old-bad", state="terminated")
    db.execute("UPDATE hrwsi.alert SET created_at = now() - interval '40 days', sent_at = now()")
    db.execute("""CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'check_violation'; END $$""")
    db.execute("CREATE TRIGGER refuse BEFORE DELETE ON hrwsi.processing_task FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse()")
    report = await prune(database_url, tmp_path / "data")
    assert report.rule_errors == {"finished_tasks": "CheckViolationError: refused for the test"}
    assert report.rows["alerts"] == 1, "the rules after it ran"
    assert "rule finished_tasks failed: CheckViolationError: refused for the test" in report.summary()


async def test_a_kept_product_keeps_its_whole_lineage_and_leaves_go_first(db, database_url, chain, tmp_path):
    set_policy(db, product_days=1, finished_task_days=1)
    t1 = make_task(db, "/l1c/a", condition="l1c")
    p1 = add_product(db, t1, "/p/a.L2A", "L2A")
    t2 = make_task(db, "/p/a.L2A", condition="l2a", product_id=p1)
    p2 = add_product(db, t2, "/p/a.FSC", "FSC")
    t3 = make_task(db, "/p/a.FSC", condition="fsc", product_id=p2)
    p3 = add_product(db, t3, "/p/a.QL", "QUICKLOOK", age=None)  # a young leaf: everything above it stays
    await prune(database_url, tmp_path / "data")
    assert count(db, "SELECT count(*) FROM hrwsi.product") == 3
    assert count(db, "SELECT count(*) FROM hrwsi.processing_task") == 3

    db.execute("UPDATE hrwsi.product SET created_at = now() - interval '40 days' WHERE id = %s", (p3,))
    report = await prune(database_url, tmp_path / "data")
    assert report.rows["products"] == 1 and report.rows["finished_tasks"] == 1
    assert {r[0] for r in db.execute("SELECT id FROM hrwsi.product")} == {p1, p2}, "P2 keeps its lineage: P1, t1"
    assert {r[0] for r in db.execute("SELECT id FROM hrwsi.processing_task")} == {t1, t2}
    await prune(database_url, tmp_path / "data")
    await prune(database_url, tmp_path / "data")
    assert count(db, "SELECT count(*) FROM hrwsi.product") == 0
    assert count(db, "SELECT count(*) FROM hrwsi.input") == 0


async def test_a_product_listed_in_a_group_input_is_kept(db, database_url, chain, tmp_path):
    set_policy(db, product_days=1)
    t1 = make_task(db, "/l1c/b")
    add_product(db, t1, "/p/b.FSC", "FSC")
    group = db.execute("INSERT INTO hrwsi.input (processing_condition, input_path) VALUES ('fsc', '/group/b') "
                       "RETURNING id").fetchone()[0]
    db.execute("INSERT INTO hrwsi.multi_input_member (input_id, member_path, product_type) "
               "VALUES (%s, '/p/b.FSC', 'FSC')", (group,))
    report = await prune(database_url, tmp_path / "data")
    assert report.rows["products"] == 0
    assert count(db, "SELECT count(*) FROM hrwsi.product") == 1


def test_the_history_is_written_by_its_trigger_alone_and_stays_append_only_for_the_services_role(db, chain):
    task = make_task(db, "/l1c/h", age=None)
    cancelled = make_task(db, "/l1c/c", state="cancelled", age=None)
    db.execute("SET ROLE hrwsi_service")
    # The service's own change of a task is written to the history, by the trigger (as the owner)...
    before = count(db, "SELECT count(*) FROM hrwsi.task_event WHERE task_id = %s", cancelled)
    db.execute("UPDATE hrwsi.processing_task SET state = 'pending', state_reason = 'again' WHERE id = %s",
               (cancelled,))
    assert db.execute("SELECT state, reason FROM hrwsi.task_event WHERE task_id = %s ORDER BY id DESC LIMIT 1",
                      (cancelled,)).fetchone() == ("pending", "again")
    assert count(db, "SELECT count(*) FROM hrwsi.task_event WHERE task_id = %s", cancelled) == before + 1
    # ...and by nothing else: the history has no foreign key to its task (migration 0021), so no
    # role but the owner may add a row to it.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("INSERT INTO hrwsi.task_event (task_id, state, attempts) VALUES (%s, 'processed', 1)", (task,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("DELETE FROM hrwsi.task_event WHERE task_id = %s", (task,))
    db.execute("SET hrwsi.pruning_history = 'on'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("DELETE FROM hrwsi.task_event WHERE task_id = %s", (task,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("SELECT * FROM hrwsi.delete_history_and_attempts(ARRAY[%s]::bigint[])", (task,))
    # Its maintenance path deletes only what the policy allows: nothing of a task that finished just now.
    assert db.execute("SELECT count(*) FROM hrwsi.prune_task_history(100)").fetchone()[0] == 0
    db.execute("RESET ROLE")
    db.execute("RESET hrwsi.pruning_history")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        db.execute("DELETE FROM hrwsi.task_event WHERE task_id = %s", (task,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        db.execute("UPDATE hrwsi.task_event SET reason = 'x' WHERE task_id = %s", (task,))
    assert count(db, "SELECT count(*) FROM hrwsi.task_event WHERE task_id = %s", task) > 0


async def test_the_services_role_can_apply_the_policy_but_not_change_it(db, database_url, chain, tmp_path):
    old = make_task(db, "/l1c/old")
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SET ROLE hrwsi_service")
        report = await retention.prune(conn, tmp_path / "data")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE hrwsi.retention_policy SET task_history = interval '1 second'")
    finally:
        await conn.close()
    assert report.rows["task_history"] == 1
    assert count(db, "SELECT count(*) FROM hrwsi.task_event WHERE task_id = %s", old) == 0


async def test_plans_alerts_dead_services_and_landing_files_go_when_old(db, database_url, chain, tmp_path):
    old_plan, held_plan, new_plan = (db.execute("INSERT INTO hrwsi.plan (task_count, makespan_s, lower_bound_s, vms, "
                                                "vm_hours, planning_s) VALUES (1, 1, 1, 1, 1, 0) RETURNING id"
                                                ).fetchone()[0] for _ in range(3))
    db.execute("UPDATE hrwsi.plan SET created_at = now() - interval '40 days' WHERE id IN (%s, %s)",
               (old_plan, held_plan))
    done = make_task(db, "/l1c/done", age=None)
    open_task = make_task(db, "/l1c/open", state="planned")
    db.execute("UPDATE hrwsi.processing_task SET plan_id = %s WHERE id = %s", (old_plan, done))
    db.execute("UPDATE hrwsi.processing_task SET plan_id = %s WHERE id = %s", (held_plan, open_task))
    db.execute("INSERT INTO hrwsi.alert (kind, subject, body, created_at) VALUES "
               "('routine_on_hold', 'old', 'x', now() - interval '40 days'), ('routine_on_hold', 'new', 'x', now())")
    db.execute("INSERT INTO hrwsi.service_instance (id, kind, host, pid, heartbeat_at) VALUES "
               "('dead', 'launcher', 'h', 1, now() - interval '2 hours'), ('alive', 'launcher', 'h', 2, now())")
    work = tmp_path / "work"
    from hrwsi.harvest import landing_source as landing

    landing.register_source(db, name="drop", directory=tmp_path / "landing", work_directory=work, product_type="L1C")
    aside = work / "previously_received" / "1_S2A.zip"
    aside.parent.mkdir(parents=True)
    aside.write_text("again")
    outside = tmp_path / "elsewhere.zip"
    outside.write_text("not hrwsi's")
    for state, prepared in (("previously_received", aside), ("previously_received", outside), ("failed", None)):
        db.execute("INSERT INTO hrwsi.landing_file (source, path, size_bytes, modified_at, state, message, "
                   "prepared_path, updated_at) VALUES ('drop', %s, 1, now(), %s, 'm', %s, now() - interval '40 days')",
                   (f"/landing/{state}-{prepared}", state, str(prepared) if prepared else None))
    report = await prune(database_url, tmp_path / "data")
    assert {r[0] for r in db.execute("SELECT id FROM hrwsi.plan")} == {held_plan, new_plan}
    assert count(db, "SELECT count(*) FROM hrwsi.processing_task WHERE id = %s AND plan_id IS NULL", done) == 1
    assert [r[0] for r in db.execute("SELECT subject FROM hrwsi.alert")] == ["new"]
    assert [r[0] for r in db.execute("SELECT id FROM hrwsi.service_instance")] == ["alive"]
    assert count(db, "SELECT count(*) FROM hrwsi.landing_file") == 0
    assert not aside.exists(), "the moved-aside file in the work directory went with its row"
    assert outside.exists(), "nothing outside hrwsi's directories is ever removed"
    assert report.rows["plans"] == 1 and report.rows["alerts"] == 1 and report.rows["dead_services"] == 1


async def test_an_input_prepared_from_a_landing_file_takes_its_work_file_along(db, database_url, chain, tmp_path):
    from hrwsi.harvest import landing_source as landing

    work = tmp_path / "work"
    landing.register_source(db, name="drop", directory=tmp_path / "landing", work_directory=work, product_type="L1C")
    prepared = work / "S2A_MSIL1C_X.SAFE"
    prepared.mkdir(parents=True)
    (prepared / "band.jp2").write_text("pixels")
    make_task(db, str(prepared), state="terminated")
    db.execute("INSERT INTO hrwsi.landing_file (source, path, size_bytes, modified_at, state, prepared_path) "
               "VALUES ('drop', '/landing/S2A.zip', 1, now(), 'prepared', %s)", (str(prepared),))
    await prune(database_url, tmp_path / "data")
    assert count(db, "SELECT count(*) FROM hrwsi.landing_file") == 0
    assert not prepared.exists()


async def test_log_files_no_job_refers_to_are_swept_when_old(db, database_url, chain, tmp_path):
    logs = tmp_path / "data" / "logs" / "snow_cover"
    kept_task = make_task(db, "/l1c/k", age=None, logs=logs)
    orphan, young_orphan, referenced = logs / "hrwsi-snow_cover-999-1.log", logs / "hrwsi-x-1-1.log", \
        logs / f"hrwsi-{kept_task}-1.log"
    orphan.write_text("old")
    young_orphan.write_text("new")
    month_ago = time.time() - 30 * 86_400
    for path in (orphan, referenced):
        os.utime(path, (month_ago, month_ago))
    await prune(database_url, tmp_path / "data")
    assert not orphan.exists()
    assert young_orphan.exists() and referenced.exists()


async def test_batches_skip_locked_rows_and_never_wait_for_them(db, database_url, chain, tmp_path):
    set_policy(db, batch_size=2)
    ids = [make_task(db, f"/l1c/t{i}", state="terminated") for i in range(5)]
    with psycopg.connect(database_url) as other:
        other.execute("SELECT id FROM hrwsi.processing_task WHERE id = %s FOR UPDATE", (ids[0],))
        report = await asyncio.wait_for(prune(database_url, tmp_path / "data"), 30)
        assert report.rows["finished_tasks"] == 4
        assert [r[0] for r in db.execute("SELECT id FROM hrwsi.processing_task")] == [ids[0]]
    report = await prune(database_url, tmp_path / "data")
    assert report.rows["finished_tasks"] == 1
    assert count(db, "SELECT count(*) FROM hrwsi.processing_task") == 0


async def test_a_dry_run_counts_and_deletes_nothing(db, database_url, chain):
    make_task(db, "/l1c/a", state="terminated")
    make_task(db, "/l1c/b")
    conn = await asyncpg.connect(database_url)
    try:
        counts = await retention.preview(conn)
    finally:
        await conn.close()
    assert counts["task_history"] == 2 and counts["finished_tasks"] == 1
    assert count(db, "SELECT count(*) FROM hrwsi.processing_task") == 2


async def test_a_dry_run_counts_the_tasks_whose_products_the_same_run_prunes(db, database_url, chain, tmp_path):
    """A run prunes products before finished tasks, and a processed task whose products are gone goes
    in the same run: the dry run said 0 finished tasks where the run deleted 271 (found by exploratory
    testing)."""
    set_policy(db, product_days=1, finished_task_days=1)
    leaf = make_task(db, "/l1c/leaf")
    add_product(db, leaf, "/p/leaf.L2A")  # no input was made from it: it goes, and then its task
    kept = make_task(db, "/l1c/kept")
    add_product(db, kept, "/p/kept.L2A", age=None)  # young: it stays, and so does its task
    conn = await asyncpg.connect(database_url)
    try:
        counts = await retention.preview(conn)
    finally:
        await conn.close()
    report = await prune(database_url, tmp_path / "data")
    assert (counts["products"], counts["finished_tasks"]) == (1, 1)
    assert (report.rows["products"], report.rows["finished_tasks"]) == (1, 1)


async def test_the_orchestrator_prunes_as_a_side_task_once_per_period(db, database_url, chain, settings, monkeypatch):
    monkeypatch.setattr(retention, "CHECK_INTERVAL_S", 0.2)
    make_task(db, "/l1c/gone", state="terminated")
    async with running(database_url, ["orchestrator"], settings):
        await wait_until(database_url, "SELECT count(*) = 0 FROM hrwsi.processing_task")
        await wait_until(database_url, "SELECT last_report IS NOT NULL FROM hrwsi.retention_policy")
    report = db.execute("SELECT last_report FROM hrwsi.retention_policy").fetchone()[0]
    assert report["rows"]["finished_tasks"] == 1
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        assert await retention.run_if_due(pool, settings, asyncio.Event()) is None, "the period is not over"
    finally:
        await pool.close()


async def test_the_orchestrator_folds_the_finished_tasks_kept_counts_every_minute_whoever_reads_them(
        db, database_url, chain, settings):
    """The rows of +n and -n the task triggers add (migration 0105) are folded by their readers; with no dashboard, no
    scrape and no `hrwsi status`, they grew with every task that ended. The retention side task folds them."""
    for n in range(5):
        make_task(db, f"/l1c/ended-{n}", state="terminated", age=None)  # (young: retention leaves them)
    rows = "SELECT count(*), count(DISTINCT (routine, lane, state)) FROM hrwsi.finished_task_count"
    assert db.execute(rows).fetchone() == (5, 1)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        await retention.run_if_due(pool, settings, asyncio.Event())
    finally:
        await pool.close()
    assert db.execute(rows).fetchone() == (1, 1)
    assert db.execute("SELECT n FROM hrwsi.finished_task_count").fetchone()[0] == 5


async def test_an_attempt_directory_nested_deeper_than_python_recurses_is_removed_and_the_others_too(
        db, database_url, chain, tmp_path):
    """(shutil.rmtree recursed once a level: a failed attempt's output 1,100 directories deep raised
    RecursionError out of the prune, after its rows were deleted, and the batch's other files stayed on
    disk for good; found by exploratory testing)"""
    data = tmp_path / "data"
    deep = make_task(db, "/l1c/deep", state="terminated", logs=data / "logs")
    other = make_task(db, "/l1c/other", state="terminated", logs=data / "logs")
    folder = data / "products" / f"task-{deep}" / "attempt-1" / "output"
    try:
        for _ in range(1_100):
            folder = folder / "d"
            folder.mkdir()
        report = await prune(database_url, data)
        assert not (data / "products" / f"task-{deep}").exists() and not (data / "products" / f"task-{other}").exists()
        assert report.file_errors == []
    finally:
        subprocess.run(["rm", "-rf", str(data)], check=True)  # (pytest's shutil.rmtree recurses too)
