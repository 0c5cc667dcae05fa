"""hrwsi.backends.nomad.event_stream: lines come out as their bytes arrive, in each framing Nomad has used.

The bytes are the ones Nomad writes (command/agent/event_endpoint.go): up to 1.11.1 chunked and
gzip-compressed, flushed after each line; 1.11.2 a hijacked connection with the status line
`HTTP/0.0 200 OK`; since 1.11.3 the same with `HTTP/1.1 200 OK` and `Connection: close`.
"""

from __future__ import annotations

import asyncio
import json
import zlib

import pytest

from hrwsi.backends.nomad.event_stream import (
    BodyReader,
    EventStream,
    EventStreamConnection,
    Response,
    StreamEnded,
    parse_status_line,
)

FRAME = {"Index": 12, "Events": [{"Topic": "Job", "Type": "JobRegistered", "Key": "hrwsi-a-1-1", "Index": 12}]}
LINES = [b"{}\n", json.dumps(FRAME).encode() + b"\n", b"{}\n"]


def chunked(pieces: list[bytes]) -> list[bytes]:
    return [f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces]


def gzip_flushed(lines: list[bytes]) -> list[bytes]:
    """gzip, sync-flushed after every line, as the agent's CompressHandler does on each Flush."""
    compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    return [compressor.compress(line) + compressor.flush(zlib.Z_SYNC_FLUSH) for line in lines]


FRAMINGS = {
    "1.11.1 chunked gzip": (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Type: application/json\r\n"
                            b"Transfer-Encoding: chunked\r\nVary: Accept-Encoding\r\n\r\n",
                            chunked(gzip_flushed(LINES))),
    "1.11.1 chunked": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                       chunked(LINES)),
    "1.11.2 HTTP/0.0": (b"HTTP/0.0 200 OK\r\nCache-Control: no-cache\r\nContent-Type: application/json\r\n\r\n",
                        LINES),
    "1.11.3+ raw": (b"HTTP/1.1 200 OK\r\nConnection: close\r\nCache-Control: no-cache\r\n"
                    b"Content-Type: application/json\r\n\r\n", LINES),
}


async def open_fed(head: bytes) -> tuple[asyncio.StreamReader, EventStreamConnection]:
    reader = asyncio.StreamReader()
    reader.feed_data(head)
    response = await EventStream._read_head(reader)
    body = BodyReader(reader, response.headers, read_timeout_s=5.0)

    class Writer:
        def close(self) -> None:
            pass

    return reader, EventStreamConnection(response, body, Writer())  # type: ignore[arg-type]


@pytest.mark.parametrize("framing", list(FRAMINGS))
async def test_each_line_comes_out_as_soon_as_its_bytes_arrive(framing):
    head, body = FRAMINGS[framing]
    reader, connection = await open_fed(head)
    assert connection.response.status == 200
    frames = connection.frames()
    wire = b"".join(body)
    sent = 0
    for line in LINES:  # feed a line's bytes one at a time; the connection stays open
        expected = json.loads(line)
        next_frame = asyncio.ensure_future(frames.__anext__())
        while not next_frame.done():
            if sent < len(wire):
                reader.feed_data(wire[sent:sent + 1])
                sent += 1
            await asyncio.sleep(0)
        assert next_frame.result() == expected
    reader.feed_eof()
    with pytest.raises(StopAsyncIteration):
        await frames.__anext__()
    assert connection.lines == len(LINES)


@pytest.mark.parametrize("line, expected", [
    (b"HTTP/1.1 200 OK\r\n", ("HTTP/1.1", 200, "OK")),
    (b"HTTP/0.0 200 OK\r\n", ("HTTP/0.0", 200, "OK")),  # Nomad 1.11.2: Python's http.client refuses it
    (b"HTTP/1.0 403 Forbidden\n", ("HTTP/1.0", 403, "Forbidden")),
])
def test_any_http_version_in_the_status_line_is_read(line, expected):
    assert parse_status_line(line) == expected


def test_what_is_not_a_status_line_ends_the_stream():
    with pytest.raises(StreamEnded):
        parse_status_line(b"SSH-2.0-OpenSSH\r\n")


@pytest.mark.parametrize("code", [b"\xb200", b"\xb9\xb2\xb3", b"2000", b"+20", b"9" * 5000])
def test_a_status_code_that_is_not_three_ascii_digits_ends_the_stream_in_one_line(code):
    """(the line is read as latin-1, where str.isdigit is true of '\u00b2', '\u00b9' and '\u00b3', which int()
    refused with a ValueError, not the StreamEnded the stream's reconnection handles; 5,000 digits too;
    found by review)"""
    with pytest.raises(StreamEnded, match="not an HTTP status line"):
        parse_status_line(b"HTTP/1.1 " + code + b" OK\r\n")


@pytest.mark.parametrize("length", [b"\xb2", b"1\xb3", b"9" * 5000, b"+17"])
async def test_a_content_length_that_is_not_ascii_digits_is_no_length_and_the_body_is_read_to_its_end(length):
    """(a hostile server's Content-Length of '\u00b2' (latin-1) or 5,000 digits raised a ValueError from
    int(); found by review)"""
    reader = asyncio.StreamReader()
    reader.feed_data(b"HTTP/1.1 403 Forbidden\r\nContent-Length: " + length + b"\r\n\r\n" + b"Permission denied, and more")
    reader.feed_eof()
    response = await EventStream._read_head(reader)
    assert await BodyReader(reader, response.headers, 1.0).read_all() == b"Permission denied, and more"


async def test_a_stream_that_ends_without_a_line_reports_none():
    reader, connection = await open_fed(FRAMINGS["1.11.3+ raw"][0])
    reader.feed_eof()  # Nomad >= 1.11.2 after an ACL or broker error: 200, then the end
    assert [frame async for frame in connection.frames()] == []
    assert connection.lines == 0


async def test_silence_longer_than_the_read_timeout_ends_the_stream():
    reader = asyncio.StreamReader()
    reader.feed_data(FRAMINGS["1.11.3+ raw"][0])
    response = await EventStream._read_head(reader)
    body = BodyReader(reader, response.headers, read_timeout_s=0.05)
    with pytest.raises(StreamEnded, match="nothing from Nomad"):
        await body.read()


async def test_an_error_body_is_read_whole_with_its_length():
    reader = asyncio.StreamReader()
    reader.feed_data(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 17\r\n\r\nPermission denied")
    response = await EventStream._read_head(reader)
    assert isinstance(response, Response) and response.status == 403
    assert await BodyReader(reader, response.headers, 1.0).read_all() == b"Permission denied"


@pytest.mark.parametrize("size", [b"-a", b"0x1a", b"1_0", b"\xd9\xa3", b"+a", b"1" * 40])
async def test_a_chunk_size_that_is_not_ascii_hexadecimal_digits_ends_the_stream(size):
    """(int(x, 16) read '-a' as a chunk of -10 bytes, which read the stream to its end as one chunk, '0x1a' as 26
    and '1_0' as 16; found by review) RFC 9112: chunk-size = 1*HEXDIG."""
    reader, connection = await open_fed(FRAMINGS["1.11.1 chunked"][0])
    reader.feed_data(size + b"\r\n" + b"{}\n" * 40 + b"\r\n0\r\n\r\n")
    reader.feed_eof()
    with pytest.raises(StreamEnded, match="bad chunk size"):
        await connection._body.read()


async def test_a_chunk_size_with_an_extension_or_spaces_before_it_is_read():
    reader, connection = await open_fed(FRAMINGS["1.11.1 chunked"][0])
    reader.feed_data(b"3 ;name=value\r\n{}\n\r\n0\r\n\r\n")
    reader.feed_eof()
    assert await connection._body.read() == b"{}\n"
