"""A door to the test's real PostgreSQL server that a test closes (an outage) and opens again.

A TCP port (in 47700-47749) forwards every connection to the server. `close()` stops listening and cuts
every connection through it, as a database restart does (new connections are refused, open ones end);
`open()` listens again on the same port. The server itself never stops: the other tests' databases
on it go on. `freeze()` leaves every open connection half-open instead (nothing forwarded, neither end
told), and `idle_timeout_s` each connection quiet for that long, as a NAT does. It runs in threads, so
that a test's event loop and a browser test alike can use it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

PORTS = range(47700, 47750)


def ports_of_this_process() -> list[int]:
    """PORTS, starting at this test process's own share of them. Why: `make test` runs the suite in two
    processes (pytest-xdist), and a port `free_port` found free is only taken when the test's dashboard
    binds it; both processes scanning from the same end, the other's door could take it in between."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    share = len(PORTS) // 2 * (int(worker) % 2 if worker.isascii() and worker.isdigit() else 0)
    return [*PORTS[share:], *PORTS[:share]]


def free_port() -> int:
    """A port of PORTS nothing listens on now (for a dashboard a test starts)."""
    for port in ports_of_this_process():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def _target(url: str) -> tuple[int, object]:
    """(address family, address) of the server `url` names: its unix socket, or host and port."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    host, port = query.get("host") or parts.hostname or "localhost", int(query.get("port") or parts.port or 5432)
    if host.startswith("/"):
        return socket.AF_UNIX, f"{host}/.s.PGSQL.{port}"
    return socket.AF_INET, (host, port)


class DatabaseDoor:
    def __init__(self, url: str):
        self.family, self.address = _target(url)
        self._server: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        # Connections that are half-open: kept, never closed, and nothing forwarded either way any more.
        self._frozen: set[socket.socket] = set()
        # Connections that carried nothing for this long are half-open from then on (None: never), as a NAT or load
        # balancer's idle timeout does; when each end of a connection last carried something (monotonic).
        self.idle_timeout_s: float | None = None
        self._heard: dict[socket.socket, float] = {}
        self.port = self._listen(None)
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port")]
        user = parts.username or "postgres"
        credentials = user + (f":{parts.password}" if parts.password else "")
        self.url = urlunsplit((parts.scheme, f"{credentials}@127.0.0.1:{self.port}", parts.path, urlencode(query), ""))

    def _listen(self, port: int | None) -> int:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for candidate in [port] if port else ports_of_this_process():
            try:
                server.bind(("127.0.0.1", candidate))
                break
            except OSError:
                continue
        else:
            server.close()
            raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return server.getsockname()[1]

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # closed
            upstream = socket.socket(self.family, socket.SOCK_STREAM)
            try:
                upstream.connect(self.address)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if source in self._frozen or self._idle_too_long(source):
                    break  # (what it read is dropped: the network lost it)
                self._heard[source] = self._heard[sink] = time.monotonic()
                sink.sendall(data)
        except OSError:
            pass
        if source in self._frozen:
            return  # half-open: neither end hears of it, ever
        for end in (source, sink):
            self._drop(end)

    def _idle_too_long(self, end: socket.socket) -> bool:
        if self.idle_timeout_s is None or time.monotonic() - self._heard.get(end, time.monotonic()) < self.idle_timeout_s:
            return False
        with self._lock:
            self._frozen.add(end)
        return True

    def _drop(self, end: socket.socket) -> None:
        with self._lock:
            self._connections.discard(end)
            self._heard.pop(end, None)
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        end.close()

    def close(self) -> None:
        """The outage: nothing listens on the port any more, and every connection through it ends."""
        if self._server is not None:
            try:
                self._server.shutdown(socket.SHUT_RDWR)  # (wakes its accept(), which close() alone does not)
            except OSError:
                pass
            self._server.close()
            self._server = None
        with self._lock:
            connections = list(self._connections)
        for end in connections:
            self._drop(end)

    def freeze(self) -> None:
        """A half-open cut of every connection open now: nothing more goes through them either way, and neither
        end is told (no FIN, no reset), as when a NAT, a firewall or a load balancer in between forgets them, or
        the server's host vanishes. New connections go through."""
        with self._lock:
            self._frozen |= self._connections

    def open(self) -> None:
        """The database is back, on the same port."""
        if self._server is None:
            self._listen(self.port)
