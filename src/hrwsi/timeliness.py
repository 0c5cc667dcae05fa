"""`hrwsi timeliness`: how long after sensing, and after publication, products were registered, and
the share on time against their condition's deadline (ADR 0010).

The figures come from two views (sql/schema.sql): `hrwsi.product_timeliness` (one row per product)
and `hrwsi.timeliness` (per routine, lane, tile and UTC day of registration: count, p50/p95 of both
delays, share on time). This module reads them with the user's filters and prints them.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hrwsi.sql_files import query
from hrwsi.terminal import visible

DELAY_COLUMNS = ("p50_from_sensing_s", "p95_from_sensing_s", "p50_from_publication_s", "p95_from_publication_s")


@dataclass(frozen=True)
class Filters:
    routine: str | None = None
    lane: str | None = None
    tile: str | None = None
    days: int = 7

    def params(self) -> dict:
        return {"routine": self.routine, "lane": self.lane, "tile": self.tile, "days": self.days}


YEAR_S = 365.25 * 86400


def duration_text(seconds: float | None) -> str:
    """A delay as people read it: 45 s, 12 min, 3.5 h, 2.1 d, 65.0 years; '-' when unknown. (A scene
    sensed in 1950 showed as 23755.4 d: found by exploratory testing.)"""
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    value = abs(seconds)
    if value < 60:
        return f"{sign}{value:.0f} s"
    if value < 3600:
        return f"{sign}{value / 60:.1f} min"
    if value < 2 * 86400:
        return f"{sign}{value / 3600:.1f} h"
    if value < YEAR_S:
        return f"{sign}{value / 86400:.1f} d"
    return f"{sign}{value / YEAR_S:.1f} years"


def share_text(on_time: int, with_deadline: int) -> str:
    """'97.0 % (97/100)', or '-' when no product had a deadline."""
    if not with_deadline:
        return "-"
    return f"{100.0 * on_time / with_deadline:.1f} % ({on_time}/{with_deadline})"


def deadline_sentences(row: dict | None) -> list[tuple[str, str]]:
    """What `hrwsi status` and the dashboard say of the open tasks with a deadline (query
    report_deadlines_now), as (level, sentence): "bad" for deadlines missed, "warn" for those at risk
    or that cannot progress, "ok" when none is. Empty when no open task has a deadline.

    Why: neither said anything of deadlines; a production manager learnt that near-real-time work
    was late from the alert outbox's count, and not at all that 3,000 scenes sensed in 2019, inserted
    without lane 'archive', had deadlines from 2019 and went before every fresh scene, earliest
    deadline first (found by exploratory testing)."""
    if not row or not row["open"]:
        return []
    said = []
    if row["past"]:
        sentence = (f"{row['past']:,} open task(s) past their deadline, not processed (the latest: task "
                    f"{row['past_task']} ({row['past_routine']}), due {duration_text(row['past_s'])} ago)")
        if row["arrived_over_a_day_late"]:
            # (an input without a lane of its own is back-fill then, without a deadline: one given the
            # near-real-time lane, or inserted before migration 0075)
            sentence += (f"; {row['arrived_over_a_day_late']:,} of them were more than a day past it when their input "
                         "arrived: a back-fill inserted in a near-real-time lane? Served earliest deadline first, they "
                         "go before every fresh scene of their lane; back-fill goes in with lane 'archive' (no "
                         "deadline, after near-real-time work)")
        said.append(("bad", sentence))
    if row["at_risk"]:
        said.append(("warn", f"{row['at_risk']:,} open task(s) planned to end after their deadline, still ahead (the "
                             f"first: task {row['risk_task']} ({row['risk_routine']}), due in "
                             f"{duration_text(row['risk_due_in_s'])}, planned to end "
                             f"{duration_text(row['risk_late_s'])} late)"))
    if row["stuck"]:
        said.append(("warn", f"{row['stuck']:,} open task(s) held or blocked before their deadline (the first: task "
                             f"{row['stuck_task']} ({row['stuck_routine']}), due in "
                             f"{duration_text(row['stuck_due_in_s'])}, {row['stuck_state']}: "
                             f"{row['stuck_reason'] or 'held by an operator'})"))
    if row["next_task"] is not None and not said:
        said.append(("ok", f"{row['open']:,} open task(s) with a deadline, none past it, planned to end after it, held "
                           f"or blocked; the next due in {duration_text(row['next_due_in_s'])} (task "
                           f"{row['next_task']} ({row['next_routine']}))"))
    return said


def report(conn: psycopg.Connection, filters: Filters) -> dict:
    """Per routine, lane, tile and day; per routine and lane over the window; open tasks late or at risk."""
    cursor = conn.cursor(row_factory=dict_row)
    rows = cursor.execute(query("report_timeliness"), filters.params()).fetchall()
    summary = cursor.execute(query("report_timeliness_summary"), filters.params()).fetchall()
    open_tasks = cursor.execute(query("report_open_deadlines"), filters.params()).fetchone()
    return {"filters": filters.params(), "summary": summary, "per_day": rows, "open_tasks": open_tasks}


def _table(title: str, rows: list[dict], keys: tuple[str, ...]) -> Table:
    table = Table(title=title)
    for key in keys:
        table.add_column(key, no_wrap=key == "day")  # (a day is never cut: `2026-12…` at 80 columns)
    for heading in ("products", "p50 / p95 from sensing", "p50 / p95 from publication", "on time"):
        table.add_column(heading, justify="right")
    for row in rows:
        # (a product with a negative delay is counted in the figures, as it is: said, not left out)
        products = str(row["products"]) + (f" ({row['negative_delays']} negative)" if row.get("negative_delays") else "")
        table.add_row(*(escape(visible(row[k])) if row[k] is not None else "-" for k in keys), products,
                      f"{duration_text(row['p50_from_sensing_s'])} / {duration_text(row['p95_from_sensing_s'])}",
                      f"{duration_text(row['p50_from_publication_s'])} / "
                      f"{duration_text(row['p95_from_publication_s'])}",
                      share_text(row["on_time"], row["with_deadline"]))
    return table


def print_report(console: Console, data: dict) -> None:
    days = data["filters"]["days"]
    if not data["summary"]:
        console.print(f"no product registered in the last {days} day(s) matches", highlight=False)
    else:
        console.print(_table(f"timeliness over the last {days} day(s), per routine and lane", data["summary"],
                             ("routine", "lane")))
        console.print(_table("per routine, lane, tile and day (UTC, of registration)", data["per_day"],
                             ("day", "routine", "lane", "tile")))
        negative = sum(row.get("negative_delays") or 0 for row in data["summary"])
        if negative:
            # Why: a scene whose sensing is after its product (its times inserted without a zone, say)
            # was shown and averaged without a mark (found by exploratory testing).
            console.print(f"[yellow]{negative} product(s) have a negative delay: registered before their "
                          "input was sensed or published: the input's times are wrong (given without a time zone?); "
                          "the figures above count them as they are[/yellow]", highlight=False)
    late, at_risk = data["open_tasks"]["late"], data["open_tasks"]["at_risk"]
    if late or at_risk:
        console.print(f"[yellow]open tasks: {late} past their deadline, {at_risk} planned to end after it[/yellow]"
                      " (alerts deadline_missed, deadline_at_risk)", highlight=False)
