"""The listener: what it listens to, as the service asks (quiet channels), on a real server."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from hrwsi.listener import Listener, Notification

CHANNELS = ("hrwsi_test_a", "hrwsi_test_b")


async def _notify(conn: asyncpg.Connection, channel: str, payload: str) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", channel, payload)


async def _heard_within(heard: list[Notification], payload: str, timeout_s: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if any(n.op == payload for n in heard):
            return True
        await asyncio.sleep(0.01)
    return False


async def _started(listener: Listener, connected: asyncio.Event) -> asyncio.Task:
    task = asyncio.create_task(listener.run())
    await asyncio.wait_for(connected.wait(), 10)
    return task


async def test_a_quiet_channel_is_not_delivered_and_is_from_the_moment_it_is_wanted_again(db, database_url):
    heard: list[Notification] = []
    connected = asyncio.Event()
    listener = Listener(database_url, CHANNELS, heard.append, connected.set, ping_interval_s=0.2)
    task = await _started(listener, connected)
    sender = await asyncpg.connect(database_url)
    try:
        await _notify(sender, "hrwsi_test_a", '{"op": "a1"}')
        assert await _heard_within(heard, "a1")

        listener.set_quiet({"hrwsi_test_a"})
        await listener.apply()
        await _notify(sender, "hrwsi_test_a", '{"op": "a2"}')
        await _notify(sender, "hrwsi_test_b", '{"op": "b2"}')  # sent after a2: once b2 is here, a2 would be
        assert await _heard_within(heard, "b2")
        await asyncio.sleep(0.5)  # (and the self-ping goes on beside it)
        assert not any(n.op == "a2" for n in heard)

        listener.set_quiet(())
        await listener.apply()
        await _notify(sender, "hrwsi_test_a", '{"op": "a3"}')  # right after: LISTEN has taken effect
        assert await _heard_within(heard, "a3")
        assert [n.op for n in heard if n.channel == "hrwsi_test_a"] == ["a1", "a3"]
    finally:
        listener.stop()
        await asyncio.wait_for(task, 10)
        await sender.close()


async def test_a_channel_quiet_before_the_connection_is_made_is_not_listened_to_on_it(db, database_url):
    heard: list[Notification] = []
    connected = asyncio.Event()
    listener = Listener(database_url, CHANNELS, heard.append, connected.set)
    listener.set_quiet({"hrwsi_test_a", "hrwsi_test_other"})  # (a channel it has not is no concern of it)
    assert listener.quiet == {"hrwsi_test_a"}
    task = await _started(listener, connected)
    sender = await asyncpg.connect(database_url)
    try:
        await _notify(sender, "hrwsi_test_a", '{"op": "a1"}')
        await _notify(sender, "hrwsi_test_b", '{"op": "b1"}')
        assert await _heard_within(heard, "b1")
        await asyncio.sleep(0.2)
        assert [n.op for n in heard] == ["b1"]
    finally:
        listener.stop()
        await asyncio.wait_for(task, 10)
        await sender.close()


async def test_a_listener_whose_server_does_not_answer_says_so_with_its_own_connection_timeout(caplog):
    # Found pausing the database server (SIGSTOP): each listener said "cannot connect to ... (no answer within the
    # client's timeout (TimeoutError: 60 s for a statement, 10 s for a new connection))", the pool's limits, while
    # its own connection gives up after ping_timeout_s. Here a server that accepts connections and never answers.
    import logging
    import socket

    caplog.set_level(logging.INFO, "hrwsi.listener")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        listener = Listener(f"postgresql://nobody@127.0.0.1:{port}/hrwsi", CHANNELS, lambda _n: None, lambda: None,
                            ping_timeout_s=0.5, application_name="hrwsi-launcher-listener")
        task = asyncio.create_task(listener.run())
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while not any("cannot connect" in r.getMessage() for r in caplog.records):
                assert asyncio.get_running_loop().time() < deadline, "not said within 10 s"
                await asyncio.sleep(0.05)
        finally:
            listener.stop()
            await asyncio.wait_for(task, 10)
    said = next(r.getMessage() for r in caplog.records if "cannot connect" in r.getMessage())
    assert said.startswith("launcher listener: cannot connect to ") and (
        "(no answer within 0.5 s, the listener's connection timeout: the server stopped, paused or overloaded?); "
        "retrying in ") in said, said


async def test_a_listener_says_whose_it_is_when_the_database_closes_its_connection(db, database_url, caplog):
    # Found by exploratory testing: `hrwsi up` wrote three identical lines "listener: the database
    # closed our connection; reconnecting", one per service, and none said whose.
    import logging

    caplog.set_level(logging.INFO, "hrwsi.listener")
    connected = asyncio.Event()
    listener = Listener(database_url, CHANNELS, lambda _n: None, connected.set, ping_interval_s=0.2,
                        application_name="hrwsi-orchestrator-listener")
    task = await _started(listener, connected)
    try:
        connected.clear()
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                   "WHERE application_name = 'hrwsi-orchestrator-listener'")
        await asyncio.wait_for(connected.wait(), 10)
    finally:
        listener.stop()
        await asyncio.wait_for(task, 10)
    messages = [r.getMessage() for r in caplog.records]
    assert "orchestrator listener: the database closed our connection; reconnecting" in messages, messages
    assert "orchestrator listener: reconnected; catching up on missed work" in messages, messages


async def test_a_listener_on_a_hot_standby_says_once_that_listen_is_refused_waits_between_tries_and_listens_once_promoted(
        standby, caplog):
    """A failover that left the URL on a standby: LISTEN is refused ("cannot execute LISTEN during recovery"), and the
    listener reconnected at once, a connection and a warning "LISTEN failed ...; reconnecting" every few milliseconds
    (found by review). It says so once, tries again after a growing pause, and is known to be refused (the dashboard's
    pages then poll); once the standby is promoted it listens."""
    caplog.set_level(logging.INFO, logger="hrwsi.listener")
    connected = asyncio.Event()
    listener = Listener(standby.url, CHANNELS, lambda _n: None, connected.set, ping_interval_s=0.2, backoff_max_s=0.5)
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.sleep(2)
        assert listener.listen_refused is not None and not listener.connected
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(said) == 1, said
        assert "the database refuses LISTEN (cannot execute LISTEN during recovery; a standby, in recovery?)" in said[0]
        await asyncio.to_thread(standby.promote)
        await asyncio.wait_for(connected.wait(), 10)
        assert listener.listen_refused is None and listener.connected
        assert "LISTEN is taken again (refused for " in caplog.text
    finally:
        listener.stop()
        await asyncio.wait_for(task, 10)


async def test_a_listener_whose_connection_goes_silent_as_it_changes_its_channels_says_so_once_and_ends_its_old_session(
        db, database_url, caplog):
    """The connection goes half-open (a proxy that stops forwarding, neither end told) and the service makes a
    channel quiet before the listener's own NOTIFY finds it: the UNLISTEN goes unanswered. It said "LISTEN or UNLISTEN
    failed (); reconnecting" then "the database closed our connection; reconnecting", which it had closed itself, and
    left its old session on the server, idle until the server's TCP keepalive gave up (2 hours by default)."""
    from tests.integration.database_door import DatabaseDoor

    caplog.set_level(logging.INFO, "hrwsi.listener")
    door = DatabaseDoor(database_url)
    connected = asyncio.Event()
    listener = Listener(door.url, CHANNELS, lambda _n: None, connected.set, ping_interval_s=60, ping_timeout_s=1.0,
                        application_name="hrwsi-harvester-listener")
    try:
        task = await _started(listener, connected)
        old = listener._conn.get_server_pid()
        connected.clear()
        door.freeze()
        listener.set_quiet([CHANNELS[0]])
        await listener.apply()
        await asyncio.wait_for(connected.wait(), 10)
        assert await asyncio.wait_for(_session_gone(database_url, old), 10)
        listener.stop()
        await asyncio.wait_for(task, 10)
    finally:
        listener.stop()
        door.close()
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert messages == ["harvester listener: no answer within 1.0 s to the LISTEN or UNLISTEN it sent as the channels "
                        "its steps wait for changed: its connection went silent (half-open?); reconnecting, then ending "
                        "this process's pooled connections as silent"], messages


async def _session_gone(url: str, pid: int) -> bool:
    conn = await asyncpg.connect(url)
    try:
        while await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
            await asyncio.sleep(0.05)
        return True
    finally:
        await conn.close()
