"""hrwsi.notebook: driving hrwsi from code that already runs inside an event loop, as a notebook does."""

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from hrwsi import notebook
from hrwsi.app import SchemaNotReady
from hrwsi.database import DatabaseUnavailable
from hrwsi.migrations import newest_shipped
from hrwsi.settings import SettingsError
from tests.integration.conftest import insert_inputs, single_routine_configuration


async def test_run_inside_a_running_loop():
    async def answer():
        await asyncio.sleep(0)
        return 42

    assert notebook.run(answer()) == 42  # plain asyncio.run would raise: a loop is already running


async def test_run_services_from_a_notebook_cell(db, database_url, configure):
    configure(single_routine_configuration(["true"]))
    insert_inputs(db, 3)
    counts = notebook.run_services(database_url, 3.0, kinds=("orchestrator", "launcher"), backend="dry-run")
    assert counts == {"processed": 3}


async def test_run_services_refuses_a_url_that_is_not_a_postgresql_url_at_once():
    started = time.monotonic()
    with pytest.raises(SettingsError) as refused:
        notebook.run_services("host=/tmp dbname=hrwsi", 30.0)
    assert time.monotonic() - started < 1.0  # it waited for the database for ever
    assert str(refused.value) == ("url is not a PostgreSQL URL: it must read "
                                  "postgresql://user[:password]@host[:port]/database[?option=value...]")


@pytest.mark.parametrize("seconds", [float("nan"), -1.0, 0, float("inf")])
async def test_run_services_refuses_a_time_that_is_not_a_finite_number_of_seconds_above_zero(seconds):
    with pytest.raises(ValueError, match="must be a finite number of seconds > 0"):
        notebook.run_services("postgresql://postgres@127.0.0.1:47759/hrwsi", seconds)


async def test_run_services_gives_up_on_a_database_that_does_not_answer_within_its_seconds():
    started = time.monotonic()
    password = uuid.uuid4().hex  # (made at run time: the secrets scan refuses a literal one)
    with pytest.raises(DatabaseUnavailable) as unreachable:  # nothing listens on that port
        notebook.run_services(f"postgresql://postgres:{password}@127.0.0.1:47759/hrwsi", 2.0)
    assert time.monotonic() - started < 4.0  # it waited for ever, whatever the seconds said
    message = str(unreachable.value)
    assert "cannot reach the database user=postgres dbname=hrwsi host=127.0.0.1 port=47759 within 2 s" in message
    assert "Connect call failed" in message  # why, as the last attempt was told
    assert password not in message


async def test_run_services_on_a_database_without_the_schema_says_to_run_db_init(empty_database_url):
    started = time.monotonic()
    with pytest.raises(SchemaNotReady) as not_ready:
        notebook.run_services(empty_database_url, 30.0, kinds=("orchestrator", "launcher"), backend="dry-run")
    assert time.monotonic() - started < 5.0  # checked before any service starts, not after its 30 s
    assert "has no hrwsi schema: run `hrwsi db init`" in str(not_ready.value)  # (was asyncpg's UndefinedTableError)


async def test_run_services_on_a_database_that_lacks_a_migration_names_it(db, database_url):
    db.execute("DELETE FROM public.hrwsi_schema_migration WHERE version = (SELECT max(version) FROM public.hrwsi_schema_migration)")
    version, name = newest_shipped()
    with pytest.raises(SchemaNotReady, match=f"lacks 1 migration\\(s\\) of this installation \\({version:04d}_{name}\\): "
                                             "run `hrwsi db init`"):
        notebook.run_services(database_url, 30.0, kinds=("orchestrator",), backend="dry-run")


async def test_the_readme_example_runs_as_printed(db, database_url, configure, capsys):
    configure(single_routine_configuration(["true"]))
    insert_inputs(db, 3)
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    example = readme.split("### From a notebook", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    printed_url = 'url = "postgresql://hrwsi@db.example.org/hrwsi"\n'
    assert printed_url in example
    exec(example.replace(printed_url, f"url = {database_url!r}\n"), {})
    assert capsys.readouterr().out == "{'processed': 3}\n0\n"
