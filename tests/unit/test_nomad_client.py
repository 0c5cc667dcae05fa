"""hrwsi.backends.nomad.client: which Nomad errors are worth retrying, read after a forwarded RPC's prefix."""

from __future__ import annotations

import json
import re
import socket
import threading

import pytest
import requests

from hrwsi.backends.nomad.client import (
    NomadClient,
    NomadError,
    NomadResponse,
    error_text,
    is_transient,
    may_have_arrived,
    may_have_taken_effect,
)
from hrwsi.backends.nomad.config import NomadConfig


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
    ("post", 500, "rpc error: leadership lost while committing log", True),
    ("post", 500, "node is not the leader", True),
    ("post", 500, "timed out enqueuing operation", True),
    ("delete", 500, "raft is already shutdown", True),
    ("get", 403, "Permission denied", False),
])
def test_only_transient_errors_are_retried(method, status, text, transient):
    assert is_transient(method, answer(status, text)) is transient


@pytest.mark.parametrize("method, status, text, taken", [
    ("post", 500, "rpc error: leadership lost while committing log", True),  # appended before the leader was deposed
    ("post", 500, "rpc error: EOF", True),  # the forwarded RPC broke after it was sent
    ("post", 502, "Bad Gateway", True),
    ("post", 504, "Gateway Timeout", True),
    ("post", 500, "rpc error: No cluster leader", False),
    ("post", 500, "node is not the leader", False),
    ("post", 500, "timed out enqueuing operation", False),
    ("post", 429, "Your IP is issuing too many concurrent connections", False),
    ("post", 503, "", False),
    ("post", 500, "1 error occurred:\n\t* Missing job task groups", False),  # refused: not transient
    ("get", 504, "Gateway Timeout", False),
])
def test_a_write_nomad_may_have_carried_out_is_told_from_one_it_did_not(method, status, text, taken):
    assert may_have_taken_effect(method, answer(status, text)) is taken


def _unanswered(address: str, timeout: float = 2.0) -> BaseException:
    try:
        requests.post(address + "/v1/jobs", json={}, timeout=timeout)
    except requests.RequestException as error:
        return error
    raise AssertionError("answered")


def test_a_call_that_never_reached_nomad_is_told_from_one_whose_answer_was_lost():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert not may_have_arrived(_unanswered(f"http://127.0.0.1:{port}"))  # refused: nothing was sent
    with socket.create_server(("127.0.0.1", 0)) as server:
        address = f"http://127.0.0.1:{server.getsockname()[1]}"

        def cut_after_reading() -> None:  # reads the request, then closes without an answer
            connection, _ = server.accept()
            connection.recv(65536)
            connection.close()

        cutting = threading.Thread(target=cut_after_reading)
        cutting.start()
        assert may_have_arrived(_unanswered(address))  # the connection cut mid-answer
        cutting.join()

        def hold() -> None:  # reads the request and answers nothing in time
            connection, _ = server.accept()
            connection.recv(65536)
            threading.Event().wait(1.0)
            connection.close()

        holding = threading.Thread(target=hold)
        holding.start()
        assert may_have_arrived(_unanswered(address, timeout=0.3))  # a read timeout
        holding.join()


@pytest.mark.parametrize("index, read", [("42", 42), ("1_0", 0), ("\u0663", 0), (" 7 ", 0), ("9" * 5000, 0), ("", 0)])
def test_an_index_nomad_sends_is_read_in_ascii_digits_alone(index, read):
    """(int() read X-Nomad-Index '1_0' as 10 and '\u0663' as 3: a blocking query would wait for an index Nomad never
    sent; found by review) An unreadable one is 0: the next query does not block."""
    assert NomadResponse(200, {"X-Nomad-Index": index}, "").index == read


def _http_1_0_server(bodies: list[bytes]):
    """Answers one connection per body as an HTTP/1.0 proxy does: no Content-Length, the close marks the end."""
    server = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        for answer_body in bodies:
            connection, _ = server.accept()
            with connection:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                while length and len(body) < int(length.group(1)):  # (unread, the close would be a reset)
                    body += connection.recv(65536)
                connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nX-Nomad-Index: 7\r\n\r\n" + answer_body)
    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize("method", ["get", "post"])
async def test_an_answer_cut_off_before_its_end_without_a_content_length_is_a_transport_fault_not_nomads_answer(method):
    # Behind a proxy that speaks HTTP/1.0 a JSON answer has no Content-Length: only the connection's close ends it,
    # and a connection cut mid-body read as a whole answer that did not parse (JSONDecodeError in the caller).
    full = b'[{"ID": "hrwsi-a-1-1", "Status": "running"}]'
    server, thread = _http_1_0_server([full[:17], full] if method == "get" else [full[:17]])
    client = NomadClient(NomadConfig(address=f"http://127.0.0.1:{server.getsockname()[1]}", retry_for_s=10.0))
    try:
        if method == "get":
            response = await client.call("list jobs", "jobs")  # retried: the second answer is whole
            assert (response.status, response.json(), response.index) == (200, json.loads(full), 7)
        else:
            with pytest.raises(NomadError) as cut:
                await client.call("register a job", "jobs", method="post", body={"Job": {}}, retry=False)
            assert cut.value.status is None and cut.value.may_have_arrived  # (a write may have been carried out)
            assert "cut off" in str(cut.value)
    finally:
        client.close()
        server.close()
        thread.join(timeout=5)
