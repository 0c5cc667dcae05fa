"""hrwsi.backends.nomad.client: which Nomad errors are worth retrying, read after a forwarded RPC's prefix."""

from __future__ import annotations

import pytest

from hrwsi.backends.nomad.client import NomadResponse, error_text, is_transient


def answer(status: int, text: str) -> NomadResponse:
    return NomadResponse(status, {}, text)


def test_the_rpc_error_prefix_of_a_forwarded_call_is_stripped():
    # helper/pool/pool.go: behind a client agent or a follower server, "rpc error: <the error>".
    assert error_text("rpc error: Enforcing job modify index 0: job already exists\n") == \
        "Enforcing job modify index 0: job already exists"
    assert error_text("rpc error: rpc error: No cluster leader") == "No cluster leader"
    assert error_text("1 error occurred:\n\t* Missing job task groups") == "1 error occurred:\n\t* Missing job task groups"


@pytest.mark.parametrize("method, status, text, transient", [
    ("post", 500, "rpc error: 1 error occurred:\n\t* minimum MemoryMB value is 10; got 1", False),
    ("post", 500, "1 error occurred:\n\t* minimum MemoryMB value is 10; got 1", False),
    ("post", 500, "rpc error: Enforcing job modify index 0: job already exists", False),
    ("post", 500, "rpc error: No cluster leader", True),
    ("post", 500, "rpc error: EOF", True),
    ("post", 500, "rpc error: lead thread didn't get connection", True),
    ("post", 500, "rpc error: shutdown", True),
    ("delete", 500, "rpc error: dial tcp 10.0.0.1:4647: connect: connection refused", True),
    ("get", 500, "alloc lookup failed: index error: UUID must be 36 characters", True),
    ("post", 429, "Your IP is issuing too many concurrent connections", True),
    ("post", 503, "", True),
    ("post", 400, "Job must be specified", False),
    ("get", 403, "Permission denied", False),
])
def test_only_transient_errors_are_retried(method, status, text, transient):
    assert is_transient(method, answer(status, text)) is transient
