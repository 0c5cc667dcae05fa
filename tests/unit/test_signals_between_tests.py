"""tests/conftest.py's check that a test leaves SIGINT as it found it (the autouse sigint_left_as_found)."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import signals_left_as_found


def test_a_test_that_leaves_sigint_ignored_fails_and_the_tests_after_it_find_it_as_it_was():
    # From Python's own handler: a test process that inherited SIGINT ignored (a runner that starts pytest as a
    # background job, most likely) would find ignoring it again no change at all (a fresh-clone suite failed so,
    # "DID NOT RAISE", its other tests passing)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        before = signal.getsignal(signal.SIGINT)
        with pytest.raises(pytest.fail.Exception, match=r"this test left SIGINT's handler .* -> <Handlers.SIG_IGN: 1>"):
            with signals_left_as_found():
                signal.signal(signal.SIGINT, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGINT) is before
    finally:
        signal.signal(signal.SIGINT, outer)


def test_a_test_that_leaves_sigint_blocked_fails_and_the_mask_is_put_back():
    with pytest.raises(pytest.fail.Exception, match="the signal mask"):
        with signals_left_as_found():
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())


def test_a_test_that_puts_sigint_back_passes():
    with signals_left_as_found():
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGINT, previous)
