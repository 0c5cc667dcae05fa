"""Whether a service instance's process is provably dead (hrwsi.process_identity): never without proof."""

import os
import signal
import subprocess
import sys

import pytest

from hrwsi import process_identity
from hrwsi.process_identity import verdict

pytestmark = pytest.mark.skipif(process_identity.identity() is None, reason="this platform's /proc cannot tell")


def identity_of(pid: int) -> str:
    """What the process `pid` would have recorded with its lease (it shares this process's namespaces)."""
    return f"{process_identity._place()} {process_identity._stat(pid)[1]}"


@pytest.fixture
def sleeper():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child
    child.kill()
    child.wait()


def test_this_process_is_alive_by_its_own_identity():
    assert verdict(os.getpid(), process_identity.identity()) == process_identity.Verdict(
        False, f"its process {os.getpid()} is alive")


def test_a_live_process_of_this_host_is_never_taken_for_dead(sleeper):
    assert not verdict(sleeper.pid, identity_of(sleeper.pid)).dead


def test_a_pid_reused_by_another_process_is_not_taken_as_alive(sleeper):
    place, _, started = identity_of(sleeper.pid).rpartition(" ")
    judged = verdict(sleeper.pid, f"{place} {int(started) - 100}")  # (what had the pid before it started earlier)
    assert judged.dead and "another process" in judged.why


def test_a_pid_no_process_has_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    recorded = identity_of(child.pid)
    child.wait()
    assert verdict(child.pid, recorded).dead


def test_a_killed_process_not_yet_reaped_is_dead(sleeper):
    recorded = identity_of(sleeper.pid)
    os.kill(sleeper.pid, signal.SIGKILL)
    os.waitid(os.P_PID, sleeper.pid, os.WEXITED | os.WNOWAIT)  # (exited, left a zombie: not reaped)
    judged = verdict(sleeper.pid, recorded)
    assert judged.dead and "zombie" in judged.why


def test_a_process_of_another_pid_namespace_or_kernel_is_never_judged():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    boot, pid_ns, time_ns, started = identity_of(child.pid).split(" ")
    child.wait()
    for recorded in (f"{boot} pid:[1] {time_ns} {started}", f"another-boot {pid_ns} {time_ns} {started}",
                     f"{boot} {pid_ns} time:[1] {started}"):
        assert verdict(child.pid, recorded) == process_identity.Verdict(
            False, "it runs in another kernel or pid namespace (a container?)"), recorded


def test_a_process_recorded_without_an_identity_is_never_judged():
    assert not verdict(2 ** 22 + 1, None).dead


def test_the_holder_of_a_port_is_this_process_when_it_listens_there_and_no_one_when_none_does():
    import socket

    from hrwsi.process_identity import port_holder
    from tests.integration.database_door import free_port  # (a port of the tests' range, 47700-47799)

    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        assert port_holder(port).startswith(f"pid {os.getpid()}: ")
    assert port_holder(port) is None
