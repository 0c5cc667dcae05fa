"""A step's statement that times out is named in the log and its batch shrinks (no livelock)."""

import asyncpg
import pytest

from hrwsi.service import AdaptiveBatch, StatementTimedOut, timed_statement


def test_an_adaptive_batch_halves_to_its_floor_and_grows_back_to_its_ceiling():
    batch = AdaptiveBatch(1000)
    assert [batch.shrink() for _ in range(12)][-1] == 1
    for _ in range(20):
        batch.succeeded()
    assert batch.size == 1000


async def test_a_cancelled_statement_becomes_a_named_timeout():
    with pytest.raises(StatementTimedOut, match="statement dispatch was cancelled after"):
        async with timed_statement("dispatch"):
            raise asyncpg.QueryCanceledError("canceling statement due to statement timeout")
