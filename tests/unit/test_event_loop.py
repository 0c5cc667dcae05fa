"""The services' event loop (hrwsi.event_loop): uvloop, except where a launcher starts local jobs."""

from __future__ import annotations

import asyncio
import sys

import pytest

from hrwsi import event_loop


@pytest.mark.parametrize(("kinds", "backend", "loop"), [
    (["launcher"], "local", "asyncio"),  # it starts the routines' processes itself
    (["harvester", "orchestrator", "launcher", "web"], "local", "asyncio"),  # `hrwsi up`, local jobs
    (["launcher"], "nomad", "uvloop"),
    (["launcher"], "dry-run", "uvloop"),
    (["orchestrator"], "local", "uvloop"),  # (HRWSI_BACKEND is the launcher's)
    (["harvester"], "local", "uvloop"),
    (["harvester", "orchestrator", "launcher"], "nomad", "uvloop"),
    (["web"], "local", "uvloop"),
])
def test_a_launcher_of_local_jobs_runs_on_asyncio_and_every_other_service_process_on_uvloop(kinds, backend, loop):
    assert event_loop.choose("auto", kinds, backend) == loop


def test_the_setting_overrides_the_choice():
    assert event_loop.choose("asyncio", ["orchestrator"], "nomad") == "asyncio"
    assert event_loop.choose("uvloop", ["launcher"], "local") == "uvloop"


def test_a_loop_the_installation_does_not_have_is_refused_when_asked_for_and_passed_over_otherwise(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as where uvloop has no wheel: its import fails
    with pytest.raises(event_loop.EventLoopError, match="HRWSI_EVENT_LOOP=uvloop, but uvloop is not installed"):
        event_loop.choose("uvloop", ["orchestrator"], "local")
    assert event_loop.choose("auto", ["orchestrator"], "local") == "asyncio"
    with pytest.raises(event_loop.EventLoopError, match="HRWSI_EVENT_LOOP='trio': choose auto, asyncio, uvloop"):
        event_loop.choose("trio", ["orchestrator"], "local")


@pytest.mark.parametrize(("loop", "module"), [("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_the_runner_runs_the_coroutine_to_its_end_on_the_loop_chosen(loop, module):
    async def which_loop() -> str:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()).__module__

    assert event_loop.runner(loop)(which_loop()).split(".")[0] == module
