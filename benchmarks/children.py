"""The driver's side of a benchmark process (benchmarks/bench_process.py): start it, wait until it
listens, send it commands, collect what it reports (protocol: benchmarks/process_protocol.py)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

BENCH_PROCESS = Path(__file__).resolve().parent / "bench_process.py"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0


class ChildFailed(RuntimeError):
    """A benchmark process died or said it failed; the message names its log."""


class Child:
    """One running benchmark process."""

    def __init__(self, role: str, process: asyncio.subprocess.Process, log_path: Path):
        self.role = role
        self.process = process
        self.log_path = log_path
        self.ready = asyncio.Event()
        self.failure: str | None = None
        self.last_memory: tuple[float, float] | None = None  # (peak, current) MB, as last reported
        self.finished = False  # said `bye`: it stopped as asked
        self._arrived: dict[str, float] = {}
        self._waiting: dict[str, asyncio.Future] = {}
        self._all: asyncio.Future | None = None
        self._acks: asyncio.Queue[str] = asyncio.Queue()
        self._memory: asyncio.Queue[tuple[float, float]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(), name=f"read-{role}")

    @classmethod
    async def start(cls, role: str, url: str, home: Path, log_path: Path, *, parallel: int = 16,
                    batch_size: int = 10) -> Child:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, str(BENCH_PROCESS), role, "--url", url, "--home", str(home),
                "--parallel", str(parallel), "--batch-size", str(batch_size),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
                limit=2**20)
        return cls(role, process, log_path)

    # -- reading ------------------------------------------------------------------------------
    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            words = line.decode().split(maxsplit=2)
            if words:
                self._dispatch(words)
        if not self.failure and not self.finished:
            self._fail(f"{self.role} exited (code {await self.process.wait()}); see {self.log_path}")

    def _dispatch(self, words: list[str]) -> None:
        kind = words[0]
        if kind == "ready":
            self.ready.set()
        elif kind == "job":
            key, at = words[1], float(words[2])
            future = self._waiting.pop(key, None)
            if future is not None and not future.done():
                future.set_result(at)
            else:
                self._arrived[key] = at
        elif kind == "all":
            if self._all is not None and not self._all.done():
                self._all.set_result(float(words[2]))
        elif kind == "ok":
            self._acks.put_nowait(words[1])
        elif kind == "rss":
            self.last_memory = (float(words[1]), float(words[2]))
            self._memory.put_nowait(self.last_memory)
        elif kind == "bye":
            self.finished = True
        elif kind == "error":
            self._fail(f"{self.role}: {' '.join(words[1:])} ({self.log_path})")

    def _fail(self, message: str) -> None:
        self.failure = message
        error = ChildFailed(message)
        for future in [*self._waiting.values(), self._all]:
            if future is not None and not future.done():
                future.set_exception(error)
        self.ready.set()  # wake a waiter; it checks failure

    def check(self) -> None:
        if self.failure:
            raise ChildFailed(self.failure)

    # -- commands -----------------------------------------------------------------------------
    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        try:
            await asyncio.wait_for(self.ready.wait(), timeout_s)
        except TimeoutError:
            raise ChildFailed(f"{self.role} was not listening after {timeout_s:.0f} s; see {self.log_path}") from None
        self.check()

    async def command(self, *words: object) -> None:
        self.check()
        assert self.process.stdin is not None
        self.process.stdin.write((" ".join(str(w) for w in words) + "\n").encode())
        await self.process.stdin.drain()
        ack = await asyncio.wait_for(self._acks.get(), 30)
        if ack != str(words[0]):
            raise ChildFailed(f"{self.role} acknowledged {ack!r} instead of {words[0]!r}")

    def expect_key(self, key: str) -> asyncio.Future:
        """The time `key` reaches the system (`each` mode)."""
        future = asyncio.get_running_loop().create_future()
        if key in self._arrived:
            future.set_result(self._arrived.pop(key))
        else:
            self._waiting[key] = future
        return future

    def forget_keys(self) -> None:
        self._arrived.clear()
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def expect_all(self, count: int) -> asyncio.Future:
        """Count from now on; the future is the time `count` jobs have reached the system."""
        self._all = asyncio.get_running_loop().create_future()
        await self.command("expect", count)
        return self._all

    async def memory(self) -> tuple[float, float]:
        """(peak RSS, current RSS) in MB, now."""
        self.check()
        assert self.process.stdin is not None
        self.process.stdin.write(b"rss\n")
        await self.process.stdin.drain()
        memory = await asyncio.wait_for(self._memory.get(), 30)
        await asyncio.wait_for(self._acks.get(), 30)
        return memory

    async def stop(self) -> None:
        """Ask it to stop gracefully (end of input); kill it if it does not within STOP_TIMEOUT_S."""
        if self.process.returncode is None and self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await asyncio.gather(self._reader, return_exceptions=True)


async def start_all(roles: dict[str, str], url: str, home: Path, log_dir: Path, label: str,
                    **options) -> dict[str, Child]:
    """Start one process per role ({name: role}) and wait until every one listens."""
    children: dict[str, Child] = {}
    try:
        for name, role in roles.items():
            children[name] = await Child.start(role, url, home, log_dir / f"{label}-{name}.log", **options)
        for child in children.values():
            await child.wait_ready()
    except BaseException:
        await stop_all(children)
        raise
    return children


async def stop_all(children: dict[str, Child]) -> None:
    await asyncio.gather(*(child.stop() for child in children.values()))
