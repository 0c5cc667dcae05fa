import asyncio
import time

from hrwsi.backoff import Backoff


def test_delays_grow_exponentially_up_to_the_cap_with_full_jitter():
    backoff = Backoff(first_s=0.1, cap_s=2.0)
    ceilings = [min(2.0, 0.1 * 2**n) for n in range(12)]
    for ceiling in ceilings:
        delays = [Backoff(first_s=0.1, cap_s=2.0, failures=backoff.failures).next() for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        # full jitter: the draws spread over the whole range, not just near the ceiling
        assert min(delays) < ceiling / 4 and max(delays) > ceiling * 3 / 4
        backoff.next()


def test_reset_starts_again_from_the_first_delay():
    backoff = Backoff(first_s=0.1, cap_s=60.0)
    for _ in range(10):
        backoff.next()
    backoff.reset()
    assert all(backoff.next() <= 0.1 for _ in range(1)) and backoff.failures == 1


def test_a_huge_failure_count_stays_at_the_cap():
    assert Backoff(first_s=0.1, cap_s=5.0, failures=10_000).next() <= 5.0


async def test_sleep_returns_early_when_stopping():
    stopping = asyncio.Event()
    stopping.set()
    started = time.monotonic()
    await Backoff.sleep(30.0, stopping)
    assert time.monotonic() - started < 1.0
