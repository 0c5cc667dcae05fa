"""`hrwsi config load|validate|show|keys`: configuration as data (hrwsi.configuration)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from hrwsi.cli.common import JSON_HELP, app, console, database, print_json
from hrwsi.terminal import visible

# hrwsi.configuration (the file's models, pydantic) is imported by each command, not here: every command of the CLI
# loads this module, `hrwsi up` and the services it runs among them, which never read the file (9 MB of RSS each).
config_app = typer.Typer(help="Configuration as data: budget, flavours, workers, routines, conditions, retention.",
                         no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("load")
def config_load(path: Path) -> None:
    """Check a TOML file against the schema, then load it (upsert) in one transaction; nothing is
    written if anything is wrong."""
    from hrwsi import configuration
    document = configuration.read_file(path)  # (once: the load and its notes read the same document)
    with database(start=True) as conn:
        said: list[str] = []
        counts = configuration.load(conn, document, source=str(path), said=said)
        said += configuration.notes(conn, document)
    console.print(", ".join(f"{n} {kind}" for kind, n in counts.items()), highlight=False)
    for note in said:
        console.print(Text(f"note: {visible(note)}", style="yellow"), soft_wrap=True)


@config_app.command("validate")
def config_validate(path: Path,
                    offline: bool = typer.Option(False, help="check the file alone: every flavour and routine it "
                                                             "refers to must be in it (no database needed)")) -> None:
    """Check a TOML file as `config load` would, writing nothing: one line per problem with its key path.
    References to flavours and routines may be to the database's, and its own checks apply (unless --offline)."""
    from hrwsi import configuration
    document = configuration.read_file(path)
    said: list[str] = []
    if offline:
        configuration.validate(document, None, str(path))
    else:  # as `config load` would: loaded in a transaction that is rolled back
        with database() as conn:
            configuration.check_against(conn, document, str(path), said)
    console.print(f"{path}: valid", highlight=False, markup=False)
    for note in said:
        console.print(Text(f"note: {visible(note)}", style="yellow"), soft_wrap=True)


@config_app.command("show")
def config_show(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """The configuration the database holds, as TOML that `config load` reads back (or JSON)."""
    from hrwsi import configuration
    with database() as conn:
        document = configuration.current(conn)
    if as_json:
        print_json(document)
    else:
        print(configuration.to_toml(document))


@config_app.command("keys")
def config_keys(markdown: bool = typer.Option(False, help="as the Markdown table in README.md"),
                as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Every key of the configuration file: its type, default and meaning (from the schema)."""
    from hrwsi import configuration
    if as_json:
        print_json(configuration.keys())
    elif markdown:
        print(configuration.keys_markdown())
    else:
        from rich.table import Table
        from rich.text import Text

        table = Table(title="configuration keys (hrwsi config load FILE)")
        for column in ("section", "key", "type", "default", "meaning"):
            table.add_column(column)
        for row in configuration.keys():
            table.add_row(*(Text(row[c]) for c in ("section", "key", "type", "default", "meaning")))
        console.print(table)
