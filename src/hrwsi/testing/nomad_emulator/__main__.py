"""`python -m hrwsi.testing.nomad_emulator`: run the Nomad API emulator (test double) until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from hrwsi.testing.nomad_emulator.cluster import EmulatedNode
from hrwsi.testing.nomad_emulator.event_stream import FRAMING_RAW, FRAMINGS
from hrwsi.testing.nomad_emulator.server import NomadEmulator

DESCRIPTION = """Nomad API emulator (test double): an HTTP server implementing the subset of
HashiCorp Nomad's API that hrwsi uses (jobs, allocations, evaluations, nodes, blocking queries,
event stream, dispatch, ACL token, GC, namespaces, node pools, regions), scheduling on emulated nodes and running each task's
command as a local process. It is NOT Nomad: use it for demos and tests where no agent exists."""


# The most a node's CPU (MHz), memory or disk (MB) may be: hrwsi keeps a flavour's sizes as a PostgreSQL integer.
SIZE_MAX = 2**31 - 1
# The most identical nodes: more than any cluster hrwsi plans on, and each one is a Python object and a node in
# every /v1/nodes answer (`--nodes 100000000` filled the memory before the emulator answered; found by review).
NODES_MAX = 10_000


def _whole(text: str, least: int, most: int) -> int | None:
    """The whole number text writes in ASCII digits, from least to most, or None. int() took any: a negative size made
    a node of negative capacity, `--nodes -1` no node at all, and `1_0` was 10 (found by review)."""
    from hrwsi.backends.ascii_decimal import ascii_decimal

    number = ascii_decimal(text, max_digits=len(str(most)))
    return number if number is not None and least <= number <= most else None


def _whole_option(least: int, most: int, what: str):
    """An argparse type: a whole number from least to most, or a one-line refusal saying what it is for."""
    def parse(text: str) -> int:
        number = _whole(text, least, most)
        if number is None:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number from {least} to {most:,} ({what})")
        return number
    return parse


def _node(text: str) -> EmulatedNode:
    """NAME[:CPU_MHZ[:MEMORY_MB[:DISK_MB[:CLASS[:POOL]]]]]; each size a whole number from 1 (a node of none, or of a
    negative size, which int() took, is no node a job can be placed on)."""
    parts = text.split(":")
    sizes = [(parts[i] if len(parts) > i and parts[i] else None) for i in (1, 2, 3)]
    read = [default if given is None else _whole(given, 1, SIZE_MAX) for given, default in zip(sizes, (4000, 8192, 50_000))]
    if not parts[0].strip() or None in read:
        raise argparse.ArgumentTypeError(f"--node {text[:40]!r}: expected NAME[:CPU_MHZ[:MEMORY_MB[:DISK_MB[:CLASS"
                                         f"[:POOL]]]]], each size a whole number from 1 to {SIZE_MAX:,}")
    return EmulatedNode(name=parts[0], cpu_mhz=read[0], memory_mb=read[1], disk_mb=read[2],
                        node_class=parts[4] if len(parts) > 4 else "",
                        node_pool=parts[5] if len(parts) > 5 and parts[5] else "default")


def _port(text: str) -> int:
    """A TCP port, 0 to 65535 (0: a free one), in ASCII digits. Any int was taken: `--port 70000` or `-1` ended in
    "unexpected error (OverflowError: bind(): port must be 0-65535.)" once the emulator was starting, and `1_0` was
    port 10, as int() reads it (found by review)."""
    from hrwsi.backends.ascii_decimal import ascii_decimal, is_ascii_decimal

    number = ascii_decimal(text, max_digits=10) if is_ascii_decimal(text) else None
    if number is None or number > 65535:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a port number from 0 to 65535 (0 picks a free one)")
    return number


PROG = "python -m hrwsi.testing.nomad_emulator"


class _OneLineParser(argparse.ArgumentParser):
    """A usage error in one line with exit code 2, naming the command's --help, as every other hrwsi command says
    one (hrwsi.cli.common.usage_error_line): argparse printed its usage, 25 lines naming `python -m
    hrwsi.testing.nomad_emulator` even when run as `hrwsi nomad-emulator`, then the error (found by review)."""

    def error(self, message: str):
        from hrwsi.terminal import SHOWN_MAX, bounded, one_sentence

        said = bounded(" ".join(message.split()).removesuffix("."), one_sentence, limit=2 * SHOWN_MAX)
        self.exit(2, f"error: {said}; see `{self.prog} --help`\n")


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = _OneLineParser(prog=prog, description=DESCRIPTION)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=4646, help="port (default 4646; 0 picks a free one)")
    p.add_argument("--nodes", type=_whole_option(0, NODES_MAX, "how many identical nodes"), default=2,
                   help="how many identical emulated nodes (default 2; 0: only those --node gives)")
    p.add_argument("--node-prefix", default="emulated-node-", help="their names: PREFIX1, PREFIX2, ...")
    p.add_argument("--node-cpu-mhz", type=_whole_option(1, SIZE_MAX, "MHz"), default=4000,
                   help="CPU per node in MHz (default 4000)")
    p.add_argument("--node-memory-mb", type=_whole_option(1, SIZE_MAX, "MB"), default=8192,
                   help="memory per node (default 8192)")
    p.add_argument("--node-disk-mb", type=_whole_option(1, SIZE_MAX, "MB"), default=50_000,
                   help="disk per node (default 50000)")
    p.add_argument("--node-reserved-cpu-mhz", type=_whole_option(0, SIZE_MAX, "MHz"), default=0,
                   help="CPU per node kept from jobs (default 0; less than --node-cpu-mhz)")
    p.add_argument("--node-reserved-memory-mb", type=_whole_option(0, SIZE_MAX, "MB"), default=0,
                   help="memory per node kept from jobs (default 0; less than --node-memory-mb)")
    p.add_argument("--node-reserved-disk-mb", type=_whole_option(0, SIZE_MAX, "MB"), default=0,
                   help="disk per node kept from jobs (default 0; less than --node-disk-mb)")
    p.add_argument("--node-class", default="", help="node class of the identical nodes (hrwsi: a flavour)")
    p.add_argument("--node-pool", default="default")
    p.add_argument("--node", action="append", type=_node, default=[], metavar="SPEC",
                   help="an extra node NAME[:CPU_MHZ[:MEMORY_MB[:DISK_MB[:CLASS[:POOL]]]]] (repeatable)")
    p.add_argument("--acl-token", default=os.environ.get("HRWSI_NOMAD_EMULATOR_ACL_TOKEN"),
                   help="require this X-Nomad-Token (default: $HRWSI_NOMAD_EMULATOR_ACL_TOKEN; none: ACL off)")
    p.add_argument("--gc-interval", type=float, default=300.0, help="seconds between GC passes (default 300)")
    p.add_argument("--job-gc-threshold", type=float, default=4 * 3600.0,
                   help="seconds a dead job is kept before GC (default 14400, Nomad's 4 h)")
    p.add_argument("--event-heartbeat", type=float, default=30.0, help="event stream heartbeat, s (default 30)")
    p.add_argument("--event-stream-framing", choices=FRAMINGS, default=FRAMING_RAW,
                   help="how the event stream travels: raw (Nomad >= 1.11.3 and 2.0, default), raw-http-0.0 "
                        "(1.11.2), chunked-gzip (1.10 to 1.11.1)")
    p.add_argument("--forwarded", action="store_true",
                   help="answer as a client agent or a follower server: RPC errors read 'rpc error: ...'")
    p.add_argument("--fs-through-servers", action="store_true",
                   help="serve the logs as a server agent does, not the allocation's own client: a token without "
                        "read-logs gets HTTP 500 'Permission denied', not 403")
    p.add_argument("--node-docker-volumes", action="store_true",
                   help="the nodes' docker plugin allows host paths (volumes { enabled = true })")
    p.add_argument("--namespace", action="append", default=[], metavar="NAME",
                   help="a namespace besides 'default' (repeatable); a job in another one is refused, as Nomad does")
    p.add_argument("--extra-node-pool", action="append", default=[], metavar="NAME",
                   help="a node pool besides 'default', 'all' and the nodes' own (repeatable)")
    p.add_argument("--region", action="append", default=[], metavar="NAME",
                   help="the servers' region(s), the first the agent's own (default: global); a request for "
                        "another one is refused ('No path to region'), as Nomad does")
    p.add_argument("--work-dir", default=None, help="allocation directories and task logs (default: a temp dir)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def nodes_from_args(args: argparse.Namespace) -> list[EmulatedNode]:
    nodes = [EmulatedNode(name=f"{args.node_prefix}{i}", cpu_mhz=args.node_cpu_mhz, memory_mb=args.node_memory_mb,
                          disk_mb=args.node_disk_mb, reserved_cpu_mhz=args.node_reserved_cpu_mhz,
                          reserved_memory_mb=args.node_reserved_memory_mb,
                          reserved_disk_mb=args.node_reserved_disk_mb, node_class=args.node_class,
                          node_pool=args.node_pool, docker_volumes=args.node_docker_volumes)
             for i in range(1, args.nodes + 1)]
    return nodes + list(args.node)


async def serve(args: argparse.Namespace) -> None:
    emulator = NomadEmulator(nodes_from_args(args), acl_token=args.acl_token, gc_interval=args.gc_interval,
                             job_gc_threshold=args.job_gc_threshold, work_dir=args.work_dir, host=args.host,
                             port=args.port, event_heartbeat=args.event_heartbeat,
                             event_stream_framing=args.event_stream_framing, forwarded=args.forwarded,
                             fs_through_servers=args.fs_through_servers,
                             namespaces=args.namespace, node_pools=args.extra_node_pool,
                             regions=args.region or ("global",))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with emulator:
        print(f"Nomad API emulator (test double) on {emulator.address}: export NOMAD_ADDR={emulator.address}",
              flush=True)
        await stop.wait()


def cluster_problem(args: argparse.Namespace) -> str | None:
    """What makes the options no cluster a job can be placed on, in one line, or None: no node at all, or identical
    nodes whose reserve takes all they have (which made nodes of no or negative free capacity; found by review)."""
    if args.nodes == 0 and not args.node:
        return "--nodes 0 and no --node make no node: give --nodes 1 or more, or --node"
    if args.nodes > 0:
        for kind, unit in (("cpu", "mhz"), ("memory", "mb"), ("disk", "mb")):
            total, reserved = getattr(args, f"node_{kind}_{unit}"), getattr(args, f"node_reserved_{kind}_{unit}")
            if reserved >= total:
                return (f"--node-reserved-{kind}-{unit} {reserved} leaves the nodes no {kind.replace('cpu', 'CPU')} "
                        f"(--node-{kind}-{unit} {total}): reserve less than they have")
    return None


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Run the emulator; `prog` is the command that runs it, as its help and usage errors name it."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    problem = cluster_problem(args)
    if problem:
        parser.error(problem)  # (one line, exit code 2: _OneLineParser)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("hrwsi.testing.nomad_emulator").info("starting the Nomad API emulator (test double)")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
