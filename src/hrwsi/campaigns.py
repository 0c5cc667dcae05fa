"""Reprocessing campaigns (ADR 0010): `hrwsi reprocess` starts one, `hrwsi campaigns` shows them.

A campaign is made by ONE call of the SQL function `hrwsi.reprocess` (sql/schema.sql): one new task,
in the archive lane and without a deadline, per input of a routine (or of one condition of it)
sensed in a time range, on some tiles, that was processed already; optionally with another version
of the routine (command or image). The old tasks and products stay; the new products are written
beside them and chain downstream within the campaign unless it says `chain = false`. Progress comes
from the view `hrwsi.campaign_progress`, one row per campaign and routine.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

import psycopg
from psycopg.rows import dict_row
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hrwsi.sql_files import query
from hrwsi.terminal import one_line, visible

STATE_COLUMNS = ("waiting", "running", "processed", "terminated", "cancelled")


@dataclass(frozen=True)
class CampaignRequest:
    """What `hrwsi reprocess` asks for; exactly one of routine and condition."""

    measured_from: datetime
    measured_to: datetime
    routine: str | None = None
    condition: str | None = None
    tiles: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    image: str | None = None
    chain: bool = True
    name: str | None = None

    def params(self) -> dict:
        return {"routine": self.routine, "condition": self.condition, "measured_from": self.measured_from,
                "measured_to": self.measured_to, "tiles": list(self.tiles) or None,
                "command": list(self.command) or None, "image": self.image, "chain": self.chain, "name": self.name}


def parse_time(text: str) -> datetime:
    """A sensing time from the command line: an ISO date (its 00:00 UTC) or date and time; a time
    without a zone is UTC, as every time in hrwsi."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a date (2026-01-31) or a date and time (2026-01-31T10:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def split_command(text: str | None) -> tuple[str, ...]:
    """A command line as argv (shell quoting), with {python} standing for the interpreter running
    hrwsi, as in the configuration file."""
    if not text:
        return ()
    return tuple(part.replace("{python}", sys.executable) for part in shlex.split(text))


class SameCampaignOpen(Exception):
    """An open campaign already reprocesses what the request asks; the message names it and how to
    start another anyway."""


class CorrectionUnderWay(Exception):
    """The start waited lock_timeout for a correction of an input under way (hrwsi.reprocess waits for one, migration
    0102); the message names the session that corrects."""


def start(conn: psycopg.Connection, request: CampaignRequest, *, again: bool = False) -> dict:
    """Create the campaign and its tasks in one call; returns campaign_id, tasks and a summary sentence.
    psycopg errors (no such routine, nothing to reprocess, a bad range) carry the database's sentence.

    SameCampaignOpen when an open campaign (not finished, not cancelled) reprocesses the same routine
    or condition, range and tiles with the same version, unless `again`. Why: `hrwsi reprocess` run
    twice (a command repeated from the shell's history) started a second campaign silently, and both
    ran: twice the work on the cluster for the same products (found by exploratory testing). The
    check is hrwsi.reprocess's own (migration 0058), so a campaign started in SQL keeps it too; this
    names the campaign as `hrwsi campaigns` shows it, and the command's option."""
    try:
        with conn.transaction():
            return conn.cursor(row_factory=dict_row).execute(query("reprocess"),
                                                             {**request.params(), "again": again}).fetchone()
    except psycopg.errors.LockNotAvailable as error:
        from hrwsi.harvest.corrections import correction_waited_for

        waited = correction_waited_for(conn, error)
        if waited is None:
            raise
        raise CorrectionUnderWay(f"hrwsi reprocess {waited}, and started no campaign: run it again once that "
                                 "correction commits or rolls back (`hrwsi status` names a session left open)") from None
    except psycopg.errors.UniqueViolation as error:
        if error.diag.constraint_name != TWIN_REFUSED:
            raise
        twin = int(error.diag.message_primary.split()[1])  # "campaign N already reprocesses ..."
    shown = load(conn, twin)
    label = f" ({shown[0].header['name']!r})" if shown and shown[0].header["name"] else ""
    status = shown[0].status if shown else "open"
    raise SameCampaignOpen(
        f"campaign {twin}{label} already reprocesses these inputs with this version and is {status}: "
        f"`hrwsi campaigns --id {twin}` shows it; add --again to start another one anyway (both run)")


# The constraint named by hrwsi.reprocess's refusal of a campaign already open (sql/schema.sql).
TWIN_REFUSED = "campaign_is_not_started_twice"


class NothingToCancel(Exception):
    """The campaign had already finished (or was cancelled): `hrwsi campaigns --cancel` refuses, as
    `hrwsi cancel` refuses a finished task."""


def cancel(conn: psycopg.Connection, campaign: int) -> str:
    """Cancel the campaign's open tasks (hrwsi.cancel_campaign); NothingToCancel when it had finished.

    Why: on a finished campaign the cancel said "0 open task(s) cancelled" and the campaign went on
    showing "finished", as if the command had been lost (found by exploratory testing). A campaign
    whose last tasks ended but whose products are not chained yet is not finished: downstream tasks
    may still come, and it is cancelled as before."""
    shown = load(conn, campaign)
    if shown and shown[0].header["campaign_cancelled"]:
        raise NothingToCancel(f"campaign {campaign} was already cancelled: nothing was cancelled")
    if shown and shown[0].totals["finished_at"] is not None:
        raise NothingToCancel(f"campaign {campaign} had already finished ({shown[0].status}): nothing was cancelled")
    return conn.execute(query("cancel_campaign"), {"campaign": campaign}).fetchone()[0]


def release(conn: psycopg.Connection, campaign: int) -> str:
    """Start a held campaign again (hrwsi.release_campaign)."""
    return conn.execute(query("release_campaign"), {"campaign": campaign}).fetchone()[0]


def hold(conn: psycopg.Connection, campaign: int) -> str:
    """Hold a campaign's waiting tasks; what runs goes on, production too (hrwsi.hold_campaign)."""
    return conn.execute(query("hold_campaign"), {"campaign": campaign}).fetchone()[0]


@dataclass
class Campaign:
    """One campaign with its progress per routine, and its totals."""

    header: dict
    routines: list[dict] = field(default_factory=list)

    @property
    def totals(self) -> dict:
        counted = ("tasks", *STATE_COLUMNS, "products", "unchained_products")
        totals = {key: sum(r[key] for r in self.routines) for key in counted}
        starts = [r["started_at"] for r in self.routines if r["started_at"]]
        ends = [r["finished_at"] for r in self.routines]
        totals["started_at"] = min(starts) if starts else None
        totals["finished_at"] = max(ends) if ends and all(ends) else None
        return totals

    @property
    def status(self) -> str:
        """waiting (nothing started), running, or, once every task is final and every product chained:
        finished, finished with N terminated (and/or N cancelled: tasks cancelled one by one), or
        cancelled (the campaign itself, `hrwsi campaigns --cancel`); on hold (and why) first."""
        totals = self.totals
        if self.header["on_hold"]:
            return f"on hold ({self.header['hold_reason'] or 'held'}; `hrwsi campaigns --release " \
                   f"{self.header['campaign_id']}` starts it again)"
        # (One task cancelled by hand among 6 processed said the whole campaign was "cancelled":
        # found by exploratory testing.) Cancelled as soon as it is, not once its last products are
        # set aside (it said "running" until then).
        if self.header["campaign_cancelled"]:
            return "cancelled"
        if totals["finished_at"] is None:
            stalled = self._stalled(totals)
            if stalled:
                return f"stalled ({stalled})"
            return "running" if totals["started_at"] else "waiting"
        ended = [f"{totals[state]} {state}" for state in ("terminated", "cancelled") if totals[state]]
        return f"finished with {', '.join(ended)}" if ended else "finished"


    def _stalled(self, totals: dict) -> str | None:
        """What holds a campaign none of whose tasks runs or can be planned: tasks blocked behind one
        that ended terminated or cancelled, tasks held (by a routine on hold, or one by one). None
        while something runs or can run, or nothing waits (its last products are being chained)."""
        h = self.header
        if totals["running"] or h.get("ready") or not (h.get("blocked") or h.get("held")):
            return None
        reasons = []
        if h.get("blocked"):
            behind = h.get("blocked_behind")
            state = h.get("blocked_behind_state")
            again = f"`hrwsi retry {behind}` runs it again" if state == "terminated" else \
                "`hrwsi release TASK` runs a blocked task without it"
            reasons.append(f"{h['blocked']} blocked behind task {behind} ({state}: {again})" if behind
                           else f"{h['blocked']} blocked")
        if h.get("held"):
            routines = h.get("held_by_routines") or []
            reasons.append(f"{h['held']} held by routine {', '.join(routines)} (on hold: `hrwsi release "
                           f"{routines[0]}`)" if routines else f"{h['held']} held one by one (`hrwsi release TASK`)")
        return "; ".join(reasons)


HEADER_KEYS = ("campaign_id", "name", "campaign_routine", "condition", "measured_from", "measured_to", "tiles",
               "version", "lane", "chain", "created_at", "created_by", "on_hold", "hold_reason", "campaign_cancelled",
               "cancelled_at", "cancelled_by", "ready", "blocked", "blocked_behind", "blocked_behind_state", "held",
               "held_by_routines")


def group_rows(rows: list[dict]) -> list[Campaign]:
    """Rows of hrwsi.campaign_progress (one per campaign and routine) as campaigns, in the rows' order."""
    campaigns: dict[int, Campaign] = {}
    for row in rows:
        campaign = campaigns.setdefault(row["campaign_id"], Campaign({k: row[k] for k in HEADER_KEYS}))
        if row["routine"] is not None:
            campaign.routines.append({k: v for k, v in row.items() if k not in HEADER_KEYS})
    return list(campaigns.values())


def load(conn: psycopg.Connection, campaign: int | None = None) -> list[Campaign]:
    rows = conn.cursor(row_factory=dict_row).execute(query("report_campaigns"), {"campaign": campaign}).fetchall()
    return group_rows(rows)


def as_json(campaigns: list[Campaign]) -> list[dict]:
    """The campaigns as `hrwsi campaigns --json` prints them (hrwsi.cli.common.print_json: times in
    UTC with a Z, as every other --json). Why: they were written with their own encoder, in the
    client's zone (PGTZ=Pacific/Auckland: "2026-01-01T13:00:00+13:00"; found by exploratory testing)."""
    return [{**c.header, "status": c.status, "totals": c.totals, "routines": c.routines} for c in campaigns]


def _time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def print_campaigns(console: Console, campaigns: list[Campaign]) -> None:
    if not campaigns:
        console.print("no campaign yet: `hrwsi reprocess --help` starts one")
        return
    for campaign in campaigns:
        h, totals = campaign.header, campaign.totals
        what = h["campaign_routine"] + (f" (condition {h['condition']})" if h["condition"] else "")
        tiles = ", ".join(h["tiles"]) if h["tiles"] else "every tile"
        # (one_line: a campaign's name, version and hold reason are anyone's text, and hrwsi.reprocess takes any: a
        # name "fix\nr1  1  1  0  FAKE" printed a line that read as one of this command's own; found by exploratory
        # testing)
        console.print(f"[bold]campaign {h['campaign_id']}[/bold]" + (f" {escape(one_line(h['name']))}" if h["name"] else "")
                      + f": {escape(one_line(campaign.status))}", highlight=False)
        console.print(escape(one_line(f"  {what}, sensed {_time(h['measured_from'])} to {_time(h['measured_to'])}, {tiles}; "
                             f"version {h['version'] or 'the routine’s own'}; lane {h['lane']}; "
                             f"{'chains downstream' if h['chain'] else 'does not chain'}; "
                             f"created {_time(h['created_at'])} by {h['created_by']}; "
                             f"started {_time(totals['started_at'])}, finished {_time(totals['finished_at'])}"
                             + (f"; cancelled {_time(h['cancelled_at'])} by {h['cancelled_by'] or 'an operator'}"
                                if h["cancelled_at"] else ""))),
                      highlight=False, soft_wrap=True)
        table = Table()
        for column in ("routine", "tasks", *STATE_COLUMNS, "products"):
            table.add_column(column, justify="left" if column == "routine" else "right")
        for row in [*campaign.routines, {"routine": "all", **totals}]:
            table.add_row(escape(visible(row["routine"])), *(str(row[c]) for c in ("tasks", *STATE_COLUMNS, "products")))
        console.print(table)
