"""One connection to Nomad's event stream (GET /v1/event/stream), read line by line as bytes arrive.

Newline-delimited JSON: a `{}` heartbeat as soon as the subscription holds and every 30 s, frames
`{"Index", "Events": [...]}` in between. Nomad has served it in three framings, and a reader must
take each line when its bytes arrive in all of them (hashicorp/nomad command/agent/event_endpoint.go):

- up to 1.11.1: `HTTP/1.1 200`, `Transfer-Encoding: chunked`, and gzip-compressed (`Content-Encoding:
  gzip`) when the client accepts it, flushed after every line;
- 1.11.2: the handler hijacks the connection and writes a bare response whose status line reads
  `HTTP/0.0 200 OK` (the response's protocol was left unset), no length, no chunking; the body runs
  until the connection closes. Python's http.client refuses that status line (UnknownProtocol);
- 1.11.3 and later (all 2.0.x): the same with `HTTP/1.1 200 OK` and `Connection: close`.

requests' `iter_content(chunk_size=None)` waits for the connection to close in the last two, so
this is a small HTTP/1.1 reader of its own on asyncio streams (no thread, cancellable): it accepts
any `HTTP/x.y` status line, decodes chunked and gzip bodies incrementally and splits lines as they
come. Since 1.11.2 an error met after the hijack (ACL, a disabled broker) can only show as a 200
that ends without a line; `EventStream.connect` reports how many lines a connection gave so the
caller can fall back to blocking queries. A 4xx before the stream starts is StreamUnavailable.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from hrwsi.backends.ascii_decimal import ascii_decimal, ascii_hexadecimal
from hrwsi.backends.nomad.config import NomadConfig, public_address

READ_SIZE = 64 * 1024
MAX_ERROR_BODY = 64 * 1024
UNAVAILABLE = (400, 403, 404, 405, 501)  # the endpoint is off or forbidden here: blocking queries instead
PASSING = (429, 502, 503, 504)  # overload, a proxy or a gateway: try again, it says nothing of the stream


class StreamUnavailable(Exception):
    """The event stream endpoint answered 4xx: follow with blocking queries instead."""


class StreamEnded(ConnectionError):
    """The stream ended (the server closed it, or nothing came for the read timeout)."""


class StreamRefused(ConnectionError):
    """Nomad itself failed the subscription (HTTP 500: up to 1.11.1, a disabled event broker answers so)."""


def ssl_context(config: NomadConfig) -> ssl.SSLContext:
    """TLS as the nomad CLI configures it: NOMAD_CACERT (file or directory), client cert, skip verify."""
    context = ssl.create_default_context()
    if config.cacert:
        if os.path.isdir(config.cacert):
            context.load_verify_locations(capath=config.cacert)
        else:
            context.load_verify_locations(cafile=config.cacert)
    if config.client_cert and config.client_key:
        context.load_cert_chain(config.client_cert, config.client_key)
    if config.skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass
class Response:
    """A parsed status line and headers (names lower-cased)."""

    version: str
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)


def parse_status_line(line: bytes) -> tuple[str, int, str]:
    """`HTTP/x.y NNN reason`, whatever x.y is (1.11.2 writes HTTP/0.0)."""
    text = line.decode("latin-1").rstrip("\r\n")
    version, _, rest = text.partition(" ")
    code, _, reason = rest.partition(" ")
    status = ascii_decimal(code, max_digits=3)
    if not version.startswith("HTTP/") or status is None:
        raise StreamEnded(f"not an HTTP status line: {text[:80]!r}")
    return version, status, reason


class BodyReader:
    """The body of a response, decoded as it arrives: chunked or not, gzip/deflate or identity."""

    def __init__(self, reader: asyncio.StreamReader, headers: Mapping[str, str], read_timeout_s: float):
        self._reader = reader
        self._timeout = read_timeout_s
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._remaining = ascii_decimal(length) if length is not None and not self._chunked else None
        encoding = headers.get("content-encoding", "").lower()
        self._inflate = (zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding in ("gzip", "x-gzip")
                         else zlib.decompressobj() if encoding == "deflate" else None)
        self._chunk_left = 0
        self.done = False

    async def _read(self, coroutine):
        # asyncio.timeout, not wait_for: on Python 3.11, wait_for can lose a cancel that comes as the read
        # completes, and a closing backend then read the stream's heartbeats for ever (a contract
        # test's teardown hung on it in CI).
        try:
            async with asyncio.timeout(self._timeout):
                return await coroutine
        except TimeoutError:
            raise StreamEnded(f"nothing from Nomad's event stream for {self._timeout:.0f} s") from None

    async def _raw(self) -> bytes:
        """The next bytes of the (still encoded) body as they arrive; b"" at its end."""
        if self.done:
            return b""
        if self._chunked:
            return await self._chunk()
        size = READ_SIZE if self._remaining is None else min(READ_SIZE, self._remaining)
        data = await self._read(self._reader.read(size)) if size else b""
        if self._remaining is not None:
            self._remaining -= len(data)
        if not data or self._remaining == 0:
            self.done = True
        return data

    async def _chunk(self) -> bytes:
        if self._chunk_left == 0:
            line = await self._read(self._reader.readline())
            if not line:
                self.done = True  # closed mid-body
                return b""
            # (RFC 9112: chunk-size = 1*HEXDIG, then perhaps spaces and an extension; ascii_hexadecimal, as int(x, 16)
            # read '-a' as a chunk of -10 bytes, which read the stream to its end, and '1_0' as 16)
            size_text = line.split(b";", 1)[0].rstrip(b" \t\r\n")
            size = ascii_hexadecimal(size_text.decode("latin-1"))
            if size is None:
                raise StreamEnded(f"bad chunk size {size_text[:20]!r} in Nomad's event stream")
            self._chunk_left = size
            if self._chunk_left == 0:
                while (await self._read(self._reader.readline())) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self.done = True
                return b""
        data = await self._read(self._reader.read(min(self._chunk_left, READ_SIZE)))
        if not data:
            self.done = True
            return b""
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            await self._read(self._reader.readline())  # the CRLF after the chunk
        return data

    async def read(self) -> bytes:
        """The next decoded bytes; b"" only at the end of the body."""
        while True:
            raw = await self._raw()
            if not raw:
                return self._inflate.flush() if self._inflate is not None else b""
            data = self._inflate.decompress(raw) if self._inflate is not None else raw
            if data:
                return data

    async def read_all(self, limit: int = MAX_ERROR_BODY) -> bytes:
        body = b""
        while len(body) < limit and (data := await self.read()):
            body += data
        return body[:limit]


class EventStreamConnection:
    """One open event stream: iterate over its frames (dicts; `{}` heartbeats included)."""

    def __init__(self, response: Response, body: BodyReader, writer: asyncio.StreamWriter):
        self.response = response
        self._body = body
        self._writer = writer
        self.lines = 0

    async def frames(self) -> AsyncIterator[dict]:
        buffer = b""
        while True:
            data = await self._body.read()
            if not data:
                if buffer.strip():
                    raise StreamEnded("Nomad's event stream ended in the middle of a line")
                return
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                self.lines += 1
                frame = json.loads(line)
                if not isinstance(frame, dict):
                    raise StreamEnded(f"unexpected line in Nomad's event stream: {line[:80]!r}")
                yield frame

    def close(self) -> None:
        self._writer.close()


class EventStream:
    """Connections to the event stream of one Nomad agent (NomadConfig: address, token, TLS, namespace)."""

    def __init__(self, config: NomadConfig):
        self.config = config
        self._connection: EventStreamConnection | None = None

    def interrupt(self) -> None:
        """Close the open connection, if any (the backend is closing)."""
        if self._connection is not None:
            self._connection.close()

    def _request(self, path: str, params: Mapping[str, str | list[str]], host: str) -> bytes:
        query = urlencode([(k, v) for k, values in params.items()
                           for v in (values if isinstance(values, list) else [values])])
        headers = {"Host": host, "Accept": "application/json", "Accept-Encoding": "gzip",
                   "User-Agent": "hrwsi", "Connection": "close"}
        if self.config.token:
            headers["X-Nomad-Token"] = self.config.token
        lines = [f"GET {path}?{query} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
        return "\r\n".join(lines).encode("latin-1")

    async def connect(self, params: Mapping[str, str | list[str]]) -> EventStreamConnection:
        """Open the stream and read its status and headers; StreamUnavailable on 4xx, ConnectionError else."""
        url = urlsplit(self.config.address)
        tls = url.scheme == "https"
        port = url.port or 4646
        params = {**params, **({"region": self.config.region} if self.config.region else {})}
        try:
            async with asyncio.timeout(self.config.request_timeout_s):
                reader, writer = await asyncio.open_connection(
                    url.hostname, port, ssl=ssl_context(self.config) if tls else None, limit=READ_SIZE * 4)
        except (OSError, TimeoutError) as error:
            raise ConnectionError(f"cannot reach Nomad's event stream at {public_address(self.config.address)}: "
                                  f"{error}") from None
        try:
            writer.write(self._request(url.path.rstrip("/") + "/v1/event/stream", params, url.netloc))
            await writer.drain()
            async with asyncio.timeout(self.config.request_timeout_s):
                response = await self._read_head(reader)
            body = BodyReader(reader, response.headers, self.config.stream_read_timeout_s)
            if response.status != 200:
                text = (await body.read_all()).decode("utf-8", "replace").strip()
                problem = f"HTTP {response.status}: {text[:200]}"
                if response.status in UNAVAILABLE:
                    raise StreamUnavailable(problem)
                raise ConnectionError(problem) if response.status in PASSING else StreamRefused(problem)
        except BaseException:
            writer.close()
            raise
        self._connection = EventStreamConnection(response, body, writer)
        return self._connection

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> Response:
        status_line = await reader.readline()
        if not status_line:
            raise StreamEnded("Nomad closed the event stream before answering")
        response = Response(*parse_status_line(status_line))
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                return response
            name, _, value = line.decode("latin-1").partition(":")
            response.headers[name.strip().lower()] = value.strip()
