"""hrwsi.notebook: driving hrwsi from code that already runs inside an event loop, as a notebook does."""

import asyncio

from hrwsi import notebook
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
