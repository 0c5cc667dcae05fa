"""hrwsi.campaigns: the command line's times and commands, and a campaign's totals and status."""

import io
import sys
from datetime import UTC, datetime

import pytest
from rich.console import Console

from hrwsi.campaigns import HEADER_KEYS, group_rows, parse_time, print_campaigns, split_command


def test_a_date_is_its_midnight_utc_and_a_time_without_a_zone_is_utc():
    assert parse_time("2026-01-31") == datetime(2026, 1, 31, tzinfo=UTC)
    assert parse_time("2026-01-31T10:30") == datetime(2026, 1, 31, 10, 30, tzinfo=UTC)
    assert parse_time("2026-01-31T10:30Z") == datetime(2026, 1, 31, 10, 30, tzinfo=UTC)
    assert parse_time("2026-01-31T11:30+01:00") == datetime(2026, 1, 31, 10, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="'31/01/2026' is not a date"):
        parse_time("31/01/2026")


def test_a_command_is_split_like_a_shell_and_python_stands_for_hrwsis_interpreter():
    assert split_command("{python} -m snow --label 'v 2'") == (sys.executable, "-m", "snow", "--label", "v 2")
    assert split_command(None) == () and split_command("") == ()


def row(campaign, routine, **counts):
    base = {key: None for key in HEADER_KEYS}
    base.update({"campaign_id": campaign, "routine": routine, "tasks": 0, "waiting": 0, "running": 0, "processed": 0,
                 "terminated": 0, "cancelled": 0, "products": 0, "unchained_products": 0, "started_at": None,
                 "finished_at": None})
    base.update(counts)
    return base


T1, T2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)


def test_a_campaign_is_finished_only_when_every_routine_of_it_is():
    [campaign] = group_rows([row(1, "snow", tasks=2, processed=2, products=2, started_at=T1, finished_at=T2),
                             row(1, "quicklook", tasks=2, running=1, processed=1, started_at=T2)])
    assert campaign.totals["tasks"] == 4 and campaign.totals["started_at"] == T1
    assert campaign.status == "running" and campaign.totals["finished_at"] is None


@pytest.mark.parametrize(("counts", "status"), [
    ({"tasks": 1, "waiting": 1}, "waiting"),
    ({"tasks": 2, "processed": 2, "started_at": T1, "finished_at": T2}, "finished"),
    ({"tasks": 2, "processed": 1, "terminated": 1, "started_at": T1, "finished_at": T2}, "finished with 1 terminated"),
    # (a task cancelled by hand: the campaign finished; the campaign itself cancelled: cancelled)
    ({"tasks": 2, "processed": 1, "cancelled": 1, "started_at": T1, "finished_at": T2}, "finished with 1 cancelled"),
    ({"tasks": 2, "processed": 1, "cancelled": 1, "started_at": T1, "finished_at": T2, "campaign_cancelled": True},
     "cancelled"),
])
def test_a_campaign_says_where_it_is(counts, status):
    [campaign] = group_rows([row(7, "snow", **counts)])
    assert campaign.status == status


def test_rows_become_campaigns_in_their_order_and_a_campaign_without_tasks_is_kept():
    campaigns = group_rows([row(2, "snow"), row(1, None)])
    assert [c.header["campaign_id"] for c in campaigns] == [2, 1]
    assert campaigns[1].routines == [] and campaigns[1].status == "waiting"


def test_a_campaigns_name_or_version_with_a_line_break_is_printed_on_its_own_line_not_as_one_of_hrwsis():
    """hrwsi.reprocess takes any name and image: a name "fix\\nr1  1  1  0  FAKE" printed a line of `hrwsi campaigns`
    that read as one of its own, and an image "img\\nX" split the campaign's line in two (found by exploratory
    testing). Each is shown on its line, its line break as its escape."""
    [campaign] = group_rows([row(5, "snow", tasks=1, waiting=1, name="fix\nsnow  1  1  0  FAKE", campaign_routine="snow",
                                 version="img\nX", lane="archive", chain=True, created_by="ana\rroot")])
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_campaigns(console, [campaign])
    lines = console.file.getvalue().splitlines()
    assert lines[0] == "campaign 5 fix\\x0asnow  1  1  0  FAKE: waiting", lines
    assert lines[1].startswith("  snow, sensed - to -, every tile; version img\\x0aX; lane archive;"), lines
    assert "by ana\\x0droot;" in lines[1], lines
