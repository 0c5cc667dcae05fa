"""What every command group shares: the root `app`, the consoles, settings and the database URL,
JSON output, and the one-line error every failure becomes (`hrwsi.cli.errors`)."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import typer
from rich.console import Console

import hrwsi
from hrwsi import service_logging
from hrwsi.backends.ascii_decimal import ascii_number, is_ascii_decimal, signed_ascii_decimal
from hrwsi.cli.errors import CliError, explain
from hrwsi.database import connect, resolve_url
from hrwsi.harvest.schedules import MAX_WINDOW_DAYS
from hrwsi.migrations import build_version
from hrwsi.settings import Settings
from hrwsi.terminal import SHOWN_MAX, bounded, json_unseen_escaped, quoted, shown

console = Console()
error_console = Console(stderr=True, highlight=False)
logger = logging.getLogger("hrwsi")

JSON_HELP = "print JSON instead of tables"
ID_MAX = 2**63 - 1  # the largest id (bigint) a table holds; a larger one is refused before any query
# The most days a command's --days reaches back: 100 years, as a condition's windows (archives go back to 1972).
# `hrwsi groups` took up to 36,600 and `hrwsi timeliness` 36,500 (found by review): one limit, here (days_option).
DAYS_MAX = MAX_WINDOW_DAYS


@dataclass
class CliState:
    debug: bool = bool(os.environ.get("HRWSI_DEBUG"))
    url: str | None = None  # the database URL in use, for error messages


state = CliState()

__all__ = ["CliError", "app", "console", "database", "error_console", "interrupted", "print_json", "settings", "url"]


class HrwsiTyper(typer.Typer):
    """The root command: every exception becomes one line saying what to do (`--debug` adds the
    traceback), instead of a traceback."""

    def __call__(self, *args, **kwargs):
        from hrwsi.terminal import print_anywhere

        print_anywhere(sys.stdout, sys.stderr)
        command = typer.main.get_command(self)
        _tidy_help(command)
        try:
            # Not standalone: Typer's own usage errors (an unknown option, a missing argument) come here, to be
            # said in one line; standalone, Typer printed them as a box of usage, hint and message.
            ended = command.main(*args, **{**kwargs, "standalone_mode": False})
        except _CLICK_EXCEPTION as error:
            if type(error).__name__ == "NoArgsIsHelpError":  # (`hrwsi db` alone: its help is printed already)
                # Exit 0, as `--help` (the same help, on stdout), kubectl's and docker's: nothing was refused. Click
                # said 2, a usage error, which read as "the environment is not ready" (found by review).
                sys.exit(0)
            words = kwargs.get("args", sys.argv[1:])
            said = usage_error_line(error, _command_path(command, words), words)
            error_console.print(f"[red]error:[/red] {_escape(said)}", soft_wrap=True)
            sys.exit(error.exit_code)
        except typer.Abort:  # (a prompt's input ended)
            error_console.print("[red]error:[/red] aborted", soft_wrap=True)
            sys.exit(1)
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception as error:  # noqa: BLE001 - the one place every failure is turned into a sentence
            message, exit_code = explain(error, state.url)
            if state.debug:
                traceback.print_exception(error, file=sys.stderr)
            for line in message.splitlines() or [message]:
                error_console.print(f"[red]error:[/red] {_escape(line)}", soft_wrap=True)
            sys.exit(exit_code)
        # Not standalone, a command's `typer.Exit(code)` (and --help's, --version's) comes back as its code; a command
        # returns None.
        sys.exit(ended if isinstance(ended, int) and not isinstance(ended, bool) else 0)


# The base of Typer's (Click's) own usage errors, wherever this Typer keeps Click (its own copy since 0.2x).
_CLICK_EXCEPTION = next(base for base in typer.BadParameter.__mro__ if base.__name__ == "ClickException")


def usage_error_line(error: Exception, command_path: str = "hrwsi", words: Sequence[str] = ()) -> str:
    """A usage error (an unknown option or command, a missing argument, a value an option's parser refused) as the
    CLI's other errors are: one line, and the help that says what the command takes. Typer printed a box of four
    lines: the usage, a hint, and the message framed (found walking README through). `command_path` is said when the
    error knows no command (an option missing its value); `words` are the command line's."""
    context = getattr(error, "ctx", None)
    command = context.command_path if context is not None else command_path
    message = _unknown_command_quoted(" ".join(error.format_message().split()), words)
    message = bounded(message.removesuffix("."), str, limit=2 * SHOWN_MAX)
    return f"{message} See `{command} --help`" if message.endswith("?") else f"{message}; see `{command} --help`"


def _unknown_command_quoted(message: str, words: Sequence[str]) -> str:
    """"No such command 'x'" with the word quoted as every refusal quotes a name (hrwsi.terminal.quoted): Typer wrote
    it with repr(), and a byte that is not UTF-8 read `\\udcff` there while "No such option" showed the same byte as
    `\\xff` (found by review); a quote in it read "it's" where the other refusals say 'it''s'."""
    for word in words:
        typer_said = f"No such command {word!r}"
        if message.startswith(typer_said):
            return f"No such command {quoted(word)}{message[len(typer_said):]}"
    return message


def _command_path(command, args: list[str]) -> str:
    """`hrwsi db init` of `args` (the command line's words): the sub-commands they name, up to the first option."""
    path = ["hrwsi"]
    for word in args:
        command = getattr(command, "commands", {}).get(word)
        if command is None:
            break
        path.append(word)
    return " ".join(path)


# What an option's value is, as its help shows it (`--limit N`, `--routine ROUTINE`), where its name in capitals
# does not say it. Typer showed the value's type, `<str>`, `<int range>`, `<list[str]>` (found by review); an option
# not named here shows its name in capitals, as argparse and Click do.
_METAVARS = {"--limit": "N", "--failures": "N", "--inputs": "N", "--attempt": "N", "--id": "ID", "--before": "ID",
             "--cancel": "ID", "--hold": "ID", "--release": "ID", "--fresh-s": "SECONDS", "--timeout": "SECONDS",
             "--from": "TIME", "--to": "TIME", "--since": "TIME", "--home": "DIR", "--plot": "FILE"}


def _tidy_help(command) -> None:
    """The help of `command` and its sub-commands, as read. Each flag says `--json`, not `--json <bool>`: Typer (0.2x)
    shows a type beside every option, a flag's (`--help`'s too) as `<bool>`, which reads as if it took a value (found
    walking README through); an empty metavar shows none (Typer's older versions show none for a flag anyway). And a
    command's help (its docstring) is shown in paragraphs, not broken where the source's lines end: Typer's rich help
    kept those line breaks, and `hrwsi --help` read "tasks that cannot be planned," then "services and their
    heartbeats" on a line of its own."""
    for parameter in [*command.params, command.get_help_option(command.context_class(command))]:
        if getattr(parameter, "is_flag", False) and parameter.metavar is None:
            parameter.metavar = ""
        elif parameter is not None and parameter.metavar is None and parameter.param_type_name == "option":
            parameter.metavar = _METAVARS.get(parameter.opts[0]) or parameter.opts[0].lstrip("-").replace("-", "_").upper()
        elif parameter is not None and parameter.param_type_name == "argument":
            _argument_named(parameter)
    if command.help:
        command.help = _in_paragraphs(command.help)
    for sub in getattr(command, "commands", {}).values():
        _tidy_help(sub)


def _argument_named(argument) -> None:
    """An argument shown as the commands' docstrings name it, in capitals (`hrwsi health [OPTIONS] SERVICE`, "Missing
    argument 'TASK_ID'"), with no type beside it: Typer showed `{service}` in the usage line and `<str>` in the
    Arguments panel (found by review)."""
    argument.metavar = argument.metavar or argument.name.upper()
    argument.display_type_rich = lambda ctx: None  # (an instance's own: Typer's method shows the type)
    shown = argument.metavar + ("..." if argument.nargs != 1 else "")
    argument._usage_display_name = lambda: shown if argument.required else f"[{shown}]"


def _in_paragraphs(text: str) -> str:
    """`text` (a docstring) with each paragraph on one line; paragraphs apart as they were."""
    import inspect

    return "\n\n".join(" ".join(paragraph.split()) for paragraph in inspect.cleandoc(text).split("\n\n"))


def interrupted(error: Exception, done: str) -> CliError:
    """A command that acts on many things one by one, stopped part-way by `error` (the database gone, say): the
    error's sentence, then `done` (how many it did, and whether running it again is safe). It printed each one it
    did, then the error alone, and who ran it could not tell how far it got (found by review)."""
    message, exit_code = explain(error, state.url)
    return CliError(f"{message}; {done}", exit_code)


def _escape(text: str) -> str:
    """An error's text for the terminal: its markup shown, not interpreted; its control characters
    shown as escapes, not obeyed (a message may quote what a user inserted)."""
    from rich.markup import escape

    from hrwsi.terminal import visible

    return escape(visible(text))


app = HrwsiTyper(help="hrwsi: a PostgreSQL LISTEN/NOTIFY reactive engine for Earth-observation production.",
                 no_args_is_help=True, pretty_exceptions_enable=False)


def _whole_number(least: int | None, most: int | None):
    """The parser of a whole-number option or argument: ASCII digits, perhaps after a minus, within [least, most].
    Typer read one as pydantic does, with int(): `--limit 1_0` was 10 and `--limit ' 7 '` 7 (found by review)."""
    def parse(value: object) -> int:
        if isinstance(value, int):  # (the default)
            return value
        text = str(value)
        digits = text.removeprefix("-")
        if not is_ascii_decimal(digits):
            raise typer.BadParameter(f"{shown(text)} is not a whole number (ASCII digits 0-9)")
        number = signed_ascii_decimal(text, max_digits=len(str(ID_MAX)))
        if least is not None and (number is None and text.startswith("-") or number is not None and number < least):
            raise typer.BadParameter(f"{shown(text)}: must be at least {least}")
        if number is None or most is not None and number > most:
            raise typer.BadParameter(f"{shown(text)}: must be at most {most if most is not None else ID_MAX}")
        return number
    return parse


def _number(least_above: float | None):
    """The parser of a number option (seconds): ASCII decimal notation, finite, above `least_above`. Typer read
    one with float(): `--timeout inf`, `nan` and `1_0` were taken (found by review)."""
    def parse(value: object) -> float:
        if isinstance(value, float):  # (the default)
            return value
        number = ascii_number(str(value))
        if number is None:
            raise typer.BadParameter(f"{shown(str(value))} is not a finite number (ASCII decimal notation: 30, 0.5, 1e3)")
        if least_above is not None and not number > least_above:
            raise typer.BadParameter(f"{shown(str(value))}: must be more than {least_above:g}")
        return number
    return parse


def whole_option(default, *param_decls: str, min: int | None = None, max: int | None = None, **kwargs):  # noqa: A002
    """typer.Option for a whole number, read by `_whole_number` (min and max as typer.Option's: its help says them)."""
    return typer.Option(default, *param_decls, min=min, max=max, parser=_whole_number(min, max), **kwargs)


def whole_argument(default, *param_decls: str, min: int | None = None, max: int | None = None, **kwargs):  # noqa: A002
    """typer.Argument for a whole number, read by `_whole_number`."""
    return typer.Argument(default, *param_decls, min=min, max=max, parser=_whole_number(min, max), **kwargs)


def id_option(default, *param_decls: str, **kwargs):
    """typer.Option for an id (a task's, a campaign's, a plan's): a whole number from 1 to ID_MAX, read by
    `_whole_number`, which refuses one out of range in one line (`'0': must be at least 1`). Its help shows `ID`
    alone: given min and max, Typer showed the range beside it, `[1<=x<=9223372036854775807]`, which says nothing
    to a user looking for a task (found by review)."""
    return typer.Option(default, *param_decls, parser=_whole_number(1, ID_MAX), **kwargs)


def days_option(default: int, **kwargs):
    """typer.Option `--days`: a whole number of days, 1 to DAYS_MAX."""
    return whole_option(default, "--days", min=1, max=DAYS_MAX, **kwargs)


def seconds_option(default: float, *param_decls: str, **kwargs):
    """typer.Option for a number of seconds (> 0), read by `_number`."""
    return typer.Option(default, *param_decls, parser=_number(0.0), **kwargs)


def filter_given(options: dict[str, str | None]) -> None:
    """A filter given empty (or blank) is refused: `hrwsi tasks --tile ''` listed every task, as if no
    --tile had been given, and a script whose variable was unset read all of them as that tile's (found by
    review). An empty name matches no routine, lane, tile or condition; leaving the option out means all."""
    for option, value in options.items():
        if value is not None and not value.strip():
            raise CliError(f"{option} {quoted(value)} is empty: give a value, or leave {option} out for all", 2)


def version_line() -> str:
    """This installation's version and the last migration its schema has, as `hrwsi --version`
    prints them: what `hrwsi status`, the dashboard and a refused upgrade name."""
    from hrwsi.migrations import newest_shipped

    version, name = newest_shipped()
    return f"hrwsi {hrwsi.__version__} (schema {version:04d}_{name})"


def _print_version(asked: bool) -> None:
    if asked:
        print(version_line())
        raise typer.Exit()


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="show the traceback of an error"),
          version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                       help="print hrwsi's version and its schema's, and exit")) -> None:
    if debug:
        state.debug = True


def setup_logging(current: Settings, kinds: list[str], verbose: bool = False) -> None:
    """The process's log (hrwsi.service_logging): HRWSI_LOG_LEVEL (DEBUG with --verbose), HRWSI_LOG_FORMAT;
    a JSON record names the services the process runs and their version."""
    service_logging.configure("DEBUG" if verbose else current.log_level, current.log_format,
                              {"service": ",".join(kinds), "hrwsi_version": build_version()})


def settings() -> Settings:
    """Settings from the environment; a variable that is not what it should be is a one-line error."""
    try:
        return Settings.from_env()
    except ValueError as error:
        raise CliError(f"{error}: fix or unset that environment variable (README.md, Settings)", 2) from None


def url(start: bool = True) -> str:
    """The database URL; with `start`, the embedded server is started when no URL is set."""
    state.url = resolve_url(settings(), start=start)
    return state.url


@contextmanager
def database(start: bool = False, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """A connection for one command (reading commands do not start the embedded server)."""
    with connect(url(start=start), autocommit=autocommit) as conn:
        yield conn


def _json_default(value):
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def to_json(data, ascii_only: bool = False) -> str:
    return json.dumps(data, default=_json_default, indent=2, ensure_ascii=ascii_only)


def print_json(data) -> None:
    """JSON on stdout, plain (no markup, no colour): for scripts and `jq`. Its characters as they are,
    or, when stdout's encoding lacks one (LC_ALL=C), every non-ASCII one as JSON's own escape
    (`\\u2026`), which a JSON reader reads back as the same text: a replaced character would change
    the data, and a `\\xe9` is no JSON."""
    text = json_unseen_escaped(to_json(data))
    try:
        text.encode(getattr(sys.stdout, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        text = to_json(data, ascii_only=True)
    print(text)
