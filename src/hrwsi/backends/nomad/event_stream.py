"""One connection to Nomad's event stream (GET /v1/event/stream), read in a thread, frames handed to the loop.

Newline-delimited JSON: a `{}` heartbeat first and then every 30 s, frames
`{"Index", "Events": [...]}` in between. A 4xx answer means the stream is unavailable here
(disabled, forbidden): StreamUnavailable, and the caller follows jobs with blocking queries.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable

import requests
from nomad.api.exceptions import BaseNomadException

from hrwsi.backends.nomad.client import NomadClient


class StreamUnavailable(Exception):
    """The event stream endpoint answered 4xx: follow with blocking queries instead."""


def _interrupt(response: requests.Response | None) -> None:
    """Wake the thread blocked reading the event stream: shut its socket down (closing the response
    from this thread would wait for the reader's lock, i.e. for the next heartbeat or the read timeout)."""
    if response is None:
        return
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    try:
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
            return
    except OSError:
        return
    threading.Thread(target=response.close, name="hrwsi-nomad-events-close", daemon=True).start()


class EventStream:
    """Connections to the event stream of one Nomad agent."""

    def __init__(self, client: NomadClient):
        self.client = client
        self._response: requests.Response | None = None

    def interrupt(self) -> None:
        _interrupt(self._response)

    async def follow(self, params: dict, on_connected: Callable[[], None], on_frame: Callable[[dict], None]) -> None:
        """Connect, call on_connected once subscribed, then on_frame(frame) per frame on the loop, until the
        stream ends (ConnectionError) or fails; StreamUnavailable when the endpoint answers 4xx."""
        loop = asyncio.get_running_loop()
        connected: asyncio.Future = loop.create_future()
        finished: asyncio.Future = loop.create_future()
        for future in (connected, finished):  # their errors are read through the other one, or not at all
            future.add_done_callback(lambda f: f.cancelled() or f.exception())

        def settle(future: asyncio.Future, error: BaseException | None = None) -> None:
            if not future.done():
                future.set_exception(error) if error is not None else future.set_result(None)

        def post(callback, *args) -> None:
            try:
                loop.call_soon_threadsafe(callback, *args)
            except RuntimeError:  # the loop is closed: nobody listens any more
                pass

        def read() -> None:
            try:
                response = self._open(params)
                self._response = response
                post(settle, connected)
                self._read_lines(response, lambda frame: post(on_frame, frame))
                raise ConnectionError("the event stream ended")
            except BaseException as error:  # handed to the loop, which decides
                post(settle, connected, error)
                post(settle, finished, error)
            finally:
                self._response = None

        thread = threading.Thread(target=read, name="hrwsi-nomad-events", daemon=True)
        thread.start()
        await connected
        on_connected()
        await finished

    def _open(self, params: dict) -> requests.Response:
        config = self.client.config
        requester = self.client.session_client().event.stream
        try:  # python-nomad's own stream helper replays after reconnects and dies on blank lines
            return requester.request(method="get", params=params, stream=True,
                                     timeout=(config.request_timeout_s, config.stream_read_timeout_s))
        except BaseNomadException as error:
            raw = error.nomad_resp
            if isinstance(raw, requests.Response) and raw.status_code in (400, 403, 404, 405, 501):
                raise StreamUnavailable(f"HTTP {raw.status_code}: {raw.text.strip()[:200]}") from None
            raise ConnectionError(str(error)) from None

    def _read_lines(self, response: requests.Response, on_frame: Callable[[dict], None]) -> None:
        buffer = b""
        for chunk in response.iter_content(chunk_size=None):
            if self.client.closed:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if not line.strip():
                    continue
                frame = json.loads(line)
                if frame.get("Error"):
                    raise ConnectionError(f"event stream error: {frame['Error']}")
                if frame:
                    on_frame(frame)
