"""Near-real-time production: `hrwsi timeliness`, `hrwsi reprocess`, `hrwsi campaigns` (ADR 0010)."""

from __future__ import annotations

import psycopg
import typer

from hrwsi.cli.common import (
    JSON_HELP,
    CliError,
    app,
    console,
    database,
    days_option,
    filter_given,
    id_option,
    print_json,
)
from hrwsi.terminal import one_sentence, visible


@app.command()
def timeliness(routine: str | None = typer.Option(None), lane: str | None = typer.Option(None, help="nrt or archive"),
               tile: str | None = typer.Option(None), days: int = days_option(7, help="the last N days"),
               as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Products' delays from sensing and from publication (p50, p95) and share on time, per routine,
    lane, tile and day; open tasks late or planned to end after their deadline."""
    from hrwsi import timeliness as report

    filter_given({"--routine": routine, "--lane": lane, "--tile": tile})
    with database() as conn:
        data = report.report(conn, report.Filters(routine, lane, tile, days))
    if as_json:
        print_json(data)
    else:
        report.print_report(console, data)


@app.command()
def reprocess(measured_from: str = typer.Option(..., "--from", help="sensing time from (2026-01-01, UTC)"),
              measured_to: str = typer.Option(..., "--to", help="sensing time to, excluded"),
              routine: str | None = typer.Option(None, help="reprocess this routine's inputs ..."),
              condition: str | None = typer.Option(None, help="... or those of one condition"),
              tile: list[str] = typer.Option([], help="only these tiles (repeat it); default: every tile"),
              command: str | None = typer.Option(None, help="run this version of the routine ({python}: hrwsi's)"),
              image: str | None = typer.Option(None, help="run this image of the routine"),
              chain: bool = typer.Option(True, help="its products chain downstream within the campaign"),
              name: str | None = typer.Option(None, help="a label"),
              again: bool = typer.Option(False, "--again",
                                         help="start it even if an open campaign reprocesses the same inputs "
                                              "with the same version (both run)")) -> None:
    """Start a reprocessing campaign: a new task (archive lane) per input already processed; old
    products are kept, new ones are written beside them."""
    from hrwsi import campaigns

    try:
        request = campaigns.CampaignRequest(
            campaigns.parse_time(measured_from), campaigns.parse_time(measured_to), routine, condition, tuple(tile),
            campaigns.split_command(command), image, chain, name)
    except ValueError as error:
        raise CliError(str(error), exit_code=2) from None
    with database(autocommit=True) as conn:
        try:
            started = campaigns.start(conn, request, again=again)
        except (psycopg.errors.CheckViolation, psycopg.errors.NoDataFound, psycopg.errors.ForeignKeyViolation) as error:
            raise CliError(one_sentence(error.diag.message_primary)) from None
        except campaigns.SameCampaignOpen as error:  # (refused: exit 1)
            raise CliError(str(error)) from None
        except campaigns.CorrectionUnderWay as error:  # (a lock wait that ran out: exit 2, as every lock_timeout)
            raise CliError(str(error), exit_code=2) from None
    console.print(visible(started["summary"]), highlight=False, markup=False, soft_wrap=True)


@app.command("campaigns")
def campaigns_command(campaign: int | None = id_option(None, "--id", help="one campaign"),
                      cancel: int | None = id_option(None, help="cancel this campaign's open tasks first"),
                      hold: int | None = id_option(None, help="hold this campaign's waiting tasks (production goes on)"),
                      release: int | None = id_option(None, help="start this held campaign again"),
                      as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Reprocessing campaigns: tasks per state and products, per routine, started and finished."""
    from hrwsi import campaigns

    with database(autocommit=True) as conn:
        for action, campaign_id in ((campaigns.cancel, cancel), (campaigns.hold, hold), (campaigns.release, release)):
            if campaign_id is not None:
                try:
                    console.print(visible(action(conn, campaign_id)), highlight=False, markup=False)
                except (psycopg.errors.NoDataFound, psycopg.errors.CheckViolation) as error:
                    raise CliError(one_sentence(error.diag.message_primary)) from None
                except campaigns.NothingToCancel as error:  # (exit 1, as `hrwsi cancel` of a finished task)
                    raise CliError(str(error)) from None
        shown = campaigns.load(conn, campaign)
    if as_json:
        print_json(campaigns.as_json(shown))
    else:
        campaigns.print_campaigns(console, shown)
