"""The systems `make bench` measures side by side, each in a database of its own on the same server:

- hrwsi: its migrations and a configuration; orchestrator and launcher (and for the chain the
  harvester) each in a process of its own, as `hrwsi orchestrator` / `hrwsi launcher` run them;
- pgqueuer, the peer: its schema from its own install step (`Queries.install`, what `pgq install`
  runs), one consumer process with its defaults (batch size 10), and again with the batch size its
  performance guide suggests for short jobs (100);
- the floor: an AFTER INSERT statement trigger -> pg_notify -> one asyncpg listener -> one INSERT.

A system says which processes a scenario runs (`roles`), which of them reports jobs (`reporter`),
and gives a producer: how the driver puts work in and sees whether work is still open.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
import psycopg

from bench_process import ROUTINE_COMMAND
from bench_sql import bench_query
from hrwsi import migrations
from hrwsi.configuration import load
from hrwsi.database import create_database

SERVICE, CHAIN, BACKFILL, NRT_BACKLOG = "service", "chain", "backfill", "nrt_backlog"

# The back-fill queues on 10 workers of 64 CPUs: planning it is the work measured.
_CAPACITY = {
    "flavour": [{"name": "big", "cpu": 64, "ram_mb": 256000, "disk_mb": 1000000}],
    "worker": [{"prefix": "w", "count": 10, "flavour": "big"}],
    "budget": {"cpu_max": 640, "ram_max_mb": 2560000, "storage_max_mb": 10000000, "vm_max": 10},
}
# The bursts and the chain: room for every job of the largest burst at once (100,000 jobs of 1 CPU
# and 1,000 MB on 25 workers of 4,096 CPUs, no budget). A burst measures how fast hrwsi reacts to and
# dispatches work, as pgqueuer's figure is how fast its handlers are entered (pgqueuer has no
# capacity to wait for). With 640 CPUs, as before, a burst measured the cycle "capacity full ->
# outcomes recorded -> next dispatch" 16 times over instead; the chain measures a system whose
# capacity binds (16 routines at once, the local backend's limit).
_ROOMY = {
    "flavour": [{"name": "big", "cpu": 4096, "ram_mb": 4_096_000, "disk_mb": 4_096_000}],
    "worker": [{"prefix": "w", "count": 25, "flavour": "big"}],
    "budget": {},
}


def _routine(name: str, consumes: str, produces: str, **extra) -> dict:
    return {"name": name, "cpu": 1, "ram_mb": 1000, "storage_mb": 1000, "expected_duration_s": 60,
            "command": ["true"], "input_product_type": consumes, "output_product_type": produces, **extra}


def hrwsi_configuration(scenario: str, sequential: bool = False) -> dict:
    """The routines of each scenario and the workers they run on (capacity binds only in the back-fill)."""
    if scenario == CHAIN:
        chained = dict(command=list(ROUTINE_COMMAND), expected_duration_s=1)
        routines = [_routine("a", "RAW", "T1", **chained), _routine("b", "T1", "T2", **chained),
                    _routine("c", "T2", "T3", **chained)]
        conditions = [{"name": "raw", "routine": "a"}, {"name": "t1", "routine": "b"}, {"name": "t2", "routine": "c"}]
    elif scenario == NRT_BACKLOG:
        # Back-fill fills the 9 big workers (its jobs never end: the bench backend holds archive jobs)
        # and 10,000 more wait; near-real-time work has a worker of its own flavour with a free slot.
        return {"flavour": [{"name": "big", "cpu": 64, "ram_mb": 256000, "disk_mb": 1000000},
                            {"name": "nrt", "cpu": 4, "ram_mb": 16000, "disk_mb": 100000}],
                "worker": [{"prefix": "w", "count": 9, "flavour": "big"}, {"name": "nrt01", "flavour": "nrt"}],
                "routine": [_routine("backfill", "OLD", "DONE", flavour="big"),
                            _routine("fresh", "NEW", "DONE", flavour="nrt")],
                "condition": [{"name": "old", "routine": "backfill", "lane": "archive"},
                              {"name": "new", "routine": "fresh"}]}
    elif scenario == BACKFILL:
        routines = [_routine("series", "RAW", "DONE", sequential_per_tile=sequential)]
        conditions = [{"name": "series", "routine": "series"}]
        return {**_CAPACITY, "routine": routines, "condition": conditions}
    else:
        routines = [_routine("bench", "RAW", "DONE")]
        conditions = [{"name": "raw", "routine": "bench"}]
    return {**_ROOMY, "routine": routines, "condition": conditions}


def prepare_hrwsi(server_url: str, name: str, configuration: dict) -> str:
    url = create_database(server_url, name)
    with psycopg.connect(url) as conn:
        migrations.migrate(conn)
        conn.autocommit = True
        load(conn, configuration)
    return url


# -- producers: how the driver puts work in ------------------------------------------------------

class HrwsiProducer:
    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    async def insert_one(self, key: str) -> None:
        await self.conn.execute(bench_query("hrwsi_insert_one"), "raw", key)

    async def insert_burst(self, count: int, prefix: str) -> None:
        await self.conn.execute(bench_query("hrwsi_insert_burst"), "raw", prefix, count)

    insert_chain = insert_burst

    async def open_work(self) -> int:
        return await self.conn.fetchval(bench_query("hrwsi_open_work"))


class PgqueuerProducer:
    def __init__(self, conn: asyncpg.Connection):
        from pgqueuer import Queries

        self.conn = conn
        self.queries = Queries.from_asyncpg_connection(conn)

    async def insert_one(self, key: str) -> None:
        await self.queries.enqueue("bench", key.encode())

    async def _enqueue_batch(self, entrypoint: str, count: int, prefix: str) -> None:
        # One batch, one statement: pgqueuer's batch enqueue takes lists.
        await self.queries.enqueue([entrypoint] * count, [f"{prefix}{i}".encode() for i in range(1, count + 1)],
                                   [0] * count)

    async def insert_burst(self, count: int, prefix: str) -> None:
        await self._enqueue_batch("bench", count, prefix)

    async def insert_chain(self, count: int, prefix: str) -> None:
        await self._enqueue_batch("a", count, prefix)

    async def open_work(self) -> int:
        return await self.conn.fetchval(bench_query("pgqueuer_open_jobs"))


class FloorProducer:
    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    async def insert_one(self, key: str) -> None:
        await self.conn.execute(bench_query("floor_insert_one"), key)

    async def insert_burst(self, count: int, prefix: str) -> None:
        await self.conn.execute(bench_query("floor_insert_burst"), prefix, count, 1)

    insert_chain = insert_burst

    async def open_work(self) -> int:
        return await self.conn.fetchval(bench_query("floor_open_events"))


# -- the systems ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hrwsi:
    name: str = "hrwsi"
    batch_size: int = 10  # unused: hrwsi's batches are its own

    def roles(self, scenario: str) -> dict[str, str]:
        if scenario == CHAIN:
            return {"harvester": "hrwsi-harvester", "orchestrator": "hrwsi-orchestrator",
                    "launcher": "hrwsi-launcher-local"}
        if scenario == BACKFILL:
            return {"orchestrator": "hrwsi-orchestrator"}
        return {"orchestrator": "hrwsi-orchestrator", "launcher": "hrwsi-launcher"}

    reporter = "launcher"

    async def prepare(self, server_url: str, name: str, scenario: str) -> str:
        return await asyncio.to_thread(prepare_hrwsi, server_url, name, hrwsi_configuration(scenario))

    def producer(self, conn: asyncpg.Connection) -> HrwsiProducer:
        return HrwsiProducer(conn)


@dataclass(frozen=True)
class Pgqueuer:
    name: str = "pgqueuer"
    batch_size: int = 10  # its default (QueueManager.run)

    def roles(self, scenario: str) -> dict[str, str]:
        return {"consumer": "pgqueuer-chain" if scenario == CHAIN else "pgqueuer"}

    reporter = "consumer"

    async def prepare(self, server_url: str, name: str, scenario: str) -> str:
        from pgqueuer import Queries

        url = await asyncio.to_thread(create_database, server_url, name)
        conn = await asyncpg.connect(url)
        try:
            await Queries.from_asyncpg_connection(conn).install()
        finally:
            await conn.close()
        return url

    def producer(self, conn: asyncpg.Connection) -> PgqueuerProducer:
        return PgqueuerProducer(conn)


@dataclass(frozen=True)
class Floor:
    name: str = "floor"
    batch_size: int = 10  # unused

    def roles(self, scenario: str) -> dict[str, str]:
        return {"listener": "floor-chain" if scenario == CHAIN else "floor"}

    reporter = "listener"

    async def prepare(self, server_url: str, name: str, scenario: str) -> str:
        def prepare() -> str:
            url = create_database(server_url, name)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(bench_query("floor_schema"))
            return url

        return await asyncio.to_thread(prepare)

    def producer(self, conn: asyncpg.Connection) -> FloorProducer:
        return FloorProducer(conn)


HRWSI = Hrwsi()
PGQUEUER = Pgqueuer()
PGQUEUER_TUNED = Pgqueuer("pgqueuer_b100", 100)  # docs/guides/performance-tuning.md: larger batches for short jobs
FLOOR = Floor()
SYSTEMS = (HRWSI, PGQUEUER, PGQUEUER_TUNED, FLOOR)
