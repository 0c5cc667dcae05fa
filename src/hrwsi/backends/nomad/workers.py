"""Nomad's client nodes as hrwsi workers: `hrwsi workers sync` fills hrwsi.flavour and hrwsi.worker.

- One worker per Nomad node: worker.name = node name (what pin placement constrains on),
  worker.node_id = node ID, worker.active = the node is ready, eligible and not draining.
- One flavour per node class (flavour placement constrains `${node.class}`); a node without a
  class gets the flavour of its node pool, "nomad-<pool>". A flavour's capacity is what Nomad
  can place on its smallest node: NodeResources minus ReservedResources, disk from Disk.DiskMB, and
  CPU in the node's own cores (NodeResources.Cpu.TotalCpuCores, less the reserved share of its MHz);
  a node that does not give its cores (an agent before 1.1) counts CpuShares / HRWSI_NOMAD_MHZ_PER_CORE.
  Nomad reports a node's MHz as cores x the CPU's clock (client/fingerprint/cpu.go): a 4-core 2600 MHz
  node has CpuShares 10400, which the setting's 1000 made 10.4 cores. A job asks cores x the setting
  in MHz (job_spec), so the sync says once when the nodes' MHz per core is far from the setting.
- Workers synced earlier whose node is gone from Nomad become inactive; workers defined by hand
  (node_id NULL) are left alone. Everything is written in one transaction (sql/queries/nomad.sql).
- Only nodes of the node pool jobs go to (HRWSI_NOMAD_NODE_POOL, default "default"; "all": every
  pool) become workers: Nomad places a job only on nodes of its pool, so a node of another pool
  would be a worker no job can ever run on.
- A running launcher follows node status itself (NomadBackend.worker_activity, node_is_active).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import psycopg

from hrwsi.backends.ascii_decimal import ascii_number
from hrwsi.backends.nomad.client import NomadClient, NomadError
from hrwsi.backends.nomad.config import NomadConfig
from hrwsi.sql_files import query


@dataclass
class SyncReport:
    flavours: dict[str, tuple[float, int, int]] = field(default_factory=dict)  # name -> (cpu, ram_mb, disk_mb)
    active: list[str] = field(default_factory=list)
    inactive: list[str] = field(default_factory=list)       # known to Nomad, but down, ineligible or draining
    vanished: list[str] = field(default_factory=list)       # synced before, no longer in Nomad: deactivated
    skipped: list[str] = field(default_factory=list)        # nodes that could not become workers, and why
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary, then why each skipped node was skipped, then the notes."""
        return [self.summary(), *(f"skipped {reason}" for reason in self.skipped), *self.notes]

    def summary(self) -> str:
        parts = [f"{len(self.flavours)} flavour(s)", f"{len(self.active)} active worker(s)"]
        if self.inactive:
            parts.append(f"{len(self.inactive)} inactive ({', '.join(self.inactive)})")
        if self.vanished:
            parts.append(f"{len(self.vanished)} gone from Nomad ({', '.join(self.vanished)})")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        return ", ".join(parts)


def _number(mapping: Any, *path: str) -> float:
    for key in path:
        if not isinstance(mapping, dict):
            return 0.0
        mapping = mapping.get(key)
    if isinstance(mapping, (int, float)) and not isinstance(mapping, bool):
        return float(mapping) if math.isfinite(mapping) else 0.0
    # (a number Nomad wrote as text: in ASCII decimal notation, as float() read '1_0' as 10 and 'inf')
    return (ascii_number(mapping) or 0.0) if isinstance(mapping, str) else 0.0


# The nodes' MHz per core that far from HRWSI_NOMAD_MHZ_PER_CORE (either way) is said by the sync.
MHZ_PER_CORE_TOLERANCE = 0.25


def node_mhz_per_core(node: dict) -> float | None:
    """The node's MHz per core (CpuShares / TotalCpuCores), or None when it does not give its cores."""
    total = node.get("NodeResources") or {}
    cores, shares = _number(total, "Cpu", "TotalCpuCores"), _number(total, "Cpu", "CpuShares")
    return shares / cores if cores > 0 and shares > 0 else None


def node_capacity(node: dict, mhz_per_core: float = 1000.0) -> tuple[float, int, int] | None:
    """(cores, ram_mb, disk_mb) Nomad can place on the node, or None when the node lists no resources.
    Cores are the node's own when it gives them (less what its reserved MHz take), else its MHz divided by
    mhz_per_core."""
    total, reserved = node.get("NodeResources"), node.get("ReservedResources") or {}
    if total:
        cpu = _number(total, "Cpu", "CpuShares") - _number(reserved, "Cpu", "CpuShares")
        mhz_per_core = node_mhz_per_core(node) or mhz_per_core
        ram = _number(total, "Memory", "MemoryMB") - _number(reserved, "Memory", "MemoryMB")
        disk = _number(total, "Disk", "DiskMB") - _number(reserved, "Disk", "DiskMB")
    elif node.get("Resources"):  # Nomad before 0.9 / a node read without ?resources=true on old agents
        legacy, legacy_reserved = node["Resources"], node.get("Reserved") or {}
        cpu = _number(legacy, "CPU") - _number(legacy_reserved, "CPU")
        ram = _number(legacy, "MemoryMB") - _number(legacy_reserved, "MemoryMB")
        disk = _number(legacy, "DiskMB") - _number(legacy_reserved, "DiskMB")
    else:
        return None
    return round(cpu / mhz_per_core, 3), int(ram), int(disk)


def flavour_of(node: dict) -> str:
    """The node class, else "nomad-<node pool>"."""
    return node.get("NodeClass") or f"nomad-{node.get('NodePool') or 'default'}"


def in_pool(node: dict, node_pool: str) -> bool:
    """Whether jobs of node_pool may run on the node (a node without a pool is in "default")."""
    return node_pool == "all" or (node.get("NodePool") or "default") == node_pool


def node_is_active(node: dict) -> bool:
    return (node.get("Status") == "ready" and node.get("SchedulingEligibility", "eligible") == "eligible"
            and not node.get("Drain"))


def sync_workers(conn: psycopg.Connection, nodes: list[dict], *, mhz_per_core: float = 1000.0,
                 node_pool: str = "default") -> SyncReport:
    """Upsert one flavour per node class (or pool) and one worker per node of node_pool; deactivate vanished ones."""
    report = SyncReport()
    workers: list[dict[str, Any]] = []
    far_off: list[tuple[str, float]] = []  # (node, its MHz per core) far from mhz_per_core
    for node in sorted(nodes, key=lambda n: n.get("Name") or ""):
        name, node_id = node.get("Name"), node.get("ID")
        if not name or not node_id:
            report.skipped.append(f"a node without name or ID ({node_id or name})")
            continue
        if not in_pool(node, node_pool):
            report.skipped.append(f"{name}: in node pool {node.get('NodePool')}, where no hrwsi job goes "
                                  f"(HRWSI_NOMAD_NODE_POOL={node_pool})")
            continue
        capacity = node_capacity(node, mhz_per_core)
        if capacity is None:
            report.skipped.append(f"{name}: no NodeResources (list nodes with ?resources=true)")
            continue
        if min(capacity) <= 0:
            report.skipped.append(f"{name}: nothing left to place after reserved resources {capacity}")
            continue
        flavour = flavour_of(node)
        known = report.flavours.get(flavour)
        if known is not None and known != capacity:
            smallest = (min(known[0], capacity[0]), min(known[1], capacity[1]), min(known[2], capacity[2]))
            report.notes.append(f"flavour {flavour}: nodes differ in size; using the smallest {smallest}")
            capacity = smallest
        report.flavours[flavour] = capacity
        own = node_mhz_per_core(node)
        if own is not None and abs(own - mhz_per_core) > MHZ_PER_CORE_TOLERANCE * mhz_per_core:
            far_off.append((name, own))
        active = node_is_active(node)
        (report.active if active else report.inactive).append(name)
        workers.append({"name": name, "flavour": flavour, "active": active, "node_id": node_id})
    with conn.transaction():
        with conn.cursor() as cursor:
            for flavour, (cpu, ram, disk) in sorted(report.flavours.items()):
                cursor.execute(query("upsert_flavour"), {"name": flavour, "cpu": cpu, "ram_mb": ram, "disk_mb": disk})
            for worker in workers:
                cursor.execute(query("upsert_node_worker"), worker)
            cursor.execute(query("deactivate_vanished_node_workers"), {"node_ids": [w["node_id"] for w in workers]})
            report.vanished = sorted(row[0] for row in cursor.fetchall())
            cursor.execute(query("active_workers_without_a_node"), {"names": [w["name"] for w in workers]})
            without = [row[0] for row in cursor.fetchall()]
    if far_off:
        speeds = sorted({round(mhz) for _, mhz in far_off})
        names = ", ".join(name for name, _ in far_off[:5]) + (f" and {len(far_off) - 5} more" if len(far_off) > 5 else "")
        report.notes.append(
            f"HRWSI_NOMAD_MHZ_PER_CORE is {mhz_per_core:g} but Nomad gives {'-'.join(map(str, speeds))} MHz per core "
            f"on {names}: flavours count the nodes' own cores, and a job asks its cores x {mhz_per_core:g} MHz, "
            f"so a routine gets about {mhz_per_core / speeds[0]:.2g} of the cores it names; set "
            f"HRWSI_NOMAD_MHZ_PER_CORE={speeds[0]} (the launcher's too) for a job to ask whole cores")
    if without:
        report.notes.append(
            f"{len(without)} active worker(s) defined by hand have no Nomad node of that name ({', '.join(without)}): "
            "the Nomad backend can run nothing planned on them (tasks would wait queued); set `active = false` "
            "for them in the configuration if they are not Nomad nodes")
    return report


async def list_nodes(client: NomadClient) -> list[dict]:
    """GET /v1/nodes?resources=true: every client node with NodeResources and ReservedResources."""
    response = await client.call("list Nomad nodes", "nodes", params={"resources": "true"})
    if response.status in (401, 403):
        raise NomadError(response.status, f"Nomad refused to list its nodes (HTTP {response.status}: "
                         f"{response.text.strip()[:200]}): check NOMAD_TOKEN; its policy needs node read")
    if response.status != 200:
        raise NomadError(response.status, f"could not list Nomad nodes (HTTP {response.status}): "
                         f"{response.text.strip()[:200]}")
    return response.json() or []


async def fetch_nodes(config: NomadConfig | None = None, *, retry_log_level: int = logging.WARNING) -> list[dict]:
    """The nodes of the Nomad at config (None: NomadConfig.from_env()), with a client of its own."""
    client = NomadClient(config or NomadConfig.from_env())
    client.retry_log_level = retry_log_level
    try:
        return await list_nodes(client)
    finally:
        client.close()


# How long `hrwsi workers sync` retries a Nomad out of reach: a person waits for it (the services' 120 s
# printed 27 warnings before "unexpected error ... report it").
SYNC_RETRY_FOR_S = 10.0


class NoNodeInPool(ValueError):
    """No Nomad node is in the node pool: syncing would deactivate every worker for a typo."""


def sync_from_nomad(conn: psycopg.Connection, config: NomadConfig | None = None) -> SyncReport:
    """For `hrwsi workers sync` (not inside a running event loop): fetch the nodes, then sync them.
    Nothing is changed when no node is in the node pool (a mistyped HRWSI_NOMAD_NODE_POOL made every
    worker inactive, "gone from Nomad", and succeeded: found by exploratory testing)."""
    config = dataclasses.replace(config or NomadConfig.from_env(), retry_for_s=SYNC_RETRY_FOR_S)
    # (the retries at DEBUG: a Nomad out of reach is the one line of the error that ends them)
    nodes = asyncio.run(fetch_nodes(config, retry_log_level=logging.DEBUG))
    if not any(in_pool(node, config.node_pool) for node in nodes):
        pools = sorted({node.get("NodePool") or "default" for node in nodes})
        raise NoNodeInPool(f"no Nomad node is in node pool {config.node_pool!r} (HRWSI_NOMAD_NODE_POOL; Nomad lists "
                           + (f"{len(nodes)} node(s) in {', '.join(pools)}" if nodes else "no node at all")
                           + "): nothing changed")
    return sync_workers(conn, nodes, mhz_per_core=config.mhz_per_core, node_pool=config.node_pool)
