"""Every failure of a command as one sentence that says what to do, and its exit code.

Exit codes: 1 the request was refused or found nothing (an unknown task, a refused transition, a
constraint); 2 the environment is not ready (no database, no schema, a bad setting, a bad file);
3 something nobody foresaw (a bug: `--debug` shows the traceback).
"""

from __future__ import annotations

import asyncpg
import psycopg
import psycopg.errors
import psycopg.sql

from hrwsi.database import ConnectionsFull, DatabaseUnavailable, redact
from hrwsi.terminal import bounded, one_sentence, quoted

_NO_SCHEMA = (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName, psycopg.errors.UndefinedFunction,
              psycopg.errors.UndefinedColumn, asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError,
              asyncpg.UndefinedFunctionError, asyncpg.UndefinedColumnError)
_REFUSED = (psycopg.errors.IntegrityError, psycopg.errors.RaiseException, psycopg.errors.NoDataFound,
            asyncpg.IntegrityConstraintViolationError, asyncpg.RaiseError, asyncpg.NoDataFoundError)
_NOT_ALLOWED = (psycopg.errors.InsufficientPrivilege, asyncpg.InsufficientPrivilegeError)
_UNREACHABLE = (psycopg.OperationalError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                ConnectionError, TimeoutError)

# A statement the server cancelled (statement_timeout, lock_timeout): it was reached.
_TIMED_OUT = (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable, asyncpg.QueryCanceledError,
              asyncpg.LockNotAvailableError)
_READ_ONLY = (psycopg.errors.ReadOnlySqlTransaction, asyncpg.ReadOnlySQLTransactionError)


class CliError(Exception):
    """A failure the user can act on: the message says what is wrong and what to do."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _pending_migrations(url: str | None) -> list[str]:
    """The migrations this installation ships that the database at `url` has not applied, when that can
    be told (the database reached, its migrations recorded); [] otherwise."""
    if not url:
        return []
    from hrwsi import migrations

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return migrations.pending(conn) if migrations.applied_versions(conn) else []
    except Exception:  # (a second failure says no more than the first: the sentence without the names)
        return []


def _session_setting(url: str | None, setting: str) -> str:
    """" (30ms for role x)": the setting's value where the failure came from, when it can be read; "" otherwise."""
    if not url:
        return ""
    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            # A few tries: this read runs under the same setting, and a timeout of a millisecond or two
            # cancels even it when the machine is busy (seen with the suite in two processes on 2 cores).
            for tries_left in reversed(range(5)):
                try:
                    role, value = conn.execute("SELECT current_user, current_setting(%s)", (setting,)).fetchone()
                    break
                except psycopg.errors.QueryCanceled:
                    if not tries_left:
                        raise
    except Exception:  # (a second failure says no more than the first: the sentence without the value)
        return ""
    return f" ({value} for role {role})"


def _read_only_why(url: str | None) -> str:
    """Why this role's transactions are read-only, and what to do, as far as it can be told."""
    fallback = ("default_transaction_read_only is on for this role or database, or the server is a standby: "
                "connect to the primary with a role that may write (ALTER ROLE ... SET default_transaction_read_only "
                "= off)")
    if not url:
        return fallback
    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            role, read_only, standby = conn.execute(
                "SELECT current_user, current_setting('default_transaction_read_only'), pg_is_in_recovery()").fetchone()
    except Exception:  # (a second failure says no more than the first)
        return fallback
    quoted = sql_name(role)
    if standby:
        return "the server is a standby (in recovery): point HRWSI_DATABASE_URL at the primary"
    if read_only == "on":
        return (f"default_transaction_read_only is on for role {role} (or its database): "
                f"ALTER ROLE {quoted} SET default_transaction_read_only = off, or connect as a role that may write")
    return fallback


def sql_name(name: str) -> str:
    """A role's name as SQL takes it in a command to copy: as it is when plain, quoted otherwise."""
    import re

    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else psycopg.sql.Identifier(name).as_string(None)


def _where(url: str | None) -> str:
    return f" ({redact(url)})" if url else ""


def _database_message(error: Exception) -> tuple[str, str | None, str | None]:
    """(primary message, constraint name, hint) of a psycopg or asyncpg error."""
    diag = getattr(error, "diag", None)
    if diag is not None:
        return diag.message_primary or str(error), diag.constraint_name, diag.message_hint
    return (getattr(error, "message", None) or str(error), getattr(error, "constraint_name", None),
            getattr(error, "hint", None))


def _cause(error: BaseException) -> str:
    """What a failure of the database's connection says, in one line: the server's own message when it sent one
    (`terminating connection due to administrator command`), without the CONTEXT lines of what ran then (the
    statement and the functions it was in: the line carried them whole, the advice lost at its end; found by
    review); else the client's text, its layout's line breaks and indents as one space each."""
    diag = getattr(error, "diag", None)
    primary = diag.message_primary if diag is not None else None
    return one_sentence(primary) if primary else _one_line(str(error).split("\nCONTEXT:", 1)[0])


def _is_undecodable_argument(error: BaseException) -> bool:
    """Text Python decoded from bytes that are not UTF-8 (an argument typed in Latin-1, stray bytes in a
    name): it holds lone surrogates, which no UTF-8 encoder takes, so the first query sending it failed."""
    return isinstance(error, UnicodeEncodeError) and isinstance(error.object, str) and "surrogate" in error.reason


def _undecodable_argument(error: UnicodeEncodeError) -> str:
    """The sentence for such text: the text with its bytes shown (\\xff), not the codec's message, which
    named a character ('\\udcff') the user never typed and no argument (found by exploratory testing). Quoted as
    every refusal quotes a name (hrwsi.terminal.quoted, which shows such a byte so)."""
    return (f"{quoted(error.object)} is not valid UTF-8 (an argument written in another encoding?): the database holds "
            "names as UTF-8 text; give it in UTF-8")


def _os_error(error: OSError) -> str:
    """A file's failure, its name cut when long (hrwsi.terminal.bounded): a name thousands of characters long made
    an error line as long (found by review)."""
    name = bounded(str(error.filename), str) if error.filename else None
    if isinstance(error, FileNotFoundError):
        return f"no such file or directory: {name or error}"
    if isinstance(error, IsADirectoryError):
        return f"{name} is a directory: give a file"
    if isinstance(error, PermissionError):
        return f"permission denied: {name or error}"
    return f"{error.strerror or error}: {name or ''}".rstrip(": ")


def explain(error: BaseException, url: str | None = None) -> tuple[str, int]:  # noqa: C901 - one branch per kind
    """The sentence for `error` and the exit code."""
    from hrwsi.configuration import ConfigurationError

    if isinstance(error, CliError):
        return str(error), error.exit_code
    if isinstance(error, ConfigurationError):
        return str(error), 2
    if isinstance(error, DatabaseUnavailable):
        from hrwsi.database_trouble import UnusablePooler

        said = "hrwsi db start" in str(error) or isinstance(error, (UnusablePooler, ConnectionsFull))
        advice = "" if said else \
            "; check that the server runs and that HRWSI_DATABASE_URL names it (or unset it for the embedded server)"
        return _one_line(error) + advice, 2
    if isinstance(error, _NO_SCHEMA):
        primary, _, _ = _database_message(error)
        missing = _pending_migrations(url)
        if missing:  # (the services named them; the reading commands said only "or lacks a migration")
            return (f"the database{_where(url)} lacks {len(missing)} migration(s) of this installation "
                    f"({', '.join(missing)}; {one_sentence(primary)}): run `hrwsi db init` as the schema's owner"), 2
        return (f"the database{_where(url)} has no hrwsi schema, or lacks a migration ({one_sentence(primary)}): "
                "run `hrwsi db init`"), 2
    if isinstance(error, _NOT_ALLOWED):
        primary, _, _ = _database_message(error)
        return (f"not allowed: {one_sentence(primary)}; run it as a role that may (the schema owner, or one "
                "granted hrwsi_service or hrwsi_data_engineer: README.md, Roles)"), 1
    if isinstance(error, _REFUSED):
        primary, constraint, hint = _database_message(error)
        text = f"the database refused it: {one_sentence(primary)}"
        if constraint and constraint not in primary:
            text += f" (constraint {constraint})"
        if hint:
            text += f"; {one_sentence(hint)}"
        return text, 1
    if isinstance(error, _TIMED_OUT):  # (an OperationalError too: it was said "cannot reach the database")
        primary, _, _ = _database_message(error)
        setting = "lock_timeout" if "lock timeout" in primary else "statement_timeout"
        return (f"the database{_where(url)} cancelled a statement: {one_sentence(primary)}; it ran past {setting}"
                f"{_session_setting(url, setting)}: raise it for this role (ALTER ROLE ... SET {setting} = ...) "
                "or for this database, or run it when the server is less busy"), 2
    if isinstance(error, _READ_ONLY):
        primary, _, _ = _database_message(error)
        return (f"the database{_where(url)} refused a write: {one_sentence(primary)}; {_read_only_why(url)}"), 2
    if isinstance(error, _UNREACHABLE):
        return (f"cannot reach the database{_where(url)}: {_cause(error)}; check HRWSI_DATABASE_URL, or run "
                "`hrwsi db start` for the embedded server"), 2
    if isinstance(error, (psycopg.Error, asyncpg.PostgresError)):
        primary, _, hint = _database_message(error)
        return f"database error: {one_sentence(primary)}" + (f"; {one_sentence(hint)}" if hint else ""), 1
    if isinstance(error, OSError):
        return _os_error(error), 2
    if _is_undecodable_argument(error):
        return _undecodable_argument(error), 2
    if isinstance(error, ValueError):
        return _one_line(error), 2
    if type(error).__name__ == "EndpointsUnavailable":  # (hrwsi.instance_server: a setting's, said whole)
        return _one_line(error), 2
    if type(error).__name__ == "NomadError":  # (hrwsi.backends.nomad, imported only by the commands that use it)
        return _one_line(error), 1
    return (f"unexpected error ({type(error).__name__}: {_one_line(error)}); run again with --debug to see the "
            "traceback, and report it"), 3
