"""A Nomad cluster that comes back with an empty state (rebuilt, or restored from nothing): its index
goes back near zero, its jobs are gone and their processes killed (issue 14). The backend must treat
the jobs it followed as lost (retried by the launcher) and follow the jobs submitted afterwards.

Emulator only: a real agent cannot be told to forget its state.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.contract.conftest import Progress, Target, follow, script_until_exists

pytestmark = pytest.mark.contract

# A liveness guard: a job of a second that is not over 10 s after Nomad came back is not followed.
SHORT_GUARD_S = 10.0


async def test_a_job_running_when_nomad_lost_its_state_ends_lost(nomad: Target):
    emulator = nomad.require_emulator("restart with a fresh state")
    backend = nomad.backend()
    spec = nomad.spec("before", script_until_exists(nomad.work / "never"))
    await backend.submit(spec)
    progress = Progress()
    following = asyncio.ensure_future(backend.wait(spec, spec.job_id, progress))
    await progress.reached("running")
    index_before = emulator.cluster.index
    await emulator.restart_with_fresh_state()
    assert emulator.cluster.index < index_before, "the index went backwards"
    outcome = await asyncio.wait_for(following, SHORT_GUARD_S)
    assert outcome.state == "lost", outcome.message  # retried as a new attempt, never counted as a failure
    # (found by exploratory testing: it said "purged or garbage-collected", sending the reader to the GC)
    assert "Nomad's state went back while it was followed (its index went backwards" in outcome.message, outcome.message


async def test_a_job_submitted_after_nomad_lost_its_state_is_followed_to_its_end(nomad: Target):
    emulator = nomad.require_emulator("restart with a fresh state")
    backend = nomad.backend()
    first = nomad.spec("first", "exit 0")
    await backend.submit(first)
    assert (await follow(backend, first)).state == "processed"  # the backend follows the stream: its index is high
    for i in range(3):  # Nomad's index moves on, far beyond where the fresh state starts
        warm = nomad.spec(f"warm-{i}", "exit 0")
        await backend.submit(warm)
        await follow(backend, warm)
    await emulator.restart_with_fresh_state()
    after = nomad.spec("after", "sleep 0.5; exit 0")
    await backend.submit(after)
    outcome = await asyncio.wait_for(backend.wait(after, after.job_id, Progress()), SHORT_GUARD_S)
    assert outcome.state == "processed", outcome.message
