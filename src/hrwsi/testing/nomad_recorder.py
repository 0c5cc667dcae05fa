"""Record a real Nomad agent's answers, byte for byte, and replay them (test tooling, no production use).

hrwsi is developed where no Nomad agent can run, so what a real agent answers must be brought here:

- Recording: the contract suite (tests/contract) runs against the agent at NOMAD_ADDR through a
  RecordingProxy, one per test, which forwards each request (one per connection) and writes the
  agent's raw response bytes, as they came and when (status line, headers, chunked or raw framing,
  gzip, the event stream included), to a cassette: tests/contract/recordings/<agent version>/
  <test>.jsonl.gz, whose first line names the agent's version. The token is never written.
- Replay: ReplayServer answers each request with the recorded response for the same method, path
  and query (blocking-query parameters aside), in recorded order, the last one again when the test
  asks more often; the contract suite then runs the recorded tests against it in CI
  (tests/contract/conftest.py, the `replay-<version>` targets).

The one command an admin runs against a cluster (a ready Linux client with raw_exec and /bin/sh):

    NOMAD_ADDR=https://nomad.example:4646 NOMAD_TOKEN=<token> python -m hrwsi.testing.nomad_recorder

then reviews and commits tests/contract/recordings/<version>/ (cassettes hold node names, addresses
and attributes of the cluster, never the token).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import re
import ssl
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

RECORDINGS = Path(__file__).resolve().parents[3] / "tests" / "contract" / "recordings"
RECORD_ENV = "HRWSI_NOMAD_RECORD"  # a directory: record the contract suite's agent runs there
VOLATILE_QUERY = {"index", "wait", "stale"}  # blocking-query parameters: not part of what is asked
SECRET_HEADERS = {"x-nomad-token", "authorization"}
MAX_REPLAY_GAP_S = 2.0  # replay keeps the timing of what arrived on a connection, not long silences
# An event frame recorded after a write took effect waits, in replay, for that write to be asked again; at
# most this long, as a test whose code no longer makes the write must still end.
MAX_CAUSAL_HOLD_S = 15.0
_FRAME_INDEX = re.compile(rb'\{"Index": ?(\d+), ?"Events"')  # a plain (not gzip) event frame's start
_RESPONSE_INDEX = re.compile(rb"\r\nX-Nomad-Index: (\d+)\r\n", re.IGNORECASE)
_WRITES = {"POST", "PUT", "DELETE"}


@dataclass
class Exchange:
    """One request and the raw bytes of its answer, with when each piece of them arrived."""

    method: str
    target: str  # path and query, as sent
    request_headers: dict[str, str]
    request_body: bytes
    response: list[tuple[float, bytes]] = field(default_factory=list)  # (seconds since the request, bytes)

    @property
    def key(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        return request_key(self.method, self.target)

    def to_json(self) -> dict:
        return {"method": self.method, "target": self.target, "request_headers": self.request_headers,
                "request_body": base64.b64encode(self.request_body).decode(),
                "response": [[round(t, 4), base64.b64encode(b).decode()] for t, b in self.response]}

    @classmethod
    def from_json(cls, data: dict) -> Exchange:
        return cls(data["method"], data["target"], data["request_headers"], base64.b64decode(data["request_body"]),
                   [(t, base64.b64decode(b)) for t, b in data["response"]])

    def response_bytes(self) -> bytes:
        return b"".join(b for _, b in self.response)


def request_key(method: str, target: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    url = urlsplit(target)
    query = tuple(sorted((k, v) for k, v in parse_qsl(url.query, keep_blank_values=True) if k not in VOLATILE_QUERY))
    return method.upper(), url.path, query


def cassette_name(test_id: str) -> str:
    """A file name for a test id such as tests/contract/test_x.py::test_y[agent-3] (gzip-compressed JSON lines:
    a header line, then one line per exchange; `zcat` shows it)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", test_id.split("/")[-1]).strip("_") + ".jsonl.gz"


def load_cassette(path: Path) -> tuple[dict, list[Exchange]]:
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    return json.loads(lines[0]), [Exchange.from_json(json.loads(line)) for line in lines[1:] if line.strip()]


def cassettes(root: Path = RECORDINGS) -> Iterator[tuple[str, Path]]:
    """(agent version, cassette) of every recording."""
    for path in sorted(root.glob("*/*.jsonl.gz")):
        yield path.parent.name, path


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes, bytes] | None:
    """(method, target, headers, head bytes, body) of one HTTP/1.1 request; None when the client closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length") or 0))
    return method, target, headers, head, body


def _forwarded_head(method: str, target: str, headers: dict[str, str], host: str) -> bytes:
    out = {**headers, "host": host, "connection": "close"}  # one request per connection: one exchange
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in out.items()), "", ""]
    return "\r\n".join(lines).encode("latin-1")


class _LoopbackServer:
    """An HTTP server on 127.0.0.1 handling one request per connection (subclasses: _exchange)."""

    def __init__(self) -> None:
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            request = await _read_request(reader)
            if request is not None:
                await self._exchange(request, reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()

    async def _exchange(self, request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class RecordingProxy(_LoopbackServer):
    """Forwards requests to a Nomad agent and appends each exchange, raw, to a cassette."""

    def __init__(self, upstream: str, cassette: Path, header: dict, tls: ssl.SSLContext | None = None):
        self.upstream = urlsplit(upstream)
        self.cassette = cassette
        self._lines = cassette.with_name(cassette.name.removesuffix(".gz"))  # written as it goes, gzipped at close
        self.header = header
        self.tls = tls if self.upstream.scheme == "https" else None
        self._appends: set[asyncio.Future] = set()
        super().__init__()

    async def start(self) -> str:
        self.cassette.parent.mkdir(parents=True, exist_ok=True)
        self._lines.write_text(json.dumps(self.header) + "\n")
        return await super().start()

    async def close(self) -> None:
        await super().close()
        await asyncio.gather(*self._appends, return_exceptions=True)
        if self._lines.exists():
            self.cassette.write_bytes(gzip.compress(self._lines.read_bytes(), mtime=0))
            self._lines.unlink()

    async def _exchange(self, request, client_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method, target, headers, _, body = request
        safe = {k: ("<redacted>" if k in SECRET_HEADERS else v) for k, v in headers.items()}
        exchange = Exchange(method, target, safe, body)
        port = self.upstream.port or (443 if self.tls else 4646)
        up_reader, up_writer = await asyncio.open_connection(self.upstream.hostname, port, ssl=self.tls)
        up_writer.write(_forwarded_head(method, target, headers, self.upstream.netloc) + body)
        client_gone = asyncio.ensure_future(client_reader.read(1))  # the client hangs up on a stream it is done with
        start = time.monotonic()
        try:
            while True:
                piece = asyncio.ensure_future(up_reader.read(65536))
                await asyncio.wait({piece, client_gone}, return_when=asyncio.FIRST_COMPLETED)
                if not piece.done():
                    piece.cancel()
                    break
                data = piece.result()
                if not data:
                    break
                exchange.response.append((time.monotonic() - start, data))
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            client_gone.cancel()
            up_writer.close()
            # Appended as each exchange ends, in the order they end (off the loop: a file write), and to the end
            # though the exchange is cancelled: close() cancels the exchanges still open and waits for every
            # append before it reads the file. A DELETE answered but still closing when its recording was closed
            # was lost, and the replay did not hold the job's deregistration for it (seen in a CI run).
            appended = asyncio.ensure_future(asyncio.to_thread(self._append, json.dumps(exchange.to_json()) + "\n"))
            self._appends.add(appended)
            await asyncio.shield(appended)

    def _append(self, line: str) -> None:
        with self._lines.open("a") as out:
            out.write(line)


class ReplayServer(_LoopbackServer):
    """Answers requests with recorded exchanges: same method, path and query; in recorded order."""

    def __init__(self, exchanges: list[Exchange]):
        self._by_key: dict[tuple, list[Exchange]] = {}
        # (key, position among its key's answers, the index Nomad answered) of every recorded write: an
        # event of that index or later was caused by it, or came after it.
        self._writes: list[tuple[tuple, int, int]] = []
        for exchange in exchanges:
            answers = self._by_key.setdefault(exchange.key, [])
            index = _RESPONSE_INDEX.search(exchange.response_bytes()[:4096])
            if exchange.method.upper() in _WRITES and index:
                self._writes.append((exchange.key, len(answers), int(index.group(1))))
            answers.append(exchange)
        self._next: dict[tuple, int] = {}
        self.unmatched: list[str] = []
        super().__init__()

    def _answer(self, method: str, target: str) -> Exchange | None:
        key = request_key(method, target)
        recorded = self._by_key.get(key)
        if not recorded:
            self.unmatched.append(f"{method} {target}")
            return None
        position = self._next.get(key, 0)
        self._next[key] = position + 1
        return recorded[min(position, len(recorded) - 1)]  # asked more often than recorded: the last answer

    async def _exchange(self, request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        exchange = self._answer(request[0], request[1])
        if exchange is None:
            text = f"replay (test double): nothing recorded for {request[0]} {request[1]}".encode()
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                         + f"Content-Length: {len(text)}\r\n\r\n".encode() + text)
            return
        stream = exchange.target.startswith("/v1/event/stream")
        previous, tail = 0.0, b""
        for at, data in exchange.response:
            await asyncio.sleep(min(max(0.0, at - previous), MAX_REPLAY_GAP_S))
            previous = at
            if stream:
                await self._after_the_writes_before(tail + data)
                tail = data[-40:]  # (a frame's start split between two pieces)
            writer.write(data)
            await writer.drain()
        if stream:
            await reader.read(1)  # a stream stays open, silent, until its client hangs up

    async def _after_the_writes_before(self, frames: bytes) -> None:
        """Hold the stream's next piece until the writes it was recorded after have been asked again.

        The recorded timing alone let a replay slower than its recording (a loaded CI machine) deliver an
        allocation's stop before the test's own `DELETE` of its job, and the backend, rightly, judged the
        stop not its own (found by CI). Nomad's event at index I comes from the write Nomad answered
        with index I, or follows it: a piece carrying events up to index I waits for every recorded write
        answered at I or before. Gzip framings are not read: their pieces keep their timing only."""
        indexes = [int(found) for found in _FRAME_INDEX.findall(frames)]
        if not indexes:
            return
        highest, waited = max(indexes), 0.0
        while waited < MAX_CAUSAL_HOLD_S and any(self._next.get(key, 0) <= position
                                                 for key, position, index in self._writes if index <= highest):
            await asyncio.sleep(0.01)
            waited += 0.01


def agent_version(address: str, token: str | None, tls: ssl.SSLContext | None) -> str:
    """The agent's Nomad version (GET /v1/agent/self), as the directory name of its recordings:
    Version[-VersionPrerelease][+VersionMetadata], e.g. 2.0.5 or 2.0.5+emulated (the emulator)."""
    import urllib.request

    request = urllib.request.Request(address.rstrip("/") + "/v1/agent/self",
                                     headers={"X-Nomad-Token": token} if token else {})
    with urllib.request.urlopen(request, timeout=30, context=tls) as response:
        version = json.loads(response.read())["config"]["Version"]
    text = version["Version"]
    if version.get("VersionPrerelease"):
        text += f"-{version['VersionPrerelease']}"
    if version.get("VersionMetadata"):
        text += f"+{version['VersionMetadata']}"
    return text


def main(argv: list[str] | None = None) -> int:
    """Run the contract suite against NOMAD_ADDR, recording every exchange (see the module docstring)."""
    import pytest

    if not os.environ.get("NOMAD_ADDR"):
        print("set NOMAD_ADDR (and NOMAD_TOKEN) to the Nomad agent to record", file=sys.stderr)
        return 2
    os.environ.setdefault(RECORD_ENV, str(RECORDINGS))
    tests = Path(__file__).resolve().parents[3] / "tests" / "contract"
    return int(pytest.main([str(tests), "-m", "contract", "-k", "agent", "-p", "no:cacheprovider", *(argv or [])]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
