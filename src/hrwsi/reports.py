"""What people read about production, as plain data: status, tasks, one task's story, lineage, the
alert outbox, the current schedule and stored plans.

Every function here reads (never writes) with psycopg and returns dicts and lists that print as
JSON (`hrwsi ... --json`) as they are; `hrwsi.cli.views` draws the same data as tables.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta

import psycopg
import psycopg.errors
from psycopg.rows import dict_row

from hrwsi import migrations
from hrwsi.backends.ascii_decimal import ascii_decimal, is_ascii_decimal
from hrwsi.database_trouble import CONNECTIONS_REFUSED_NEXT, refusing_writes_said
from hrwsi.installed_code import mark_changed
from hrwsi.sql_files import query

# The alert sender gives up after this many attempts (hrwsi.alerts.AlertSettings.max_attempts).
ALERT_MAX_ATTEMPTS = 10
ALERT_STATUSES = ("sent", "unsent", "failed")
# An orchestrator with a channel tries the outbox every 2 s, 1,000 alerts at a time, and counts each failure in the
# alert's attempts: an alert never tried for this long is one no running orchestrator sends.
ALERT_UNTRIED_AFTER_S = 120.0


def alerts_untried_said(untried_oldest_s: float | None) -> str | None:
    """Why the alerts wait, when none was ever tried (`hrwsi status`, the dashboard): an orchestrator without
    HRWSI_ALERT_WEBHOOK_URL nor HRWSI_ALERT_SMTP_* does not run the outbox at all, and ops saw "10 alerts not
    delivered, oldest 5 min", each "not sent, 0 attempt(s)", as if late (found by exploratory testing, 2026-12-08)."""
    if untried_oldest_s is None or untried_oldest_s < ALERT_UNTRIED_AFTER_S:
        return None
    return (f"none tried in {duration_said(untried_oldest_s)}: no orchestrator running has a channel "
            "(HRWSI_ALERT_WEBHOOK_URL, or HRWSI_ALERT_SMTP_HOST with HRWSI_ALERT_SMTP_TO), or none runs, or its sending "
            "hangs (its log says); they wait in the outbox until an orchestrator sends them")


def _rows(conn: psycopg.Connection, name: str, params: dict | None = None) -> list[dict]:
    return conn.cursor(row_factory=dict_row).execute(query(name), params or {}).fetchall()


def _row(conn: psycopg.Connection, name: str, params: dict | None = None) -> dict | None:
    return conn.cursor(row_factory=dict_row).execute(query(name), params or {}).fetchone()


def state_counts(conn: psycopg.Connection) -> dict[str, int]:
    return dict(conn.execute(query("report_task_counts")).fetchall())


def held_routine_next_step(routine: str, backfill_only: bool = False) -> str:
    """What happens to a held routine, or to its back-fill alone, in words (status, alerts)."""
    if backfill_only:
        return (f"its new and waiting back-fill tasks (archive lane) stay on hold until an operator runs "
                f"`hrwsi release {routine}`; its near-real-time tasks and running jobs go on")
    return (f"its new and waiting tasks stay on hold (not planned) until an operator runs "
            f"`hrwsi release {routine}`; running jobs finish")


def task_next_step(task: dict) -> str | None:
    """What moves a task that waits for an operator, in words (`hrwsi task show`, the dashboard's task page): they
    said why it stopped ("attempt 3 internal_error: ...", "held by an operator") but neither that nothing happens by
    itself nor what to run (found by exploratory testing). None for a task the services move on by themselves, and
    for a blocked one, whose reason names its commands."""
    state, task_id = task["state"], task["id"]
    if state == "terminated":
        return f"it is never retried by itself: `hrwsi retry {task_id}` plans it again (its failure count starts afresh)"
    if state == "cancelled":
        return f"it is final: `hrwsi retry {task_id}` plans it again"
    if state != "on_hold":
        return None
    if task.get("campaign_on_hold"):
        return f"its campaign {task['campaign_id']} is on hold: {held_campaign_next_step(task['campaign_id'])}"
    if task.get("routine_on_hold"):
        return f"its routine {task['routine']} is on hold: {held_routine_next_step(task['routine'])}"
    # (held by its routine's back-fill hold, migration 0075: a near-real-time task of it is held one by one)
    if task.get("backfill_on_hold") and (task.get("state_reason") or "").startswith("back-fill of routine"):
        return (f"its routine {task['routine']}'s back-fill is on hold: "
                f"{held_routine_next_step(task['routine'], backfill_only=True)}")
    return f"it is not planned until an operator runs `hrwsi release {task_id}`"


def handover_hold_said(hold: dict) -> str:
    """One hand-over hold in words (`hrwsi status`, `hrwsi task show`): the room, whose, for what, until when."""
    what = "its next step" if hold["kind"] == "next_step" else "its retry"
    return (f"worker {hold['worker']} keeps {hold['cpu']:g} CPU, {hold['ram_mb']:g} MB RAM, {hold['storage_mb']:g} MB "
            f"storage of task {hold['task_id']} ({hold['routine']}) for {what} until "
            f"{hold['until'].astimezone(UTC):%Y-%m-%d %H:%M:%S}Z")


def held_task_next_step(task: dict) -> str:
    """What lifts a task held one by one (a row of report_held_tasks / web_held_tasks), in words (the dashboard's
    held work): one an operator held that the end of the task it waited for blocked since (held_while_blocked,
    migration 0095), or held while blocked (migration 0118), is held once its wait ends, and its release lifts the
    hold alone: it waits for its dependency again."""
    if task["state"] == "blocked":
        return (f"it is held once what it waits for has run (its reason says what that needs); "
                f"`hrwsi release {task['id']}` lifts the hold, and it waits for its dependency again")
    return f"it is not planned until an operator runs `hrwsi release {task['id']}`"


def priority_inherited_text(task: dict) -> str | None:
    """The priority a task took from an urgent task after it in its time series, in words (`hrwsi task show`, the
    dashboard's task page): "priority 0 inherited from task 12"; None when its priority is its own. Its deadline's
    equivalent was said, its priority's not (migration 0086 names it): an archive task served as 0 said neither
    why nor until when (it gives it back when that task is cancelled)."""
    if task.get("priority_inherited_from") is None:
        return None
    return (f"priority {task['priority']} inherited from task {task['priority_inherited_from']}, which waits for it "
            "(given back if that task is cancelled)")


def held_campaign_next_step(campaign: int) -> str:
    """What happens to a held campaign, in words (status)."""
    return (f"its waiting tasks stay on hold; production goes on. Fix the cause, then `hrwsi campaigns --release "
            f"{campaign}`, or end it: `hrwsi campaigns --cancel {campaign}`")


# A source this long past its next run, that no harvester runs, is overdue (`hrwsi status`): longer
# than a harvester's scan for due sources (HRWSI_LANDING_SCAN_S) and a busy round of them.
SOURCE_OVERDUE_S = 120.0
# Landing files a source refused (failed) in this window are said by `hrwsi status` and on the dashboard: long
# enough to be seen the next morning, short enough that files fixed and retried yesterday are not said for ever
# (a failed row stays until retention prunes it; cli_list_sources says the same window).
SOURCE_REFUSED_WINDOW_S = 86400.0


# How long `hrwsi status` waits for a lock on what it reads before it says it could not read it.
STATUS_LOCK_WAIT_S = 2.0
# Once one read gave up on a lock, the others wait this long (milliseconds): the time is spent once.
LOCKED_READ_WAIT_MS = 100


# Jobs queued in the backend longer than this are named in status and on the dashboard, with the backend's
# reason (a Nomad job waits a few seconds for its placement; one not placed in a minute is worth a look).
QUEUED_LONG_AFTER_S = 60.0
QUEUED_LONG_SHOWN = 10
# Jobs running longer than this many times their routine's expected duration (and at least
# RUNNING_LONG_MIN_S) are named in status and on the dashboard: a routine hung on a stalled mount
# ran on, said nowhere, while the plan counted on its worker at its expected end. The floor keeps
# a routine of seconds, whose start-up alone may triple it, out of the list.
RUNNING_LONG_FACTOR = 3.0
RUNNING_LONG_MIN_S = 60.0
RUNNING_LONG_SHOWN = 10
# The hand-over holds named in status and task show (a few at a time: one per urgent task ended in the last minute).
HANDOVER_HOLDS_SHOWN = 10


# The server's connection slots are said in status when this share of them is taken (a new connection is
# refused past them: "too many clients already"), with what to do (database_trouble.CONNECTIONS_REFUSED_NEXT).
CONNECTIONS_SAID_AT = 0.9
# A transaction open longer than this is named in status and on the dashboard: it holds back VACUUM in every
# table of the database (report_long_transactions). hrwsi's own transactions last seconds; a report or a
# pg_dump may take minutes, so the line says what it is rather than that it is wrong.
LONG_TRANSACTION_AFTER_S = 600.0
LONG_TRANSACTIONS_SHOWN = 5


def status(conn: psycopg.Connection, failures: int = 10, stale_after_s: float = 30.0,
           lock_wait_s: float = STATUS_LOCK_WAIT_S, *, connections_said_at: float = CONNECTIONS_SAID_AT,
           long_transaction_after_s: float = LONG_TRANSACTION_AFTER_S) -> dict:
    """Counts per state, held routines and tasks with their reasons, tasks that cannot be planned,
    recent failures, services and their heartbeats, sessions holding a lock hrwsi waits for,
    harvest sources needing attention, and the alert outbox in numbers.

    The reads wait at most `lock_wait_s` in all for a lock (lock_timeout, for this transaction only); what
    it could not read is named in "unread" and left empty. Why: a session holding a lock on a
    table (a LOCK TABLE, an ALTER TABLE left open in psql) made status hang, printing nothing,
    while it was the one command that names that session (found by exploratory testing). The
    blocking sessions are read from the server's views, which no such lock blocks."""
    unread: list[str] = []

    def read(what: str, default, reader):
        try:
            with conn.transaction():  # (a savepoint: a read that gave up leaves the others to go on)
                return reader()
        except psycopg.errors.LockNotAvailable:
            if not unread:  # (the rest wait no more: four reads of a locked table took 8 s)
                conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{LOCKED_READ_WAIT_MS}ms",))
            unread.append(what)
            return default

    with conn.transaction():
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{round(lock_wait_s * 1000)}ms",))
        held = read("the held routines", [], lambda: _rows(conn, "report_held_routines"))
        for routine in held:
            routine["next"] = held_routine_next_step(routine["routine"], routine["backfill_only"])
        unplannable_rows = read("the tasks that cannot be planned", [],
                                lambda: conn.execute(query("report_unplannable"), {"limit": 10}).fetchall())
        data = {
            # (first: after a failover onto a standby, what status could read said nothing of why it went stale)
            "writes_refused": read("whether the database takes writes", None, lambda: refusing_writes_said(
                _row(conn, "report_writes_refused"), stale_after_s)),
            "tasks": read("the tasks", {}, lambda: state_counts(conn)),
            "jobs": read("the jobs", {}, lambda: dict(conn.execute(query("report_job_counts")).fetchall())),
            "held_routines": held,
            "held_campaigns": read("the held campaigns", [], lambda: [
                row | {"next": held_campaign_next_step(row["campaign"])}
                for row in _rows(conn, "report_held_campaigns")]),
            "held_tasks": read("the held tasks", [], lambda: _rows(conn, "report_held_tasks", {"limit": 20})),
            # (room kept from back-fill for an urgent task's next step or retry: migration 0117)
            "handover_holds": read("the hand-over holds", [], lambda: _rows(
                conn, "report_handover_holds", {"worker": None, "limit": HANDOVER_HOLDS_SHOWN})),
            "deadlines": read("the deadlines", None, lambda: _row(conn, "report_deadlines_now")),
            "unplannable": [{"task_id": task_id, "routine": routine, "reason": reason}
                            for task_id, routine, reason, _ in unplannable_rows],
            "unplannable_total": unplannable_rows[0][3] if unplannable_rows else 0,
            "recent_failures": read("the recent failures", [], lambda: [
                {"task_id": r[0], "routine": r[1], "attempt": r[2], "state": r[3], "exit_code": r[4], "message": r[5],
                 "finished_at": r[6], "log_path": r[7], "task_state": r[8], "avoids_worker": r[9]}
                for r in conn.execute(query("report_recent_failures"), {"limit": failures})]),
            "queued_long": read("the jobs queued in the backend", [], lambda: _rows(
                conn, "report_jobs_queued_long", {"after_s": QUEUED_LONG_AFTER_S, "limit": QUEUED_LONG_SHOWN})),
            "running_long": read("the jobs running long", [], lambda: [
                row | {"next": running_long_next_step(row)}
                for row in _rows(conn, "report_jobs_running_long", {"factor": RUNNING_LONG_FACTOR,
                                                                    "min_s": RUNNING_LONG_MIN_S,
                                                                    "limit": RUNNING_LONG_SHOWN})]),
            "services": read("the services", [], lambda: _rows(conn, "report_services")),
            "sources": read("the harvest sources", [], lambda: [
                row | {"next": source_next_step(row)}
                for row in _rows(conn, "report_sources_needing_attention",
                                 {"overdue_s": SOURCE_OVERDUE_S, "fresh_s": stale_after_s,
                                  "refused_s": SOURCE_REFUSED_WINDOW_S, "limit": 20})]),
            "stale_groups": read("the multi-input groups", None, lambda: incomplete_groups(conn, limit=5,
                                                                                              stale_only=True)),
            "late_groups": read("the multi-input groups' late members", None, lambda: late_group_members(
                conn, days=STATUS_LATE_MEMBER_DAYS, limit=5)),
            "missed_products": read("the conditions' missed products", [], lambda: _missed_products(conn)),
            "alerts": read("the alert outbox", None,
                           lambda: _row(conn, "report_alert_counts", {"max_attempts": ALERT_MAX_ATTEMPTS})),
        }
        held_jobs = None
        if any(service["site"] for service in data["services"]):  # (launchers of the local backend)
            held_jobs = dict(read("the jobs of the local launchers", [],
                                  lambda: conn.execute(query("report_local_jobs_held")).fetchall()))
        newest = read("the database's schema", None, lambda: conn.execute(query("newest_migration_recorded")).fetchone())
        alive = judge_services(data["services"], held_jobs, stale_after_s)
        data["services_gone"] = services_gone(data["services"], alive)
        data["versions"] = migrations.service_versions(alive, *(newest or (None, None)))
        # (the code on disk where status runs, against what each service of this host started with)
        mark_changed(alive)
        # Last: the sessions that held a lock a read above gave up on are still there to be named.
        data["blocking_sessions"] = [row | {"next": blocking_session_next_step(row["pid"])}
                                     for row in _rows(conn, "report_sessions_blocking_hrwsi")]
        data["long_transactions"] = long_transactions(conn, long_transaction_after_s)
        data["sessions_not_seen"] = sessions_not_seen_said(_row(conn, "report_sessions_not_seen"))
        data["connections"] = connection_slots(conn, connections_said_at)
    data["unread"] = unread
    data["lock_wait_s"] = lock_wait_s
    return data


def _missed_products(conn: psycopg.Connection) -> list[dict]:
    """The active conditions with products never chained to them, each with the command that chains them
    (a condition made active by a plain UPDATE got no note of them: found by review). A capped count (at most
    10,001 each: "more than 10,000") that only reads, by chain_missed_products' rules (migration 0078)."""
    return [row | {"next": f"`hrwsi chain-missed {row['condition']}` chains them (at most 10,000 a run; run it "
                           "again until it says 0)"} for row in _rows(conn, "report_conditions_missing_products")]


def source_next_step(source: dict) -> str:
    """What is wrong with a harvest source and what happens next, in words (status)."""
    said = _source_run_next_step(source)
    refused = refused_files_said(source)
    return refused if said is None else (said if refused is None else f"{said}; and {refused}")


def _source_run_next_step(source: dict) -> str | None:
    if source["held_by_the_gone"]:
        return (f"held by {source['claimed_by']}, which is not alive (killed?): a running harvester takes it over "
                f"at its next round (`hrwsi health harvester`), or it waits until that claim lapses at "
                f"{source['claimed_until'].astimezone(UTC):%Y-%m-%d %H:%M:%S}Z")  # (a claim may hold for days)
    if source["last_error"] is not None:
        when = f" at {source['next_run_at']:%H:%M:%S} UTC" if source["next_run_at"] else ""
        return f"its last run failed: {source['last_error']}; it is tried again{when} (`hrwsi sources`)"
    if source["overdue"]:
        return (f"due since {source['next_run_at']:%H:%M:%S} UTC and no harvester runs it: is a harvester running "
                "(`hrwsi health harvester`), or are all its slots taken (HRWSI_HARVEST_CONCURRENCY)?")
    return None


def refused_files_said(source: dict) -> str | None:
    """The landing files a source refused lately, in words (status, the dashboard), or None: how many, the newest
    with its reason, and what to do. Refused files are left where they are and never retried by themselves."""
    if not source.get("refused"):
        return None
    return (f"{source['refused']} file(s) refused in the last {SOURCE_REFUSED_WINDOW_S / 3600:.0f} h, left in its "
            f"landing directory and not retried by themselves; the newest: {source['refused_path']}, "
            f"{source['refused_at'].astimezone(UTC):%Y-%m-%d %H:%M:%S}Z: {source['refused_message']}; "
            "fix the cause and `touch` the file to retry it (the harvester's log names each)")


# What stops while no instance of a service kind is alive (services_gone).
SERVICE_STOPS = {
    "harvester": "nothing is harvested from landing directories or catalogues, and no product is chained",
    "orchestrator": "nothing is planned, no alert is sent and retention does not run",
    "launcher": "nothing is dispatched and ended jobs are not recorded (local jobs run on under their supervisors "
                "and the next launcher sharing their data directory adopts them)",
}


def services_gone(services: list[dict], alive: list[dict]) -> list[dict]:
    """The kinds of service that have rows but no instance alive, each with its last instance and
    what stops meanwhile; and, while any service is registered, the kinds with no row at all (stopped
    cleanly, or never started: last is None). Why: after a kill -9 of `hrwsi up`, status showed a table of rows each
    "(stale: dead or hung?)", and said nowhere that nothing was dispatched nor what to start (found by
    exploratory testing). The dashboard's rows come and go with its own process: not counted."""
    alive_kinds = {s["kind"] for s in alive}
    gone = []
    for kind, stops in SERVICE_STOPS.items():
        rows = [s for s in services if s["kind"] == kind]
        if not rows and services:
            # (no row at all while others have one: a service stopped cleanly deletes its row, so after
            # `systemctl stop` of the orchestrator alone, or one that never started, status and the dashboard
            # said nothing, the dashboard "3/3 services alive", while nothing was planned nor alerted: found by
            # exploratory testing. With no row at all, "no service is registered" says it for every kind.)
            gone.append({"kind": kind, "last": None, "host": None, "pid": None, "heartbeat_age_s": None,
                         "next": f"{stops} until one runs: start it (`hrwsi {kind}`, or `hrwsi up`)"})
        elif rows and kind not in alive_kinds:
            last = min(rows, key=lambda s: s["heartbeat_age_s"] if s["heartbeat_age_s"] is not None else float("inf"))
            gone.append({"kind": kind, "last": last["id"], "host": last["host"], "pid": last["pid"],
                         "heartbeat_age_s": last["heartbeat_age_s"],
                         "next": f"{stops} until one runs: start it (`hrwsi {kind}`, or `hrwsi up`), after checking "
                                 f"why pid {last['pid']} on {last['host']} stopped (its log)"})
    return gone


def is_alive(service: dict, stale_after_s: float) -> bool:
    """A fresh heartbeat, and not taken over as dead by another instance (whose real last heartbeat may be
    fresh: migration 0082)."""
    if service.get("taken_over_by"):
        return False
    return service["heartbeat_age_s"] is None or service["heartbeat_age_s"] <= stale_after_s


def replaced_by_newer(services: list[dict], alive: list[dict], stale_after_s: float = 30.0) -> None:
    """Mark each instance that is not alive and that a newer live instance of its kind on its host replaced
    (replaced_by; the query marks those the same process replaced, after its lease lapsed). Why: after a
    restart of the database (every lease lapsed) or of the services, each left a stale row per service,
    listed until dead_service_hours, crowding `hrwsi status` (found by exploratory testing); views folds them
    into one line unless they hold jobs or were found dead. A newer instance replaced it only if it started
    once this one had stopped, as far as its last heartbeat tells (less the lease, stale_after_s): one that
    ran beside it (two instances of a kind on one host) replaced nothing, and the dead sibling was folded
    away as replaced (found by review)."""
    for service in services:
        if service in alive or service.get("replaced_by"):
            continue
        stopped_after = (service["heartbeat_at"] - timedelta(seconds=stale_after_s)
                         if service.get("heartbeat_at") is not None else service["started_at"])
        newer = [a for a in alive if a["kind"] == service["kind"] and a["host"] == service["host"]
                 and a["started_at"] > max(service["started_at"], stopped_after)]
        if newer:
            service["replaced_by"] = max(newer, key=lambda a: a["started_at"])["id"]
            service["replaced_by_newer"] = True  # (another process: not the same one under a new identity)


def judge_services(services: list[dict], held_jobs: dict | None, stale_after_s: float) -> list[dict]:
    """The service rows (query report_services) as `hrwsi status` and the dashboard judge them: each with the
    jobs it holds (`held_jobs`, owner -> jobs: query report_local_jobs_held, None when no launcher has a site)
    and whether a newer instance replaced it (replaced_by_newer); returns the ones alive."""
    if held_jobs is not None:
        for service in services:
            service["jobs_held"] = held_jobs.get(service["id"], 0)
    alive = [s for s in services if is_alive(s, stale_after_s)]
    replaced_by_newer(services, alive, stale_after_s)
    return alive


def folded_away(service: dict, stale_after_s: float) -> bool:
    """Whether a row is one of the replaced instances `hrwsi status` and the dashboard count in one line
    rather than list (`hrwsi status --all-services`, the dashboard's "show them" list them): stale, replaced
    (replaced_by: by the same process after its lease lapsed, or by a newer live instance of its kind on its
    host, replaced_by_newer), holding no job and not found dead. The one rule for both: the dashboard listed
    every row, so after a database restart its services were crowded by dead rows (found by review)."""
    return (not is_alive(service, stale_after_s) and bool(service.get("replaced_by")) and not service.get("taken_over_by")
            and not service.get("jobs_held"))


def running_long_next_step(job: dict) -> str:
    """What happens to a job running far past its expected duration, and what ops may do, in words."""
    task = job["task_id"]
    if job["timeout_s"] is None:
        ends = f"routine {job['routine']} has no timeout_s: nothing stops it"
    else:
        ends = f"it is stopped and failed at its routine's timeout_s ({job['timeout_s']:g} s)"
    return (f"{ends}; read its log (`hrwsi logs {task} --follow`), and if it hangs, `hrwsi cancel {task}` stops it "
            f"(then `hrwsi retry {task}`)")


def long_transactions(conn: psycopg.Connection, after_s: float = LONG_TRANSACTION_AFTER_S) -> list[dict]:
    """The sessions whose transaction has been open longer than `after_s`, oldest first, each with what it
    holds back and what to do (status; the dashboard reads the same query)."""
    return [row | {"next": long_transaction_next_step(row)}
            for row in _rows(conn, "report_long_transactions", {"after_s": after_s, "limit": LONG_TRANSACTIONS_SHOWN})]


def sessions_not_seen_said(row: dict | None) -> str | None:
    """The sessions of other roles whose transactions this role cannot see (query report_sessions_not_seen), in
    words; None: it sees them all. Without pg_read_all_stats the long transactions named were this role's only,
    and nothing said so (found by review)."""
    if not row or not row["sessions"]:
        return None
    return (f"{row['sessions']} session(s) of other roles cannot be seen by role {row['role']} (it lacks "
            f"pg_read_all_stats): a transaction open long among them is not named here; GRANT pg_read_all_stats TO "
            f"{row['role']} lets it see them")


def long_transaction_next_step(row: dict) -> str:
    """What a long transaction holds back and what to do, in words (status, the dashboard)."""
    idle = (row.get("state") or "").startswith("idle in transaction")
    what = ("idle in its transaction: a client that began one and waits (a SQL client left open, a program that "
            "forgot to commit)" if idle else "a long statement or a long read-only transaction (a report, a pg_dump)")
    holds = ("while it lasts VACUUM keeps every row version it might see, in every table: hrwsi's dead task, job and "
             "outbox rows pile up and its reads slow down" if row.get("holds_back_vacuum") else
             "it holds no snapshot now (READ COMMITTED, between statements), but keeps its locks (a migration, an "
             "ALTER waits for them) and its connection slot, and its next statement takes a snapshot again")
    return (f"{what}; {holds}; end it in its client (COMMIT or ROLLBACK), or, if it was forgotten, SELECT "
            f"pg_terminate_backend({row['pid']}); idle_in_transaction_session_timeout (for its role) ends such "
            "sessions by itself")


def connection_slots(conn: psycopg.Connection, said_at: float = CONNECTIONS_SAID_AT) -> dict | None:
    """The server's connection slots when `said_at` of them or more are taken (None: fewer), with what to do."""
    return short_of_connections(_row(conn, "report_connection_slots"), said_at)


def short_of_connections(row: dict | None, said_at: float = CONNECTIONS_SAID_AT) -> dict | None:
    """The slots counted (query report_connection_slots, the dashboard's too) when `said_at` of them or more
    are taken, with what to do; None: fewer."""
    if row is None or row["slots"] <= 0 or row["in_use"] < said_at * row["slots"]:
        return None
    return dict(row) | {"next": CONNECTIONS_REFUSED_NEXT}


def blocking_session_next_step(pid: int) -> str:
    """What to do about a session that holds a lock hrwsi waits for, in words (status)."""
    return (f"hrwsi waits until it commits or rolls back; if it was forgotten, end it: "
            f"SELECT pg_terminate_backend({pid})")


def tasks(conn: psycopg.Connection, *, states: list[str] | None = None, routine=None, tile=None, lane=None,
          limit: int = 50, before: int | None = None) -> list[dict]:
    """Tasks, newest first, in any of `states` (None: every state); only those older than task
    `before` when given (the next page)."""
    rows = conn.execute(query("report_tasks"), {"states": states or None, "routine": routine, "tile": tile, "lane": lane,
                                               "limit": limit, "before": before}).fetchall()
    columns = ("id", "routine", "state", "tile", "worker", "attempts", "failures", "planned_start", "updated_at",
               "input_path", "state_reason", "lane", "priority", "deadline_at", "lane_priority")
    return [dict(zip(columns, row)) for row in rows]


def task(conn: psycopg.Connection, task_id: int) -> dict | None:
    """One task: its row and input, history, attempts and products; None when there is no such task."""
    found = _row(conn, "report_task", {"task_id": task_id})
    if found is None:
        return None
    found["history"] = [dict(zip(("state", "reason", "attempts", "worker", "at"), r))
                        for r in conn.execute(query("report_task_history"), {"task_id": task_id})]
    found["jobs"] = [dict(zip(("attempt", "backend", "backend_job_id", "worker", "state", "exit_code", "message",
                               "submitted_at", "started_at", "finished_at", "log_path"), r))
                     for r in conn.execute(query("report_task_jobs"), {"task_id": task_id})]
    found["products"] = [dict(zip(("path", "product_type", "size_bytes", "created_at"), r))
                         for r in conn.execute(query("report_task_products"), {"task_id": task_id})]
    found["series_ahead"] = _row(conn, "report_task_series_ahead", {"task_id": task_id})
    found["next"] = task_next_step(found)
    # What a waiting less urgent task waits for besides capacity: the hand-over holds on its planned worker (any worker,
    # pending), migration 0117.
    found["handover_holds"] = (_rows(conn, "report_handover_holds", {"worker": found["worker"],
                                                                     "limit": HANDOVER_HOLDS_SHOWN})
                               if found["state"] in ("pending", "planned") and found["priority"] > 0 else [])
    found["priority_inherited"] = priority_inherited_text(found)
    return found


def series_ahead_text(ahead: dict | None) -> str | None:
    """What a task of a time series waits for down its series, in words; None when nothing."""
    if not ahead or not ahead["open"]:
        return None
    said = f"waits in its time series behind {ahead['open']:,} open task(s) of its tile sensed before it"
    if ahead["back_fill"]:
        said += (f", {ahead['back_fill']:,} of them back-fill (served as urgently as the near-real-time task "
                 "after them, one after the other)")
    return said


def task_state(conn: psycopg.Connection, task_id: int) -> dict | None:
    """A task's state and when retention pruned its history; None when there is no such task."""
    return _row(conn, "report_task_exists", {"task_id": task_id})


def task_exists(conn: psycopg.Connection, task_id: int) -> bool:
    return task_state(conn, task_id) is not None


LINEAGE_MATCHES = 10  # the lineages one target shows at most; the rest are counted, picked by task id


def find_lineage_starts(conn: psycopg.Connection, target: str, limit: int = LINEAGE_MATCHES) -> list[dict]:
    """The tasks a lineage starts from, by task id: TARGET is a task id, or a product's or an input's
    path or file name. Each is {task_id, product_id or None, campaign_id or None}; at most limit + 1
    (one more says there are more). Every match: a name two products share, or an input that
    production and a campaign both processed, is several lineages, not one picked at random."""
    if is_ascii_decimal(target):  # (ASCII: int() refuses '\u00b2', which isdigit takes)
        # (its campaign is read with its lineage; more digits than a bigint holds are no task)
        task_id = ascii_decimal(target, max_digits=19)
        return [{"task_id": task_id, "product_id": None, "campaign_id": None}] \
            if task_id is not None and task_exists(conn, task_id) else []
    for name in ("report_find_lineage_start", "report_find_lineage_start_by_name"):
        rows = _rows(conn, name, {"target": target, "limit": limit + 1})
        if rows:
            return rows
    return []


def lineage(conn: psycopg.Connection, task_id: int, product_id: int | None = None) -> dict:
    """The chain through a task: upstream tasks (depth < 0), the task (0), downstream tasks (> 0);
    campaign_id says whose it is (None: production)."""
    chain = _rows(conn, "report_lineage", {"task_id": task_id})
    campaign_id = next((node["campaign_id"] for node in chain if node["depth"] == 0), None)
    return {"task_id": task_id, "product_id": product_id, "campaign_id": campaign_id, "chain": chain}


GROUPS_SHOWN = 50  # `hrwsi groups` at most; the total is said


def incomplete_groups(conn: psycopg.Connection, condition: str | None = None, tile: str | None = None,
                      limit: int = GROUPS_SHOWN, stale_only: bool = False) -> dict:
    """The multi-input groups with some members and no input yet, newest anchor day first: per
    requirement what they have and need, and whether they wait for open work upstream or cannot
    complete now. A group that never completed (a member's task terminated, the condition made
    inactive, a type no routine writes) was seen nowhere: status said "terminated 1", the
    dashboard "waiting 0" (found by exploratory testing)."""
    rows = _rows(conn, "report_incomplete_groups", {"condition": condition, "tile": tile, "limit": limit,
                                                    "stale_only": stale_only})
    total = rows[0]["total"] if rows else 0
    for row in rows:
        del row["total"]
    return {"groups": rows, "total": total}


LATE_MEMBER_DAYS = 30  # `hrwsi groups`: the groups whose composite was sensed in the last days
STATUS_LATE_MEMBER_DAYS = 7  # `hrwsi status`: a bounded count of recent windows


def late_group_members(conn: psycopg.Connection, condition: str | None = None, tile: str | None = None,
                       days: int = LATE_MEMBER_DAYS, limit: int = GROUPS_SHOWN) -> dict:
    """The multi-input groups whose composite was made and that have members it does not list, those
    that arrived after it (and that no campaign's composite lists): a group is made once, so such a
    member was in no composite and nobody was told (found by exploratory testing). Each group says
    its composite task, and `next`: the command that makes a composite with every member it has now."""
    rows = _rows(conn, "report_late_group_members", {"condition": condition, "tile": tile, "days": days,
                                                     "limit": limit})
    total = rows[0]["total"] if rows else 0
    for row in rows:
        del row["total"]
        row["next"] = late_members_next_step(row)
    return {"groups": rows, "total": total, "days": days}


def placeless_group_members(conn: psycopg.Connection, condition: str | None = None,
                            days: int = LATE_MEMBER_DAYS) -> list[dict]:
    """Per multi-input condition, the products of a type it requires made in the last days from inputs without a
    tile or a sensing time, which no group takes: how many, and the newest one's path."""
    return _rows(conn, "report_placeless_group_members", {"condition": condition, "days": days})


def late_members_next_step(group: dict) -> str:
    """What makes a composite of a group with its late members, in words: a campaign on the group's
    condition, tile and anchor day (hrwsi.reprocess reads the members the group has when it starts;
    the range is the anchor day: a composite's sensing time is its latest member's, on that day)."""
    day = group["day"]
    command = (f"`hrwsi reprocess --condition {shlex.quote(group['condition'])} --tile {group['tile']} "
               f"--from {day.isoformat()} --to {(day + timedelta(days=1)).isoformat()}`")
    task, state = group["task_id"], group["task_state"]
    if task is None:
        return f"its composite has no task: {command} once it has one"
    if state == "processed":
        return f"{command} makes a composite with every member it has now (beside the old one)"
    if state in ("terminated", "cancelled"):
        return (f"its composite task {task} ended {state}: `hrwsi retry {task}` runs it with the members it was made "
                f"with; once processed, {command} makes one with these too")
    return (f"its composite task {task} is {state} with the members it was made with: once processed, {command} "
            f"makes one with these too")


def alerts(conn: psycopg.Connection, status: str | None = None, limit: int = 50) -> dict:
    if status is not None and status not in ALERT_STATUSES:
        raise ValueError(f"unknown alert status {status!r}: choose from {', '.join(ALERT_STATUSES)}")
    return {"counts": _row(conn, "report_alert_counts", {"max_attempts": ALERT_MAX_ATTEMPTS}),
            "alerts": _rows(conn, "report_alerts", {"status": status, "limit": limit,
                                                    "max_attempts": ALERT_MAX_ATTEMPTS})}


def task_log(conn: psycopg.Connection, task_id: int, attempt: int | None = None) -> dict | None:
    """The attempt (job) whose log is asked for: the latest, or `attempt`; None when there is none."""
    return _row(conn, "report_task_log", {"task_id": task_id, "attempt": attempt})


def attempt_ended(conn: psycopg.Connection, task_id: int, attempt: int) -> dict | None:
    """How an attempt ended (its job's state and message) and its task's state and reason now."""
    return _row(conn, "report_attempt_ended", {"task_id": task_id, "attempt": attempt})


def job_is_final(conn: psycopg.Connection, task_id: int, attempt: int) -> bool:
    row = conn.execute(query("report_job_is_final"), {"task_id": task_id, "attempt": attempt}).fetchone()
    return bool(row and row[0])


# -- schedules and plans -----------------------------------------------------------------------
def schedule(conn: psycopg.Connection) -> dict:
    """The current schedule: every task holding a worker (planned, dispatched, queued, running)."""
    rows = _rows(conn, "report_schedule")
    now = conn.execute(query("report_now")).fetchone()[0]
    per_state: dict[str, int] = {}
    for row in rows:
        per_state[row["state"]] = per_state.get(row["state"], 0) + 1
        # (a task past its expected end, a running one that overran: its end is said to have passed, and by how
        # long; it read as one expected in the past, found by review)
        row["overdue_s"] = overdue_s(row["expected_end"], now)
    ends = [r["expected_end"] for r in rows if r["expected_end"] is not None]
    expected_end = max(ends) if ends else None
    # (the tasks running past their expected end: what waits behind them starts later than planned)
    late = [r["overdue_s"] for r in rows if r["overdue_s"] is not None]
    return {"at": now, "tasks": rows, "per_state": per_state, "workers": len({r["worker"] for r in rows}),
            "expected_end": expected_end, "overdue_s": overdue_s(expected_end, now),
            "overrunning": len(late), "overrunning_longest_s": max(late, default=None)}


def overdue_s(expected_end: datetime | None, now: datetime) -> float | None:
    """How long ago an expected end passed (seconds); None when it has not (or there is none)."""
    return (now - expected_end).total_seconds() if expected_end is not None and expected_end < now else None


def duration_said(seconds: float) -> str:
    """A running time or a delay as the CLI and the dashboard's plan chart say it: 45 s, 30 min, 2.5 h."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def schedule_for_chart(conn: psycopg.Connection, current: dict):
    """The current schedule as the planner's objects, for the Gantt chart: planned tasks are
    assignments; dispatched, queued and running tasks are fixed (they hold their worker now).
    Times are seconds from the schedule's `at`. Returns (Plan, tasks, workers, budgets, fixed)."""
    from hrwsi import planner

    at: datetime = current["at"]

    def seconds(moment: datetime | None) -> float:
        return (moment - at).total_seconds() if moment else 0.0

    demands, assignments, fixed = [], {}, []
    for row in current["tasks"]:
        if row["state"] == "planned":
            demands.append(planner.TaskDemand(row["task_id"], row["routine"], row["cpu"], row["ram_mb"],
                                              row["storage_mb"], max(row["duration_s"], 0.001)))
            start = max(0.0, seconds(row["planned_start"]))
            assignments[row["task_id"]] = planner.Assignment(row["task_id"], row["worker"], start,
                                                             max(start, seconds(row["planned_end"])))
        else:
            start = seconds(row["started_at"] or row["planned_start"])
            fixed.append(planner.FixedTask(row["task_id"], row["worker"], row["cpu"], row["ram_mb"],
                                           row["storage_mb"], start, max(seconds(row["expected_end"]), start)))
    workers, budgets = _planning_resources(conn)
    ends = [a.end_s for a in assignments.values()] + [f.end_s for f in fixed]
    makespan = max(ends, default=0.0)
    bound = planner.lower_bound(demands, workers, budgets, fixed) if demands or fixed else 0.0
    figures = planner.PlanFigures(task_count=len(current["tasks"]), makespan_s=makespan, lower_bound_s=bound,
                                  vms=len({r["worker"] for r in current["tasks"]}), vm_hours=0.0, peak_use={},
                                  mean_use={}, planning_s=0.0)
    return planner.Plan(assignments, [], figures), demands, workers, budgets, fixed


def _planning_resources(conn: psycopg.Connection):
    from hrwsi import planner

    flavours: dict[str, planner.Flavour] = {}
    workers = []
    for row in _rows(conn, "report_planning_resources"):
        flavour = flavours.setdefault(row["flavour"], planner.Flavour(row["flavour"], row["cpu"], row["ram_mb"],
                                                                      row["disk_mb"]))
        workers.append(planner.Worker(row["worker"], flavour))
    budget = _row(conn, "report_budget") or {}
    budgets = planner.Budgets(budget.get("cpu_max"), budget.get("ram_max_mb"), budget.get("storage_max_mb"),
                              budget.get("vm_max"))
    return workers, budgets


def load_plan(conn: psycopg.Connection, plan_id: int | None = None):
    """A stored plan as the planner's objects: (plan row, Plan, tasks, workers, budgets), or None."""
    from hrwsi import planner

    row = conn.execute(query("report_plan"), {"plan_id": plan_id}).fetchone()
    if row is None:
        return None
    plan_id, created, task_count, makespan, lower_bound, vms, vm_hours, planning_s = row
    workers, budgets = _planning_resources(conn)
    tasks, assignments = [], {}
    for (task_id, routine, cpu, ram, storage, duration, depends_on, worker, start, end) in conn.execute(
            query("report_plan_tasks"), {"plan_id": plan_id}):
        tasks.append(planner.TaskDemand(task_id, routine, cpu, ram, storage, duration,
                                        (depends_on,) if depends_on else ()))
        assignments[task_id] = planner.Assignment(task_id, worker, max(0.0, start), max(0.0, end))
    figures = planner.PlanFigures(task_count=task_count, makespan_s=makespan, lower_bound_s=lower_bound,
                                  vms=vms, vm_hours=vm_hours, peak_use={}, mean_use={}, planning_s=planning_s)
    return row, planner.Plan(assignments, [], figures), tasks, workers, budgets


def stored_plan(conn: psycopg.Connection, plan_id: int | None = None) -> dict | None:
    """A stored plan's figures and, per worker, its tasks still holding this plan; None if there is none."""
    loaded = load_plan(conn, plan_id)
    if loaded is None:
        return None
    row, plan, _tasks, _workers, _budgets = loaded
    plan_id, created, task_count, makespan, lower_bound, vms, vm_hours, planning_s = row
    per_worker: dict[str, list] = {}
    for assignment in plan.assignments.values():
        per_worker.setdefault(assignment.worker, []).append(assignment)
    return {
        "id": plan_id, "created_at": created, "task_count": task_count, "makespan_s": makespan,
        "lower_bound_s": lower_bound, "vms": vms, "vm_hours": vm_hours, "planning_s": planning_s,
        "workers": [{"worker": worker, "tasks": len(items), "first_start_s": min(a.start_s for a in items),
                     "last_end_s": max(a.end_s for a in items)} for worker, items in sorted(per_worker.items())],
    }
