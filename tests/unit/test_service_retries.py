"""A service's step that cannot reach the database (hrwsi.service): one retry at a time, and a log that
says so once, then every UNREACHABLE_LOG_EVERY_S, then says when the database is reached again."""

from __future__ import annotations

import asyncio
import logging
import subprocess

from hrwsi import service as service_module
from hrwsi.service import Service
from hrwsi.settings import Settings


class Flaky(Service):
    kind = "tester"

    def __init__(self, tmp_path):
        super().__init__(None, Settings(home=tmp_path, backstop_poll_s=0.05, heartbeat_s=1.0, lease_timeout_s=3.0))
        self.reachable = False
        self.runs = 0
        self.steps["work"] = self.work

    async def work(self) -> bool:
        self.runs += 1
        if not self.reachable:
            raise OSError("connection refused")
        return False


async def serve(flaky: Flaky, seconds: float, woken_every_s: float) -> None:
    """Its loop of steps for `seconds`, the step woken from outside (as the backstop poll and
    notifications do) every `woken_every_s`."""
    async def wake_up_calls():
        while True:
            await asyncio.sleep(woken_every_s)
            flaky.wake("work")

    caller = asyncio.create_task(wake_up_calls())
    deadline = asyncio.get_running_loop().time() + seconds
    try:
        while asyncio.get_running_loop().time() < deadline:
            try:
                await asyncio.wait_for(flaky._wake.wait(), 0.01)
            except TimeoutError:
                continue
            flaky._wake.clear()
            await flaky.run_dirty_steps()
    finally:
        caller.cancel()


async def test_retries_do_not_pile_up_and_the_outage_is_told_once_then_its_end(tmp_path, caplog, monkeypatch):
    """A timer per failure piled up: each outside wake-up added one, and after 30 s of an outage a
    step ran and logged 9 times per poll."""
    monkeypatch.setattr(service_module, "UNREACHABLE_LOG_EVERY_S", 0.5)
    caplog.set_level(logging.INFO, logger="hrwsi.service")
    flaky = Flaky(tmp_path)
    await serve(flaky, 1.2, woken_every_s=0.013)
    # Woken from outside about 90 times, and retried every 0.05 s (24 times): each outside wake-up
    # started one more chain of retries on the code before (500 runs here), one run each now.
    assert flaky.runs <= 150, flaky.runs
    assert len(flaky._due) <= 1
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "tester: step work could not reach the database (connection refused); retrying every 0.05 s"
    again = [line for line in lines if "still cannot reach the database" in line]
    assert 1 <= len(again) <= 3 and len(lines) == 1 + len(again), lines
    flaky.reachable = True
    await serve(flaky, 0.2, woken_every_s=0.05)
    assert caplog.records[-1].getMessage().startswith("tester: step work reaches the database again (after ")


class Failing(Flaky):
    def __init__(self, tmp_path, error: BaseException):
        super().__init__(tmp_path)
        self.error = error

    async def work(self) -> bool:
        raise self.error


async def test_a_serialization_failure_is_said_to_conflict_with_another_transaction_not_to_miss_the_database(
        tmp_path, caplog):
    # Found by exploratory testing: with default_transaction_isolation = serializable on the role, a
    # serialization failure was logged as "step dispatch could not reach the database (could not serialize ...)".
    import asyncpg

    caplog.set_level(logging.INFO, logger="hrwsi.service")
    failing = Failing(tmp_path, asyncpg.SerializationError("could not serialize access due to concurrent update"))
    await failing.run_step("work")
    assert [r.getMessage() for r in caplog.records] == [
        "tester: step work conflicted with another transaction (could not serialize access due to concurrent "
        "update); retrying every 0.05 s"]


async def test_a_timeout_without_a_message_says_no_answer_came_in_time(tmp_path, caplog):
    # Found by exploratory testing: asyncpg's timeout has no message, and the line read
    # "could not reach the database ()".
    caplog.set_level(logging.INFO, logger="hrwsi.service")
    await Failing(tmp_path, TimeoutError()).run_step("work")
    message = caplog.records[0].getMessage()
    assert message.startswith("tester: step work could not reach the database (no answer within the client's "
                              "timeout (TimeoutError: 60 s for a statement, 10 s for a new connection)); "), message


async def test_a_heartbeat_that_could_not_reach_the_database_tries_again_within_a_second_and_says_so_once(
        tmp_path, caplog):
    """At its interval (5 s), a 10 s outage cost every service its 15 s lease: the heartbeat that
    failed at the outage's start tried again after it had lapsed (found by exploratory testing)."""
    caplog.set_level(logging.INFO, logger="hrwsi.service")
    flaky = Flaky(tmp_path)
    tries: list[float] = []
    loop = asyncio.get_running_loop()

    async def beat():
        tries.append(loop.time())
        if len(tries) <= 3:
            raise OSError("connection refused")

    side = service_module.SideTask("heartbeat", beat, interval_s=5.0, retry_s=0.1)
    running = asyncio.create_task(flaky._every(side))
    await asyncio.sleep(0.6)
    flaky.request_stop()
    await running
    assert len(tries) == 4, "three failures 0.1 s apart, then the heartbeat that got through (then 5 s)"
    assert all(0.09 <= later - earlier < 0.5 for earlier, later in zip(tries, tries[1:]))
    said = [r.getMessage() for r in caplog.records]
    assert said == ["tester: heartbeat could not reach the database (connection refused); trying again every 0.1 s",
                    "tester: heartbeat reaches the database again"]


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


async def test_a_service_on_an_embedded_server_that_died_says_so_once_then_every_while_it_lasts(tmp_path, caplog,
                                                                                                  monkeypatch):
    """It said only "could not reach the database ([Errno 111] Connection refused)", naming neither the
    embedded server nor `hrwsi db start` (found by exploratory testing)."""
    monkeypatch.setattr(service_module, "UNREACHABLE_LOG_EVERY_S", 0.5)
    caplog.set_level(logging.INFO, logger="hrwsi.service")
    flaky = Flaky(tmp_path)  # no HRWSI_DATABASE_URL: the embedded server of tmp_path/pgdata
    pgdata = flaky.settings.pgdata
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("18\n")
    pid = dead_pid()
    (pgdata / "postmaster.pid").write_text(f"{pid}\n{pgdata}\n")
    await serve(flaky, 1.2, woken_every_s=0.013)
    said = [r for r in caplog.records if "is not running" in r.getMessage()]
    assert said[0].levelno == logging.ERROR
    assert said[0].getMessage() == (
        f"tester: the embedded PostgreSQL server in {pgdata.resolve()} is not running: it did not stop cleanly (pid "
        f"{pid}, which its postmaster.pid names, is gone: killed, or it crashed; its log: {pgdata.resolve() / 'log'}); "
        "`hrwsi db start` starts it, and this service reconnects by itself")
    assert 2 <= len(said) <= 3, [r.getMessage() for r in said]  # once, then every 0.5 s
    assert "(the database unreachable for " in said[1].getMessage()

    # Stopped cleanly: said so.
    caplog.clear()
    (pgdata / "postmaster.pid").unlink()
    flaky._embedded_watch.streak = None
    await serve(flaky, 0.7, woken_every_s=0.05)  # (said with the step's next line)
    assert [r.getMessage() for r in caplog.records if "is not running" in r.getMessage()][:1] == [
        f"tester: the embedded PostgreSQL server in {pgdata.resolve()} is not running: it was stopped (`hrwsi db stop`, "
        "or its host shut it down); `hrwsi db start` starts it, and this service reconnects by itself"]


async def test_a_service_on_another_server_says_nothing_of_the_embedded_one(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hrwsi.service")
    flaky = Flaky(tmp_path)
    flaky._embedded_pgdata = None  # (as with HRWSI_DATABASE_URL naming another server)
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "pgdata" / "PG_VERSION").write_text("18\n")
    await serve(flaky, 0.3, woken_every_s=0.05)
    assert not [r for r in caplog.records if "embedded" in r.getMessage()]


class Other(Flaky):
    kind = "other"


async def test_the_services_of_one_process_say_once_together_that_the_embedded_server_is_not_running(
        tmp_path, caplog, monkeypatch):
    """`hrwsi up` said "the embedded PostgreSQL server ... is not running" once per service, and each step
    its own "could not reach the database" beside it (found by exploratory testing)."""
    monkeypatch.setattr(service_module, "UNREACHABLE_LOG_EVERY_S", 30.0)
    caplog.set_level(logging.INFO, logger="hrwsi.service")
    services = [Flaky(tmp_path), Other(tmp_path)]
    pgdata = services[0].settings.pgdata
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("18\n")
    await asyncio.gather(*(serve(service, 0.5, woken_every_s=0.05) for service in services))
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"other, tester: the embedded PostgreSQL server in {pgdata.resolve()} is not running: it was stopped "
                    "(`hrwsi db stop`, or its host shut it down); `hrwsi db start` starts it, and these services "
                    "reconnect by themselves"], said
