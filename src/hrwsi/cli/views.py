"""Drawing `hrwsi.reports` data as tables for a terminal (rich).

Text that comes from the database (paths, reasons, messages, names) is printed as plain text, never
as rich markup, so a `[red]` in a file name is shown as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hrwsi.reports import alerts_untried_said, duration_said, folded_away, is_alive
from hrwsi.terminal import one_line, quoted, visible


def time(value: datetime | None) -> str:
    """A time as ops read it, to the second in UTC, as the dashboard shows the same events (app._time): the
    tables showed milliseconds ("09:40:01.654Z") where the dashboard said "09:40:01Z" of the same attempt.
    --json keeps every digit (a time there is for tools, and may be compared or used as a bound)."""
    if not value:
        return "-"
    value = value.astimezone(UTC) if value.tzinfo else value
    return value.strftime("%Y-%m-%d %H:%M:%S") + "Z"


def text(value, limit: int | None = None) -> Text:
    """A cell or line of database text, shown as it is: no markup, no control character obeyed."""
    shown = visible(value)
    if limit and len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return Text(shown)


def line(console: Console, *parts) -> None:
    """Print a line made of plain strings; no markup is interpreted in any part, no control
    character is obeyed."""
    console.print(Text("".join(visible(p) for p in parts)), soft_wrap=True)


def said_under(console: Console, head: str, value) -> None:
    """`head`, then `value` (database text, a reason) with its later lines indented under its first. Why: they
    began at the margin, where they read as lines of the command's own (a held routine's reason in status, found
    by exploratory testing; then every other reason: unplannable tasks, tasks held one by one, task show's)."""
    shown = visible(head)
    line(console, shown, visible(value).replace("\n", "\n" + " " * cell_len(shown)))


def _table(title: str, columns: tuple[str, ...], times: tuple[str, ...] = (), names: tuple[str, ...] = ()) -> Table:
    """A table whose `times` and `names` columns are never wrapped nor cut (`show`). Names are what
    tells one row from another (a service's kind and instance, an alert's kind): at 80 columns rich
    cut each to six characters, `harve…` and `launc…` for every service of `hrwsi status`, and the
    stale one could not be told (found by exploratory testing); such a table is printed as blocks."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, no_wrap=column in times or column in names)
    return table


# The fewest characters a column other than a time's is left, at the least, in a table: fewer, and
# the rows are printed as blocks (`show`).
NARROWEST_COLUMN = 6


def show(console: Console, table: Table) -> None:
    """Print `table` with its times whole: rich narrows and wraps the other columns (paths, reasons)
    to fit the terminal; when even that leaves some column fewer than NARROWEST_COLUMN characters,
    each row is printed as a block of "column  value" lines instead (as psql's `\\x auto`).

    Why: at 80 columns (a terminal's, and the width when piped), rich cut every column alike, times
    too: `hrwsi tasks` showed a deadline as `202…`/`00:…`, `hrwsi alerts` and `hrwsi status` lost
    the `Z` of their times (found by exploratory testing). A time column is one made `no_wrap`
    (`_table`'s `times`), which rich never narrows."""
    if not table.row_count or _narrowest_width(console, table) <= console.width:
        console.print(table)
        return
    console.print(Text(f"{table.title or 'rows'}, a block per row: the table is wider than the terminal's "
                       f"{console.width} columns", style="italic"), soft_wrap=True)
    headers = [str(column.header) for column in table.columns]
    cells = [list(column.cells) for column in table.columns]
    indent = max(map(len, headers)) + 2
    for row in range(table.row_count):
        if row:
            console.print()
        for header, column in zip(headers, cells, strict=True):
            # (each line whole, wrapped by the terminal: a path is not cut; a cell's own lines indented)
            lines = _as_text(console, column[row]).split("\n")
            for at, shown in enumerate(lines):
                line = Text.assemble((header.ljust(indent), "bold") if at == 0 else " " * indent, shown)
                line.rstrip()
                console.print(line, soft_wrap=True)


def _as_text(console: Console, cell) -> Text:
    """A cell as the table shows it: a Text as it is, a str with its markup (hrwsi's own, never user data)."""
    return cell if isinstance(cell, Text) else console.render_str(str(cell))


def _narrowest_width(console: Console, table: Table) -> int:
    """The width `table` needs with its time columns whole and every other column at most
    NARROWEST_COLUMN characters wide: its cells' and headers' widths, padding and borders."""
    def width(cell) -> int:
        return max((cell_len(line) for line in _as_text(console, cell).plain.split("\n")), default=0)

    needed = len(table.columns) + 1 if table.box else 0  # the vertical lines
    for column in table.columns:
        widest = max((width(c) for c in (column.header, *column.cells)), default=0)
        needed += 2 + (widest if column.no_wrap else min(widest, NARROWEST_COLUMN))  # (padding: 1 each side)
    return needed


def _age(seconds: float | None) -> str:
    """How long ago, never negative: a heartbeat written by a clock a little ahead of the database's
    is "0 s ago", as the dashboard says it, not "-3 s ago" (found by exploratory testing)."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


# -- status --------------------------------------------------------------------------------------
def _status_head(console: Console, data: dict) -> None:
    """The lines status starts with: the database refusing writes, what a lock kept from being read, a moved home."""
    if data.get("writes_refused"):  # (database_trouble.refusing_writes_said: the one line that explains the rest)
        console.print(Text(visible(data["writes_refused"]), style="bold red"), soft_wrap=True)
    if data.get("unread"):  # (what a lock held by another session kept from being read: shown empty below)
        console.print(Text(f"could not read {', '.join(data['unread'])} within {data['lock_wait_s']:g} s: a lock is "
                           "held" + ("; see below" if data.get("blocking_sessions") else " (it was let go since)"),
                           style="bold yellow"), soft_wrap=True)
    if data.get("home_moved"):
        console.print(Text(visible(data["home_moved"]), style="bold yellow"), soft_wrap=True)


def status(console: Console, data: dict, stale_after_s: float, all_services: bool = False) -> None:
    _status_head(console, data)
    table = _table("tasks and jobs per state", ("state", "tasks", "jobs (ended: last 24 h)"))
    for state in sorted(set(data["tasks"]) | set(data["jobs"])):
        table.add_row(text(state), str(data["tasks"].get(state, "")), str(data["jobs"].get(state, "")))
    console.print(table)
    if data["tasks"].get("terminated"):  # (a count alone left ops to find what to do with them)
        line(console, f"  {data['tasks']['terminated']} terminated: `hrwsi tasks --state terminated` lists them, "
                      "`hrwsi task show ID` says why each ended, `hrwsi retry ID` (or `hrwsi retry --routine NAME`) "
                      "plans them again")
    if data["tasks"].get("blocked"):  # (counted and said nowhere else: a blocked time series waited unseen)
        line(console, f"  {data['tasks']['blocked']} blocked: their dependency ended terminated or cancelled and nothing "
                      "happens by itself; `hrwsi tasks --state blocked` lists them, `hrwsi task show ID` names the "
                      "dependency and the commands that retry it or run the task without it")
    _held(console, data)
    _deadlines(console, data.get("deadlines"))
    if data["unplannable"]:
        total, shown = data.get("unplannable_total", 0), len(data["unplannable"])
        console.print("[yellow]tasks that cannot be planned"
                      + (f" (the oldest {shown} of {total:,}):" if total > shown else ":") + "[/yellow]")
        for item in data["unplannable"]:
            said_under(console, f"  task {item['task_id']} ({item['routine']}): ", item["reason"])
    _queued_long(console, data.get("queued_long") or [])
    _running_long(console, data.get("running_long") or [])
    _services(console, data["services"], stale_after_s, data.get("versions"), data.get("services_gone"), all_services)
    for session in data.get("blocking_sessions", []):
        opened = session["transaction_s"]
        console.print(Text.assemble(("a session holds a lock hrwsi waits for: ", "bold yellow"),
                                    visible(f"pid {session['pid']} (role {session['role'] or '?'}, "
                                            f"{session['application'] or 'no application name'}, {session['state'] or '?'}"
                                            + (f", transaction open {opened:.0f} s" if opened is not None else "")
                                            + ")")))
        if session["waiting"]:
            line(console, "  waiting: ", ", ".join(session["waiting"]))
        if session.get("locked"):  # (ACCESS EXCLUSIVE: every read of these waits, `hrwsi status`'s too)
            line(console, "  holds an ACCESS EXCLUSIVE lock on: ", ", ".join(session["locked"]))
        line(console, "  next: ", session["next"])
    _database_trouble(console, data)
    for source in data.get("sources", []):  # (failing, held by a harvester that is gone, or overdue)
        # (its name on one line: a data engineer's name with a line break began a line that read as status's own)
        console.print(Text.assemble(("harvest source needs attention: ", "bold yellow"),
                                    one_line(f"{source['name']} ({source['kind']})")))
        said_under(console, "  ", source["next"])  # (its last error may be of several lines)
    # (a group that never completes, and a member that arrived after its composite was made, were seen
    # nowhere: found by exploratory testing)
    _groups_said(console, data.get("stale_groups"), "multi-input groups that cannot complete: ",
                 lambda groups: f"{groups['total']} past their window with nothing open upstream",
                 "`hrwsi groups` says what each lacks (retry a member's terminated task, or make its condition active)")
    _groups_said(console, data.get("late_groups"), "multi-input groups with members their composite lacks: ",
                 lambda groups: (f"{groups['total']} sensed in the last {groups['days']} days, members that arrived "
                                 "after their composite was made"),
                 "`hrwsi groups` lists them with the command that makes a composite with them")
    _missed_products(console, data.get("missed_products") or [])
    counts = data["alerts"] or {}
    if counts.get("unsent") or counts.get("failed"):
        line(console, f"alerts: {counts.get('unsent', 0)} unsent, {counts.get('failed', 0)} failed, "
                      f"{counts.get('sent', 0)} sent: `hrwsi alerts` lists them")
        if untried := alerts_untried_said(counts.get("untried_oldest_s")):
            line(console, "  ", untried)
    if data["recent_failures"]:
        # Printed as blocks (a narrow terminal), a message is wrapped whole; in a table, its first 300 characters
        # (cut to 80 in blocks too, the end of a failure's message was lost: found by exploratory testing), room
        # for the routine's last line of output that ends a failed attempt's message (backends.base.log_last_line:
        # at 80, "exit code 3 (allocation ...); its log ends: " left the routine a few words of its 200).
        table = _recent_failures(data["recent_failures"], None)
        if _narrowest_width(console, table) <= console.width:
            table = _recent_failures(data["recent_failures"], FAILURE_MESSAGE_SHOWN)
        show(console, table)


def _database_trouble(console: Console, data: dict) -> None:
    """Transactions open long (reports.long_transactions) and a server short of connections (connection_slots)."""
    for session in data.get("long_transactions") or []:  # (it holds back VACUUM: reports.long_transactions)
        console.print(Text.assemble(("a transaction has been open long: ", "bold yellow"),
                                    visible(f"pid {session['pid']} (role {session['role'] or '?'}, "
                                            f"{session['application'] or 'no application name'}, "
                                            f"{session['state'] or '?'}, open {duration_said(session['transaction_s'])})")),
                      soft_wrap=True)
        line(console, "  next: ", session["next"])
    if data.get("sessions_not_seen"):  # (reports.sessions_not_seen_said: a role without pg_read_all_stats)
        console.print(Text("(" + visible(data["sessions_not_seen"]) + ")", style="dim"), soft_wrap=True)
    if (slots := data.get("connections")) is not None:  # (near or at max_connections: reports.connection_slots)
        console.print(Text.assemble(("the database server is short of connections: ", "bold red"),
                                    f"{slots['in_use']} of its {slots['slots']} slots are taken (hrwsi's sessions: "
                                    f"{slots['hrwsi']}); past them it refuses new ones, hrwsi's too"), soft_wrap=True)
        line(console, "  next: ", slots["next"])


# (as the dashboard's overview: backends.base.LAST_LINE_CHARACTERS, and the exit code and notes before it)
FAILURE_MESSAGE_SHOWN = 300


def _recent_failures(failures: list[dict], message_limit: int | None) -> Table:
    table = _table("recent failures", ("task", "routine", "attempt", "state", "exit", "message", "finished",
                                       "log", "task now"), times=("finished",), names=("routine", "state", "task now"))
    for f in failures:
        table.add_row(str(f["task_id"]), text(f["routine"]), str(f["attempt"]), text(f["state"]),
                      "" if f["exit_code"] is None else str(f["exit_code"]), text(f["message"], message_limit),
                      time(f["finished_at"]), text(f["log_path"]), _task_now(f))
    return table


def _task_now(failure: dict) -> Text:
    """The task's state now; and, when this attempt could not be placed on its worker, that its next attempt
    goes to another (processing_task.avoid_worker, migration 0087)."""
    if failure.get("avoids_worker"):
        return text(failure["task_state"]) + visible(f", its next attempt not on {failure['avoids_worker']}")
    return text(failure["task_state"])


def _groups_said(console: Console, groups: dict | None, title: str, what, next_step: str) -> None:
    """One kind of multi-input groups needing attention (status): how many and what (`what(groups)`), their
    conditions (the first few, "..." when there are more), and what to do next."""
    if not groups or not groups.get("total"):
        return
    conditions = sorted({g["condition"] for g in groups["groups"]})
    more = ", ..." if groups["total"] > len(groups["groups"]) else ""
    console.print(Text.assemble((title, "bold yellow"),
                                visible(f"{what(groups)} (condition {', '.join(conditions)}{more})")), soft_wrap=True)
    line(console, "  next: ", next_step)


def missed_count(missed: int) -> str:
    """A condition's missed products as status counts them: at most 10,001 (hrwsi.conditions_missing_products)."""
    return "more than 10,000" if missed > 10_000 else str(missed)


def _missed_products(console: Console, conditions: list[dict]) -> None:
    """Active conditions with products never chained to them (made active by a plain UPDATE too: found by review)."""
    for condition in conditions:
        console.print(Text.assemble(("condition missed products: ", "bold yellow"),
                                    visible(f"{condition['condition']}: {missed_count(condition['missed'])} product(s) of type "
                                            f"{condition['product_type']} made while it was inactive (or before it "
                                            "existed) are not chained to it")), soft_wrap=True)
        line(console, "  next: ", condition["next"])


def _deadlines(console: Console, row: dict | None) -> None:
    """The open tasks with a deadline: missed, at risk, held or blocked before it (timeliness.deadline_sentences)."""
    from hrwsi.timeliness import deadline_sentences
    style = {"bad": "bold red", "warn": "bold yellow", "ok": ""}
    for level, sentence in deadline_sentences(row):
        console.print(Text.assemble(("deadlines: ", style[level]), visible(sentence)), soft_wrap=True)


def _jobs_heading(console: Console, jobs: list[dict], title: str, first: str) -> None:
    """A list of jobs' heading: how many of how many (`total`, each row's) it shows, the `first` of them."""
    total = jobs[0]["total"]
    console.print(f"[yellow]{title}" + (f" (the {first} {len(jobs)} of {total:,}):" if total > len(jobs) else ":")
                  + "[/yellow]")


def _queued_long(console: Console, jobs: list[dict]) -> None:
    """Jobs the backend has held queued for over a minute, each with its reason (Nomad's, in one line)."""
    if not jobs:
        return
    _jobs_heading(console, jobs, "jobs queued in the backend for over a minute", "oldest")
    for job in jobs:
        line(console, f"  task {job['task_id']} ({job['routine']}) attempt {job['attempt']}, job {job['backend_job_id']}"
                      f" on {job['worker'] or '?'}, queued {job['queued_s']:.0f} s: ",
             " ".join((job["message"] or "no reason given").split())[:300])


def _running_long(console: Console, jobs: list[dict]) -> None:
    """Jobs running far past their routine's expected duration (reports.RUNNING_LONG_FACTOR), with what happens next."""
    if not jobs:
        return
    _jobs_heading(console, jobs, "jobs running far longer than expected", "longest")
    for job in jobs:
        line(console, f"  task {job['task_id']} ({job['routine']}) attempt {job['attempt']}, job {job['backend_job_id']}"
                      f" on {job['worker'] or '?'}: running {duration_said(job['running_s'])}, expected "
                      f"{duration_said(job['expected_s'])} ({job['running_s'] / job['expected_s']:.0f}x)")
        line(console, "    next: ", job["next"])


def _held(console: Console, data: dict) -> None:
    for routine in data["held_routines"]:
        # (its back-fill alone: the archive lane's tasks; its near-real-time work goes on, migration 0075)
        backfill = routine.get("backfill_only")
        console.print(Text.assemble(("routine's back-fill on hold: " if backfill else "routine on hold: ", "bold yellow"),
                                    visible(routine["routine"]),
                                    f" ({routine['held_tasks']} task(s) held"
                                    + (f", since {time(routine['held_at'])}" if routine["held_at"] else "")
                                    + ("; its near-real-time work goes on" if backfill else "") + ")"))
        said_under(console, "  why: ", routine["reason"] or "held by an operator")
        line(console, "  next: ", routine["next"])
    for campaign in data.get("held_campaigns", []):
        console.print(Text.assemble(("campaign on hold: ", "bold yellow"), f"{campaign['campaign']} (routine ",
                                    visible(campaign["routine"]), f", {campaign['held_tasks']} task(s) held"
                                    + (f", since {time(campaign['held_at'])}" if campaign["held_at"] else "") + ")"))
        said_under(console, "  why: ", campaign["reason"] or "held")
        line(console, "  next: ", campaign["next"])
    if data["held_tasks"]:
        line(console, f"tasks on hold one by one ({len(data['held_tasks'])} shown; `hrwsi release ID` releases one):")
        for item in data["held_tasks"]:
            said_under(console, f"  task {item['id']} ({item['routine']}): ", item["reason"] or "held")
    _handover_holds(console, data.get("handover_holds") or [])


def _handover_holds(console: Console, holds: list[dict]) -> None:
    """The room kept from back-fill for urgent tasks' next steps and retries (migration 0117): said while back-fill
    waits for it, or nothing is (no back-fill waiting: the hold costs nothing)."""
    from hrwsi.reports import handover_hold_said
    waiting = holds[0]["back_fill_waiting"] if holds else 0
    if not waiting:
        return
    line(console, f"back-fill waits for hand-over holds ({waiting:,} less urgent task(s) waiting; room kept for "
                  "near-real-time work for HRWSI_HANDOVER_HOLD_S, then given back):")
    for hold in holds:
        line(console, "  ", handover_hold_said(hold))


def _jobs_held_said(service: dict) -> str:
    """What a stale launcher's jobs wait for: only a launcher of its site adopts them (migrations 0065, 0070)."""
    site = service.get("site") or ""
    if site.startswith("nomad namespace "):
        return (f"; its {service['jobs_held']} Nomad job(s) wait for a launcher whose jobs are in {visible(site[6:])} "
                "(or for its row to be pruned after dead_service_hours)")
    # (the local backend's jobs: adopted only by a launcher sharing its data directory)
    return (f"; its {service['jobs_held']} local job(s) wait for a launcher sharing its data directory on "
            f"{visible(service['host'])} (or for its row to be pruned after dead_service_hours)")


def _heartbeat_said(s: dict, stale_after_s: float) -> Text:
    """A row's heartbeat: its real age, and why it is stale: found dead and replaced (by which instance, when,
    why), replaced by a newer instance, or nothing known (dead or hung?)."""
    stale = not is_alive(s, stale_after_s)
    if s.get("taken_over_by"):  # (its lease was taken over at once, its process proven dead: migration 0082)
        return Text(_age(s["heartbeat_age_s"]) + visible(f" (found dead and replaced by {s['taken_over_by']} at "
                                                         f"{time(s['taken_over_at'])}: {s['taken_over_why']})")
                    + (_jobs_held_said(s) if s.get("jobs_held") else ""), style="yellow")
    replaced = stale and s.get("replaced_by")
    said = (f" (replaced by {visible(s['replaced_by'])}, a newer instance on its host)"
            if replaced and s.get("replaced_by_newer")
            else f" (replaced by {visible(s['replaced_by'])}: the same process, after its lease lapsed)" if replaced
            else " (stale: dead or hung?)" if stale else "")
    if stale and s.get("jobs_held"):
        said += _jobs_held_said(s)
    if not stale and s.get("stopping"):  # (a launcher waiting for its jobs as it stops: migration 0121)
        return Text(_age(s["heartbeat_age_s"]) + f" (stopping since {time(s['stopping_since'])})", style="yellow")
    return Text(_age(s["heartbeat_age_s"]) + said, style="red" if stale and not replaced else "")


def _services(console: Console, services: list[dict], stale_after_s: float, versions: dict | None = None,
              gone_kinds: list[dict] | None = None, all_services: bool = False) -> None:
    if not services:
        console.print("[yellow]no service is registered: start them with `hrwsi up` (or each on its own)[/yellow]")
        return
    for gone in gone_kinds or []:  # (before the table: it may be long, of rows of the gone)
        console.print(Text.assemble((visible(f"no {gone['kind']} is alive"), "bold red"), visible(
            f" (the last, {gone['last']}, beat {_age(gone['heartbeat_age_s'])}): " if gone["last"]
            else " (none is registered: one stopped cleanly removes its row, or none was started): ")),
                      soft_wrap=True)
        line(console, "  next: ", gone["next"])
    table = _table("services", ("kind", "instance", "host", "pid", "version", "started", "heartbeat"), times=("started",),
                   names=("kind", "instance", "host", "version"))
    folded = [] if all_services else [s for s in services if folded_away(s, stale_after_s)]
    for s in services:
        if not any(s is f for f in folded):
            # (a service's kind is written by the service, as its id: text, like every other value; found by review)
            table.add_row(text(s["kind"]), text(s["id"]), text(s["host"]), str(s["pid"]), text(s["version"] or "not recorded"),
                          time(s["started_at"]), _heartbeat_said(s, stale_after_s))
    show(console, table)
    if folded:  # (after a database restart, a stale row per service: found by exploratory testing)
        kinds = {kind: sum(1 for s in folded if s["kind"] == kind) for kind in dict.fromkeys(s["kind"] for s in folded)}
        line(console, f"  and {len(folded)} replaced instance(s) not listed ("
                      + ", ".join(f"{count} {kind}" for kind, count in kinds.items())
                      + "): stale rows of a kind and host where a newer instance is alive (a lease that lapsed, as "
                        "in a database restart, or a service restarted), holding no job; pruned after "
                        "dead_service_hours; `hrwsi status --all-services` lists them")
    alive = [s for s in services if is_alive(s, stale_after_s)]
    for s in alive:  # (what a live service cannot do now: the launcher's Nomad out of reach, say)
        if s.get("stopping"):  # (its shutdown grace: it looked like any running launcher, found by exploratory testing)
            console.print(Text.assemble((visible(f"{s['kind']} stopping"), "bold yellow"),
                                        visible(f" ({s['id']}, since {time(s['stopping_since'])}): {s['stopping']}")),
                          soft_wrap=True)
        if s.get("problem"):
            console.print(Text.assemble((visible(f"{s['kind']} cannot work as it should"), "bold red"),
                                        visible(f" ({s['id']}, since {time(s['problem_since'])}): {s['problem']}")),
                          soft_wrap=True)
        if s.get("code_changed"):  # (`make install` is editable: a `git pull` replaced the code under it)
            console.print(Text(visible(s["code_changed"]), style="bold yellow"), soft_wrap=True)
    # (of the services alive, reports.status: a stale row of a service stopped before an upgrade warned of
    # an upgrade under way long after it was done)
    for said in (versions or {}).get("said", []):
        console.print(Text(visible(said), style="bold red" if "older than the database" in said else "yellow"),
                      soft_wrap=True)


# -- tasks ---------------------------------------------------------------------------------------
# The fewest characters of a task's reason `hrwsi tasks` shows in its table, however narrow the room left on the line.
TASK_REASON_LEAST = 60


def tasks(console: Console, rows: list[dict], next_before: int | None = None) -> None:
    """The tasks, a row each, the reason cut to the room the other columns leave on the terminal's line (at least
    TASK_REASON_LEAST characters); printed as blocks (a narrow terminal), the reason is whole, as with --json and in
    `hrwsi task show`. Why: cut at 60, a failure's reason ("exit code 3: <the routine's last line>") kept about 20
    characters of the routine's line, on a terminal of 200 columns too (found by review)."""
    table = _tasks_table(rows, None)
    if _narrowest_width(console, table) <= console.width:  # (a table, not blocks)
        others = _natural_width(console, _tasks_table(rows, None, reasons=False)) - len("reason")
        table = _tasks_table(rows, max(console.width - others, TASK_REASON_LEAST))
    show(console, table)
    if next_before is not None:
        console.print(f"older tasks follow: add --before {next_before} for the next page", highlight=False)


def _tasks_table(rows: list[dict], reason_limit: int | None, reasons: bool = True) -> Table:
    table = _table(f"tasks ({len(rows)} shown, newest first)",
                   ("id", "routine", "state", "lane", "deadline", "tile", "worker", "attempts", "planned start",
                    "input", "reason"), times=("deadline", "planned start"))
    for r in rows:
        table.add_row(str(r["id"]), text(r["routine"]), text(r["state"]), lane_text(r), time(r["deadline_at"]),
                      text(r["tile"]), text(r["worker"]), f"{r['attempts']} ({r['failures']} failed)",
                      time(r["planned_start"]), text(r["input_path"]),
                      text(r["state_reason"], reason_limit) if reasons else "")
    return table


def _natural_width(console: Console, table: Table) -> int:
    """The width `table` takes with no column narrowed nor wrapped, however wide the terminal."""
    return console.measure(table, options=console.options.update(max_width=1_000_000)).maximum


def lane_text(row: dict) -> Text:
    """A task's lane, with the priority it is served at when raised: by ageing, or because an urgent task
    of its series waits for it ("archive, served as 0")."""
    raised = row.get("lane_priority") is not None and row.get("priority", 0) < row["lane_priority"]
    return text(f"{row.get('lane') or '-'}" + (f", served as {row['priority']}" if raised else ""))


def _inherited_text(data: dict) -> str:
    """A deadline taken from a near-real-time task after it in its time series (migration 0083): served by
    it, but counted late against its own only."""
    if data.get("deadline_inherited_from") is None:
        return ""
    own = time(data["own_deadline_at"]) if data.get("own_deadline_at") else "none"
    return (f" (task {data['deadline_inherited_from']}'s, which waits for it: served by it, counted late against "
            f"its own, {own})")


SAME_REASON = "(same as above)"


def history_reasons(history: list[dict]) -> list[str | None]:
    """Each history row's reason, or SAME_REASON where it is the row before's: a task keeps its reason from
    one state to the next (pending, planned, dispatched, running), so a task retried ten times repeated a
    traceback forty times (found by review). The dashboard's task page shows them so too."""
    return [SAME_REASON if at and h["reason"] and h["reason"] == history[at - 1]["reason"] else h["reason"]
            for at, h in enumerate(history)]


def task(console: Console, data: dict, ui_link: Callable[[str, str], str | None] | None = None) -> None:
    head = visible(f"task {data['id']} ({data['routine']}): {data['state']}" + (" — " if data["state_reason"] else ""))
    reason = visible(data["state_reason"] or "").replace("\n", "\n" + " " * cell_len(head))  # (as said_under)
    console.print(Text.assemble((f"task {data['id']}", "bold"), head[len(f"task {data['id']}"):], reason),
                  soft_wrap=True)
    # (one line each: a data engineer's mission, which the database takes with a line break, printed as it came
    # started a line that read as the command's own, "harvest source needs attention: ..."; found by exploratory
    # testing)
    line(console, f"  input {data['input_id']} ({data['processing_condition']}): ", one_line(data["input_path"]))
    line(console, f"  tile {data['tile'] or '-'}, mission {one_line(data['mission'] or '-')}, measured "
                  f"{time(data['measured_at'])}, published {time(data['published_at'])}")
    line(console, "  lane ", lane_text(data).plain, f", priority {data['priority']}, deadline ",
         time(data["deadline_at"]) if data["deadline_at"] else "none", _inherited_text(data),
         f"; {data['priority_inherited']}" if data.get("priority_inherited") else "",
         f", campaign {data['campaign_id']}" if data["campaign_id"] else "")
    line(console, f"  worker {data['worker'] or '-'}, planned {time(data['planned_start'])} -> "
                  f"{time(data['planned_end'])}, depends on {data['depends_on'] or 'nothing'}, "
                  f"attempts {data['attempts']} ({data['failures']} failed)")
    if data.get("next"):  # (reports.task_next_step: a task that waits for an operator)
        line(console, "  next: ", data["next"])
    from hrwsi.reports import series_ahead_text
    if said := series_ahead_text(data.get("series_ahead")):
        line(console, "  ", said)
    if data.get("handover_holds"):  # (a waiting back-fill task: room kept for urgent work, migration 0117)
        from hrwsi.reports import handover_hold_said
        for hold in data["handover_holds"]:
            line(console, "  waits for a hand-over hold: ", handover_hold_said(hold))
    if data.get("avoid_worker") and data["state"] not in ("processed", "terminated", "cancelled"):
        # (migration 0087; said while planned too, whose reason the plan clears)
        line(console, f"  its next attempt avoids worker {data['avoid_worker']}, where its last one could not be placed "
                      "(another active worker of a flavour it fits takes it, if there is one)")
    if data.get("history_pruned_at"):
        line(console, f"  history and attempts pruned {time(data['history_pruned_at'])} by the retention policy "
                      "(README.md, Retention)")
    history = _table("history", ("at", "state", "attempts", "worker", "reason"), times=("at",))
    for h, said in zip(data["history"], history_reasons(data["history"]), strict=True):
        history.add_row(time(h["at"]), text(h["state"]), str(h["attempts"]), text(h["worker"]),
                        Text(said, style="dim") if said is SAME_REASON else text(said))
    show(console, history)
    jobs = _table("attempts", ("attempt", "backend", "job", "state", "exit", "submitted", "started", "finished"),
                  times=("submitted", "started", "finished"))
    where = []
    for j in data["jobs"]:
        jobs.add_row(str(j["attempt"]), text(j["backend"]), text(j["backend_job_id"]),
                     text(j["state"] + (f": {j['message']}" if j["message"] else "")),
                     "" if j["exit_code"] is None else str(j["exit_code"]), time(j["submitted_at"]),
                     time(j["started_at"]), time(j["finished_at"]))
        where.append((j["attempt"], j["log_path"], ui_link(j["backend"], j["backend_job_id"]) if ui_link else None))
    show(console, jobs)
    for attempt, log, link in where:
        line(console, f"  attempt {attempt} log: ", log or "-", f" (`hrwsi logs {data['id']} --attempt {attempt}`)")
        if link:
            line(console, f"  attempt {attempt} in the Nomad UI: ", link)
    for p in data["products"]:
        line(console, f"  product {p['product_type']}: ", p["path"], f" ({p['size_bytes']} bytes)")


# -- lineage -------------------------------------------------------------------------------------
def lineages(console: Console, data: dict, target: str) -> None:
    """Every lineage a target matched (a name two products share, an input production and a campaign
    both processed), by task id, each saying whose it is."""
    shown = data["lineages"]
    if len(shown) > 1:
        more = " (more match: only these are shown)" if data["more_matches"] else ""
        line(console, f"{len(shown)} tasks match ", target, f"{more}: tasks "
             f"{', '.join(str(one['task_id']) for one in shown)}; `hrwsi lineage TASK_ID` shows one")
    for one in shown:
        lineage(console, one)


def _owner(campaign_id: int | None) -> str:
    return "production" if campaign_id is None else f"campaign {campaign_id}"


def lineage(console: Console, data: dict) -> None:
    chain = data["chain"]
    console.print(Text.assemble(("lineage of task ", "bold"), (str(data["task_id"]), "bold"),
                                f" ({_owner(data.get('campaign_id'))})"
                                f": {sum(1 for c in chain if c['depth'] < 0)} task(s) upstream, "
                                f"{sum(1 for c in chain if c['depth'] > 0)} downstream"))
    for node in chain:
        depth = node["depth"]
        marker = "▲" if depth < 0 else ("▼" if depth > 0 else "●")
        indent = "  " * (abs(depth) if depth > 0 else 0) if depth >= 0 else ""
        owner = f" campaign {node['campaign_id']}" if node.get("campaign_id") is not None else ""
        head = f"{indent}{marker} {depth:+d} task {node['task_id']} {node['routine']} ({node['state']}){owner}"
        superseded = node.get("input_superseded_by")
        line(console, head, f"  input ({node['processing_condition']}, from {node['input_source']}): ",
             node["input_path"], f" (superseded by input {superseded}, its correction)" if superseded else "")
        for product in node["products"]:
            mark = " <- asked" if data.get("product_id") == product["id"] else ""
            if product.get("outdated_by"):
                mark += f" (outdated: made from a version input {product['outdated_by']} corrects)"
            line(console, f"{indent}      product {product['product_type']}: ", product["path"], mark)


# -- multi-input groups ----------------------------------------------------------------------------
def _requirement(req: dict) -> str:
    if req.get("days_needed"):
        return f"{req['product_type']}: {req['days_met']} of {req['days_needed']} day(s) with {req['min_count']}"
    return f"{req['product_type']}: {req['have']} of {req['min_count']}"


def groups(console: Console, data: dict) -> None:
    shown, total = len(data["groups"]), data["total"]
    if not total:
        console.print("no multi-input group waits: every group with members has its input")
    else:
        _incomplete_groups(console, data["groups"], shown, total)
    if data.get("late") is not None:
        late_groups(console, data["late"])
    for placeless in data.get("placeless") or ():
        said_under(console, "", f"{placeless['products']:,} product(s) of the types condition "
                   f"{quoted(placeless['condition'])} groups (made in the last {data['late']['days']} days) have no "
                   f"tile or no sensing time, their inputs had none: no group takes them, and no composite is made of "
                   f"them; the newest: {placeless['newest']}. `hrwsi lineage PATH` shows the input at the start of "
                   f"their chain: correct it, SELECT hrwsi.correct_input(ID, tile => ..., measured_at => ...)")


def _incomplete_groups(console: Console, groups: list[dict], shown: int, total: int) -> None:
    table = _table(f"incomplete multi-input groups ({shown} of {total:,} shown, newest first)" if total > shown
                   else f"incomplete multi-input groups ({total})",
                   ("condition", "tile", "window", "has / needs", "open upstream", "state"))
    for g in groups:
        window = str(g["day"]) if g["window_days"] == 1 else f"{g['window_from']} to {g['day']}"
        needs = "\n".join(("" if r["met"] else "lacks ") + _requirement(r) for r in g["requirements"])
        style = "yellow" if g["state"].startswith("cannot") else ""
        # (the product types are data: given as a str, rich read their "[bold]" as markup and passed ESC on)
        table.add_row(text(g["condition"]), text(g["tile"]), window, text(needs), str(g["open_upstream"]),
                      Text(g["state"], style=style))
    show(console, table)


def late_groups(console: Console, late: dict) -> None:
    """The groups whose composite lacks members that arrived after it was made, each with the command
    that makes a composite with them."""
    shown, total = len(late["groups"]), late["total"]
    if not total:
        console.print(f"no member arrived after its group's composite was made (groups sensed in the last "
                      f"{late['days']} days)")
        return
    table = _table(f"members that arrived after their group's composite ({shown} of {total:,} groups shown, sensed in "
                   f"the last {late['days']} days)" if total > shown else
                   f"members that arrived after their group's composite ({total} groups, sensed in the last "
                   f"{late['days']} days)",
                   ("condition", "tile", "window", "composite", "arrived late", "next"))
    for g in late["groups"]:
        window = str(g["day"]) if g["window_days"] == 1 else f"{g['window_from']} to {g['day']}"
        composite = (f"task {g['task_id']} ({g['task_state']}), made {time(g['made_at'])} of {g['members']} member(s)"
                     if g["task_id"] is not None else f"made {time(g['made_at'])}, no task")
        members = "\n".join(f"{m['product_type']} {m['path']} (arrived {time(datetime.fromisoformat(m['arrived_at']))})"
                             for m in g["late_members"])
        table.add_row(text(g["condition"]), text(g["tile"]), window, composite, text(members), text(g["next"]))
    show(console, table)


# -- alerts --------------------------------------------------------------------------------------
def alerts(console: Console, data: dict, delivery: str) -> None:
    counts = data["counts"] or {}
    line(console, f"alert outbox: {counts.get('sent', 0)} sent, {counts.get('unsent', 0)} unsent, "
                  f"{counts.get('failed', 0)} failed; delivery: {delivery}")
    table = _table(f"alerts ({len(data['alerts'])} shown, newest first)",
                   ("id", "created", "kind", "status", "attempts", "subject", "last error"), times=("created", "status"),
                   names=("kind",))
    for a in data["alerts"]:
        status = a["status"] + (f"\n{time(a['sent_at'])}" if a["sent_at"] else "")  # (its time whole, below)
        table.add_row(str(a["id"]), time(a["created_at"]), text(a["kind"]),
                      Text(status, style={"sent": "green", "failed": "red"}.get(a["status"], "yellow")),
                      str(a["attempts"]), text(a["subject"]), text(a["last_error"], 80))
    show(console, table)


# -- schedules and plans -------------------------------------------------------------------------
def schedule(console: Console, data: dict, limit: int | None = None) -> None:
    """The schedule's figures, and its first `limit` tasks (30,000 planned tasks printed 30,006 lines
    in 18 s of CPU: found by exploratory testing)."""
    per_state = ", ".join(f"{n} {s}" for s, n in sorted(data["per_state"].items())) or "nothing"
    line(console, f"current schedule at {time(data['at'])}: {per_state} on {data['workers']} worker(s); "
                  + (f"its expected end passed at {time(data['expected_end'])}, overdue by {duration_said(data['overdue_s'])}"
                     if data.get("overdue_s") is not None else f"expected to end {time(data['expected_end'])}")
                  + (f" at the earliest: {data['overrunning']} task(s) run past their expected end (the longest by "
                     f"{duration_said(data['overrunning_longest_s'])}), and the tasks not started wait for what they hold"
                     if data.get("overrunning") and data.get("overdue_s") is None else ""))
    shown = data["tasks"][:limit] if limit is not None else data["tasks"]
    more = len(data["tasks"]) - len(shown)
    table = _table("tasks holding a worker (by worker, then start"
                   + (f"; the first {len(shown):,} of {len(data['tasks']):,})" if more else ")"),
                   ("worker", "task", "routine", "state", "planned start", "planned end", "started", "expected end",
                    "plan"), times=("planned start", "planned end", "started", "expected end"))
    for t in shown:
        table.add_row(text(t["worker"]), str(t["task_id"]), text(t["routine"]), text(t["state"]), time(t["planned_start"]),
                      time(t["planned_end"]), time(t["started_at"]), _expected_end(t), str(t["plan_id"] or "-"))
    show(console, table)
    if more:
        line(console, f"... and {more:,} more task(s): --limit shows more, --json lists them all")


def _expected_end(task: dict) -> str:
    """A task's expected end; one that passed (a running task that overran) says so, and by how long, below it;
    a task not started whose planned start passed says that it waits, and since when (not "overdue")."""
    if task.get("overdue_s") is not None:
        return f"{time(task['expected_end'])}\npassed, overdue by {duration_said(task['overdue_s'])}"
    if task.get("start_late_s") is not None:
        return (f"{time(task['expected_end'])}\nnot started, its planned start passed "
                f"{duration_said(task['start_late_s'])} ago")
    return time(task["expected_end"])


def stored_plan(console: Console, data: dict) -> None:
    ratio = data["makespan_s"] / data["lower_bound_s"] if data["lower_bound_s"] else 1
    line(console, f"plan {data['id']} made {time(data['created_at'])}: {data['task_count']} task(s) on {data['vms']} "
                  f"VM(s), makespan {data['makespan_s']:.1f} s, lower bound {data['lower_bound_s']:.1f} s "
                  f"({ratio:.3f} x), {data['vm_hours']:.3f} VM-hours, planned in {data['planning_s'] * 1000:.0f} ms")
    table = _table(f"plan {data['id']}: tasks per worker (still holding this plan)",
                   ("worker", "tasks", "first start", "last end"))
    for w in data["workers"]:
        table.add_row(text(w["worker"]), str(w["tasks"]), f"{w['first_start_s']:.1f} s", f"{w['last_end_s']:.1f} s")
    console.print(table)


def sources(console: Console, rows: list[dict], now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    table = _table(f"{len(rows)} source(s)", ("name", "kind", "product type", "schedule", "mode", "state",
                                              "last run at", "next run at", "files", "last error"),
                   times=("state", "last run at", "next run at"))
    for row in rows:
        # (an inactive source's next run read as overdue, and which harvester ran one was only in --json)
        running = row.get("claimed_until") is not None and row["claimed_until"] > now
        state = ("inactive" if not row.get("active") else
                 f"running on {row['running_on']}\nclaim until {time(row['claimed_until'])}" if running else "active")
        files = ", ".join(f"{n} {name}" for name, n in sorted((row.get("files") or {}).items()))
        table.add_row(text(row["name"]), text(row["kind"]), text(row["product_type"]), text(row["schedule"]),
                      text(row["mode"]), text(state), time(row.get("last_run_at")),
                      time(row.get("next_run_at")) if row.get("active") else "-", text(files), text(row.get("last_error")))
    show(console, table)
