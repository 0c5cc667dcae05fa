"""The emulator's event stream (test double): GET /v1/event/stream in each framing Nomad has served it.

Lines are NDJSON: `{}` as soon as the subscription holds (nomad/stream/ndjson.go NewJsonStream sends
an initial heartbeat), then one frame per write that has events on the requested topics, and a
`{}` heartbeat every `heartbeat` seconds. How the lines travel depends on the Nomad version
emulated (hashicorp/nomad command/agent/event_endpoint.go):

- FRAMING_RAW (Nomad >= 1.11.3, all 2.0.x, the default): the handler hijacks the connection and
  writes `HTTP/1.1 200 OK` with `Connection: close` (Go's Response.Write adds it to an HTTP/1.1
  response without length or chunking), no Transfer-Encoding, no length; the NDJSON follows raw
  until the connection closes. An error after the hijack (ACL, broker) can only close the stream.
- FRAMING_HTTP_0_0 (Nomad 1.11.2): the same, but the response's protocol was left unset, so the
  status line reads `HTTP/0.0 200 OK` and there is no `Connection: close`.
- FRAMING_CHUNKED_GZIP (Nomad 1.10 to 1.11.1): an ordinary response, `Transfer-Encoding: chunked`,
  gzip-compressed when the request accepts gzip (the agent's gorilla CompressHandler, command/agent/
  http.go), flushed after every line; an error before the first line is an HTTP error status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from hrwsi.testing.nomad_emulator.cluster import Cluster

logger = logging.getLogger("hrwsi.testing.nomad_emulator")

FRAMING_RAW = "raw"
FRAMING_HTTP_0_0 = "raw-http-0.0"
FRAMING_CHUNKED_GZIP = "chunked-gzip"
FRAMINGS = (FRAMING_RAW, FRAMING_HTTP_0_0, FRAMING_CHUNKED_GZIP)
# The Nomad version each framing comes from, as /v1/agent/self reports it.
FRAMING_VERSIONS = {FRAMING_RAW: "2.0.5", FRAMING_HTTP_0_0: "1.11.2", FRAMING_CHUNKED_GZIP: "1.11.1"}


class HijackedResponse(web.StreamResponse):
    """What a handler returns after writing its own bytes to the connection: aiohttp writes nothing more."""

    async def prepare(self, request):  # type: ignore[override]
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None

    @property
    def keep_alive(self) -> bool:  # type: ignore[override]
        return False


def hijacked_head(framing: str) -> bytes:
    """The status line and headers Nomad's hijacked event stream writes (Go's Response.Write, sorted headers)."""
    if framing == FRAMING_HTTP_0_0:
        lines = ["HTTP/0.0 200 OK"]
    else:
        lines = ["HTTP/1.1 200 OK", "Connection: close"]
    lines += ["Cache-Control: no-cache", "Content-Type: application/json", "Vary: Accept-Encoding", "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def stream_lines(cluster: Cluster, wanted: Callable[[dict], bool], start_index: int, heartbeat: float,
                       still_open: Callable[[], bool], *, lag_frames: int = 0) -> AsyncIterator[bytes]:
    """The NDJSON lines of one subscription, from start_index (inclusive), while still_open(). `lag_frames`: served
    by a server whose buffer lacks the last frames when the subscription starts (NomadEmulator.lag_event_streams)."""
    loop = asyncio.get_running_loop()
    # An index older than the buffer starts at its oldest frame (nomad/stream/event_buffer.go StartAtClosest).
    last_sent = max(start_index - 1 if start_index else 0, cluster.dropped_through)
    buffered = list(cluster.frames)[:-lag_frames] if lag_frames else list(cluster.frames)
    if start_index and buffered and start_index > buffered[-1][0]:
        # An index past the last buffered frame starts at that frame, sent again if the subscription's filter
        # takes it (StartAtClosest returns the last item it walked; nomad/stream/subscription.go Next filters):
        # a subscriber resuming from the index after the last it saw gets that frame a second time.
        last_sent = buffered[-1][0] - 1
    yield b"{}\n"
    next_heartbeat = loop.time() + heartbeat
    while still_open():
        if cluster.dropped_through > last_sent:
            # Frames this subscriber never got were dropped from the buffer: it fell behind. Nomad ends
            # such a subscription ("event dropped from buffer"); here it is counted, for the
            # fault-injection harness (test bookkeeping), and the stream goes on.
            cluster.frames_missed_by_subscribers += 1
            logger.warning("emulator (test double): an event stream fell behind the event buffer: frames %d..%d "
                           "were dropped before it sent them", last_sent + 1, cluster.dropped_through)
        for index, events in list(cluster.frames):
            if index <= last_sent:
                continue
            last_sent = index
            chosen = [e for e in events if wanted(e)]
            if chosen:
                yield json.dumps({"Index": index, "Events": chosen}).encode() + b"\n"
        remaining = next_heartbeat - loop.time()
        if remaining <= 0:
            yield b"{}\n"
            next_heartbeat = loop.time() + heartbeat
            continue
        await cluster.wait_for_change(remaining)


async def serve_hijacked(request: web.Request, framing: str, lines: AsyncIterator[bytes] | None) -> web.StreamResponse:
    """Nomad >= 1.11.2: write the head and the lines straight to the connection, then close it.
    `lines` None: the subscription failed after the hijack, which a client sees as 200 and the end."""
    transport = request.transport
    if transport is None:
        return HijackedResponse()
    transport.write(hijacked_head(framing))
    try:
        if lines is not None:
            async for line in lines:
                if transport.is_closing():
                    break  # the subscriber went away
                transport.write(line)
    finally:
        request.protocol.force_close()
    return HijackedResponse()


async def serve_chunked(request: web.Request, lines: AsyncIterator[bytes]) -> web.StreamResponse:
    """Nomad <= 1.11.1: chunked, and gzip (sync-flushed after every line) when the client accepts it."""
    gzip = "gzip" in request.headers.get("Accept-Encoding", "").lower()
    headers = {"Content-Type": "application/json", "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    if gzip:
        headers["Content-Encoding"] = "gzip"
    response = web.StreamResponse(status=200, headers=headers)
    response.enable_chunked_encoding()
    compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS) if gzip else None
    await response.prepare(request)
    try:
        async for line in lines:
            data = compressor.compress(line) + compressor.flush(zlib.Z_SYNC_FLUSH) if compressor else line
            await response.write(data)
        if compressor is not None:
            await response.write(compressor.flush())
        await response.write_eof()
    except (ConnectionResetError, ConnectionError, RuntimeError):
        pass  # the subscriber went away
    return response
