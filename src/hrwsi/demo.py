"""`hrwsi demo`: the whole loop on one machine, on sample data, with live progress.

It uses a database of its own (`hrwsi_demo`, or the name `--database` gives, recreated on every run) on
the embedded server or on the server HRWSI_DATABASE_URL names, loads the sample configuration, writes synthetic L1C scenes,
inserts them as inputs with plain SQL (and drops more into a landing directory for the harvester),
runs the three services in this process, and prints a summary once everything is processed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import shlex
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from rich.console import Console
from rich.live import Live
from rich.table import Table

from hrwsi import migrations
from hrwsi.app import SERVICE_KINDS, App
from hrwsi.configuration import load_file
from hrwsi.database import redact, start_embedded, with_database
from hrwsi.routines.raster import Raster, product_name
from hrwsi.service_logging import TextFormatter
from hrwsi.settings import Settings
from hrwsi.sql_files import query
from hrwsi.terminal import visible

DEMO_DATABASE = "hrwsi_demo"
# Written on the database the demo creates (COMMENT ON DATABASE, which only its owner may set) and checked
# before the demo drops one of its name: the demo recreated `hrwsi_demo` on whatever server
# HRWSI_DATABASE_URL named, with FORCE, so a user's database of that name (and the sessions of the services
# using it) went with it (found by a helper on a real server).
DEMO_MARKER = "hrwsi demo: created by `hrwsi demo`, which drops and recreates it on every run"
CONFIGURATION = Path(__file__).parent / "demo_data" / "configuration.toml"
TILES = ("32TLR", "32TMS", "31TGL", "32TNS")
ROUTINES = ("atmospheric_correction", "snow_cover", "wet_snow", "quicklook", "gfsc")
SIZE = 96  # pixels per side of a sample scene

INSERT_INPUTS_SQL = """INSERT INTO hrwsi.input (processing_condition, input_path, tile, mission, measured_at, published_at)
SELECT 'l1c_recent', path, tile, mission, measured_at, published_at
FROM unnest(%(paths)s::text[], %(tiles)s::text[], %(missions)s::text[], %(measured)s::timestamptz[],
            %(published)s::timestamptz[]) AS s(path, tile, mission, measured_at, published_at)"""


def synthetic_scene(tile: str, measured_at: datetime, seed: int, mission: str) -> Raster:
    """A mountain whose upper slopes are snow-covered, with a patch of cloud: L1C digital numbers."""
    rng = random.Random(seed)
    peak_x, peak_y = rng.uniform(0.3, 0.7) * SIZE, rng.uniform(0.3, 0.7) * SIZE
    snow_line = rng.uniform(0.35, 0.6)
    cloud_x, cloud_y, cloud_r = rng.uniform(0, SIZE), rng.uniform(0, SIZE), rng.uniform(6, 18)
    bands: dict[str, list[float]] = {"green": [], "red": [], "nir": [], "swir": []}
    for y in range(SIZE):
        for x in range(SIZE):
            height = max(0.0, 1 - math.hypot(x - peak_x, y - peak_y) / (0.6 * SIZE))
            cloud = math.hypot(x - cloud_x, y - cloud_y) < cloud_r
            noise = rng.uniform(-150, 150)
            if cloud:
                values = (7200, 7000, 7400, 5200)
            elif height > snow_line:
                values = (7800, 7600, 6900, 900)   # snow: bright visible, dark SWIR
            else:
                values = (1100, 1000, 2900, 2300)  # rock and meadow
            for name, value in zip(bands, values):
                bands[name].append(max(0.0, value + noise + 400))  # + path radiance
    return Raster("L1C", tile, measured_at.isoformat().replace("+00:00", "Z"), SIZE, SIZE, bands,
                  {"mission": mission})


def _age(round_: int) -> timedelta:
    """How long before `now` a round of len(TILES) scenes was measured: half a day apart from 3 days
    and an hour ago up to an hour ago (rounds 0-6, the default demo's), then further back before round
    0, so that any number of scenes is in the past (the database refuses an input measured or published
    in the future). The extra half hour keeps them clear of the landing scenes, dated a day before."""
    if round_ <= 6:
        return timedelta(days=3 - round_ * 0.5, hours=1)
    return timedelta(days=3 + (round_ - 6) * 0.5, hours=1, minutes=30)


def write_scenes(directory: Path, count: int, now: datetime, *, first_seed: int = 0,
                 flaky_index: int | None = None) -> list[dict]:
    directory.mkdir(parents=True, exist_ok=True)
    scenes = []
    for index in range(count):
        tile = TILES[index % len(TILES)]
        measured = (now - _age(index // len(TILES))).replace(microsecond=0)
        mission = "S2A" if index % 2 == 0 else "S2B"
        scene = synthetic_scene(tile, measured, first_seed + index, mission)
        if index == flaky_index:
            scene.metadata["inject_transient_fault"] = True
        path = directory / product_name(mission, "L1C", scene.measured_at, tile)
        scene.write(path)
        scenes.append({"path": str(path), "tile": tile, "mission": mission, "measured_at": measured,
                       "published_at": measured + timedelta(minutes=40)})
    return scenes


class DemoRefused(Exception):
    """The demo will not recreate its database: the message says why and what to do."""


def prepare_database(settings: Settings, name: str = DEMO_DATABASE) -> str:
    """A fresh demo database `name`, migrated and marked as the demo's; returns its URL. One of that name
    is dropped first only when it carries the demo's marker and no other session uses it (DemoRefused)."""
    server = settings.database_url or start_embedded(settings.pgdata, "postgres", restart_stale=True)
    ident = psycopg.sql.Identifier(name)
    with psycopg.connect(with_database(server, "postgres"), autocommit=True) as conn:
        found = conn.execute(query("demo_database_marker"), {"name": name}).fetchone()
        if found is not None:
            comment = found[0]
            if comment is None and settings.database_url is None and _an_earlier_demos(with_database(server, name)):
                comment = DEMO_MARKER
            where = f"database {visible(name)!r} ({visible(redact(with_database(server, name)))})"
            if comment != DEMO_MARKER:
                raise DemoRefused(f"{where} was not created by `hrwsi demo` (it lacks the demo's marker), so the demo "
                                  f"will not drop it: run the demo with --database <another name>, or drop it yourself")
            try:
                # Without FORCE: PostgreSQL waits a few seconds for sessions that are ending (a connection just
                # closed, ours included) and fails while one is still open, which is named, never ended.
                conn.execute(psycopg.sql.SQL("DROP DATABASE {}").format(ident))
            except psycopg.errors.ObjectInUse:
                raise DemoRefused(_in_use(conn, where, name)) from None
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(ident))
        # COMMENT takes no parameter: the marker, a constant, is quoted as a literal.
        conn.execute(psycopg.sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident, psycopg.sql.Literal(DEMO_MARKER)))
    url = with_database(server, name)
    with psycopg.connect(url) as conn:
        migrations.migrate(conn)
    return url


def _an_earlier_demos(url: str) -> bool:
    """Whether the database of `url` is one a demo made before it marked its database: on hrwsi's own embedded
    server, one holding the landing source every demo registers (`make demo` after an upgrade recreates it, as
    before, rather than refusing the database the previous version's demo left)."""
    with psycopg.connect(url, autocommit=True) as conn:
        if not conn.execute(query("demo_has_harvest_sources")).fetchone()[0]:
            return False
        return conn.execute(query("demo_has_the_demos_landing_source")).fetchone()[0]


def _in_use(conn: psycopg.Connection, where: str, name: str) -> str:
    """Why the demo will not drop database `name`: the other sessions on it, named."""
    sessions = conn.execute(query("demo_database_sessions"), {"name": name}).fetchall()
    named = "; ".join(f"pid {pid} user {visible(user)!r} application {visible(app or '')!r}"
                      + (f" from {client}" if client else "") for pid, user, app, client in sessions)
    who = f"{len(sessions)} other session(s) ({named})" if sessions else "another session"
    return (f"{where} is in use by {who}, "
            f"which the demo does not end: stop them (e.g. the demo's `hrwsi up`) and run it again, or run it with "
            f"--database <another name>")


def progress_table(conn: psycopg.Connection, elapsed: float) -> tuple[Table, dict]:
    rows = conn.execute(
        "SELECT routine, state, count(*) FROM hrwsi.processing_task GROUP BY routine, state").fetchall()
    per: dict[str, dict[str, int]] = {}
    for routine, state, n in rows:
        per.setdefault(routine, {})[state] = n
    states = ("pending", "planned", "dispatched", "running", "processed", "terminated")
    table = Table(title=f"hrwsi demo — {elapsed:5.1f} s")
    table.add_column("routine")
    for state in states:
        table.add_column(state, justify="right")
    for routine in ROUTINES:
        counts = per.get(routine, {})
        running = counts.get("running", 0) + counts.get("queued", 0)
        table.add_row(routine, *(str(running if s == "running" else counts.get(s, 0)) for s in states))
    return table, per


def quiescent(conn: psycopg.Connection) -> bool:
    """Nothing left to do: no input without a task, no product not chained, no task not final."""
    return conn.execute("""
        SELECT NOT EXISTS (SELECT 1 FROM hrwsi.product WHERE chained_at IS NULL)
           AND NOT EXISTS (SELECT 1 FROM hrwsi.processing_task
                           WHERE state NOT IN ('processed', 'terminated', 'cancelled'))
           AND EXISTS (SELECT 1 FROM hrwsi.processing_task)""").fetchone()[0]


async def _run_loop(url: str, settings: Settings, backend: str, console: Console, expected_tasks: int,
                    timeout_s: float, after_start=None) -> bool:
    started = time.monotonic()
    done = False
    async with App(url, SERVICE_KINDS, settings, backend=backend, pool_size=12) as app:
        if after_start:
            await after_start()
        with psycopg.connect(url, autocommit=True) as conn, Live(console=console, refresh_per_second=4) as live:
            while time.monotonic() - started < timeout_s:
                table, per = progress_table(conn, time.monotonic() - started)
                live.update(table)
                total = sum(sum(c.values()) for c in per.values())
                if total >= expected_tasks and quiescent(conn):
                    done = True
                    break
                if app.died():
                    break  # a service ended on its own: the summary will show where things stopped
                await asyncio.sleep(0.25)
            table, _ = progress_table(conn, time.monotonic() - started)
            live.update(table)
    return done


def run_demo(settings: Settings, console: Console, *, inputs: int = 12, backend: str = "local",
             home: Path | None = None, timeout_s: float = 300.0, verbose: bool = False,
             database: str = DEMO_DATABASE) -> bool:
    demo_home = (home or settings.home / "demo").resolve()
    # A quick heartbeat that fits the lease it is given (Settings refuses a lease one late beat loses).
    demo_settings = dataclasses.replace(settings, home=demo_home, backstop_poll_s=1.0, landing_scan_s=1.0,
                                        retry_backoff_s=1.0, landing_roots=None,
                                        heartbeat_s=min(2.0, settings.lease_timeout_s / 3))
    log_file = demo_home / "demo.log"
    console.print(f"[bold]hrwsi demo[/bold]: {inputs} sample L1C scene(s), {backend} backend, files in {demo_home}",
                  highlight=False)
    console.print(f"logs (the services', and the embedded PostgreSQL server's start-up): {log_file}",
                  style="dim", highlight=False)
    # The database first, and the previous demo's home removed only once that is done: a refused demo (its database
    # used by the previous demo's `hrwsi up`, say) leaves that home, and the services working in it, alone.
    with tempfile.TemporaryDirectory(prefix="hrwsi-demo-") as scratch:
        with logs_to_file(Path(scratch) / "demo.log", verbose):
            url = prepare_database(settings, database)
        if demo_home.exists():
            shutil.rmtree(demo_home)
        demo_home.mkdir(parents=True)
        shutil.copyfile(Path(scratch) / "demo.log", log_file)
    with logs_to_file(log_file, verbose):  # (appends to the start-up's log)
        with psycopg.connect(url, autocommit=True) as conn:
            counts = load_file(conn, CONFIGURATION)
            console.print(f"loaded {CONFIGURATION.name}: " + ", ".join(f"{n} {k}" for k, n in counts.items()),
                          highlight=False)
            now = datetime.now(UTC)
            scenes = write_scenes(demo_home / "catalogue", inputs, now, flaky_index=min(1, inputs - 1))
            console.print("a data engineer's INSERT of the sample inputs:", style="dim")
            console.print(INSERT_INPUTS_SQL, style="dim", highlight=False)
            conn.execute(INSERT_INPUTS_SQL, {
                "paths": [s["path"] for s in scenes], "tiles": [s["tile"] for s in scenes],
                "missions": [s["mission"] for s in scenes], "measured": [s["measured_at"] for s in scenes],
                "published": [s["published_at"] for s in scenes]})
            landing_scenes = _register_landing_source(conn, demo_home, now, inputs)
        every_scene = scenes + landing_scenes  # each routine runs once per scene; gfsc once per tile and day
        composites = {(s["tile"], s["measured_at"].astimezone(UTC).date()) for s in every_scene}
        expected = len(every_scene) * (len(ROUTINES) - 1) + len(composites)
        backend_name, emulator = _backend_for(backend)
        done = asyncio.run(_with_backend(emulator, lambda: _run_loop(
            url, demo_settings, backend_name, console, expected, timeout_s)))
    with psycopg.connect(url, autocommit=True) as conn:
        ok = print_summary(conn, console, demo_home, done, url, backend)
    return ok


@contextlib.contextmanager
def logs_to_file(path: Path, verbose: bool):
    """Every log record (hrwsi's services, the embedded server's start-up, asyncpg) goes to `path`, and
    to stderr only when `verbose`: the terminal keeps the progress table and the summary."""
    root = logging.getLogger()
    saved = (root.level, root.handlers[:])
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(TextFormatter())
    root.handlers = [handler]
    if verbose:
        stderr = logging.StreamHandler()
        stderr.setFormatter(handler.formatter)
        root.handlers.append(stderr)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.handlers = saved[1]
        root.setLevel(saved[0])
        handler.close()


def _register_landing_source(conn: psycopg.Connection, demo_home: Path, now: datetime, inputs: int) -> list[dict]:
    """Drop two more scenes in a landing directory the harvester scans; returns them."""
    from hrwsi.harvest.landing_source import register_source

    directory = demo_home / "harvest" / "landing"  # under the landing root: HRWSI_HOME/harvest by default
    count = 2
    scenes = write_scenes(directory, count, now - timedelta(days=1), first_seed=1000)
    register_source(conn, name="demo_landing", directory=directory, work_directory=demo_home / "harvest" / "work",
                    product_type="L1C", settle_s=0.5, interval_s=1.0)
    return scenes


BACKENDS = ("local", "nomad-emulator")


def _backend_for(backend: str) -> tuple[str, object | None]:
    if backend == "local":
        return "local", None
    if backend == "nomad-emulator":
        return "nomad", "emulator"
    raise ValueError(f"unknown demo backend {backend!r}: local or nomad-emulator")


async def _with_backend(emulator, run):
    if emulator is None:
        return await run()
    from hrwsi.testing.nomad_emulator.demo import emulated_cluster

    async with emulated_cluster():
        return await run()


def hrwsi_command() -> str:
    """How to run this hrwsi again from the same shell, as typed: the script that runs now (relative to
    the current directory when it is below it, e.g. .venv/bin/hrwsi), or `python -m hrwsi` with this
    interpreter. A bare `hrwsi` would need the virtual environment on PATH."""
    script = Path(sys.argv[0])
    if script.name != "hrwsi" or not script.is_file():
        return f"{shlex.quote(sys.executable)} -m hrwsi"
    script = script.absolute()
    try:
        shown = str(script.relative_to(Path.cwd()))
        shown = shown if "/" in shown else f"./{shown}"
    except ValueError:
        shown = str(script)
    return shlex.quote(shown)


def inspection_hints(conn: psycopg.Connection, url: str, retried: list, demo_home: Path) -> list[str]:
    """Commands that look into the demo's database, each runnable as printed (after the first)."""
    hrwsi = hrwsi_command()
    hints = [f"export HRWSI_DATABASE_URL={shlex.quote(url)}", f"{hrwsi} status", f"{hrwsi} tasks --limit 10"]
    if retried:
        task_id = retried[0][0]
        hints += [f"{hrwsi} task show {task_id}", f"{hrwsi} logs {task_id} --attempt 1"]
    quicklook = conn.execute(query("demo_a_quicklook")).fetchone()
    if quicklook:
        hints.append(f"{hrwsi} lineage {shlex.quote(Path(quicklook[0]).name)}")
    largest = conn.execute(query("report_largest_plan")).fetchone()
    if largest:
        hints.append(f"{hrwsi} plan show --id {largest[0]} --plot {shlex.quote(str(demo_home / 'plan.png'))}")
    hints += [f"{hrwsi} alerts", f"{hrwsi} prune --dry-run"]
    return hints


def services_hint(demo_home: Path, backend: str = "local") -> str:
    """`hrwsi up` on the demo's database (after the hints' export), as the demo ran its services: with the demo's home as
    HRWSI_HOME. With the user's own HRWSI_HOME, the harvester refused the demo's landing source, which lies outside
    that home's landing root (HRWSI_LANDING_ROOTS, HRWSI_HOME/harvest), and new products went outside the demo's home
    (found walking README through)."""
    # The emulated cluster ended with the demo: `hrwsi up` on the Nomad backend would find no agent at NOMAD_ADDR.
    on = " --backend local" if backend == "nomad-emulator" else ""
    return f"HRWSI_HOME={shlex.quote(str(demo_home))} {hrwsi_command()} up{on}"


def print_summary(conn: psycopg.Connection, console: Console, demo_home: Path, done: bool, url: str,
                  backend: str = "local") -> bool:
    tasks = dict(conn.execute(query("report_task_counts")).fetchall())
    products = dict(conn.execute(query("report_products")).fetchall())
    retried = conn.execute(query("demo_retried_tasks")).fetchall()
    actual = conn.execute(query("report_actual_makespan")).fetchone()[0] or 0.0
    plans = conn.execute(query("demo_plan_figures")).fetchone()
    planned = conn.execute(query("report_planned_makespan")).fetchone()[0] or 0.0
    console.line()  # the live table's last line ends without a newline when the output is not a terminal
    console.print("[bold]summary[/bold]")
    console.print("  tasks per state: " + ", ".join(f"{s} {n}" for s, n in sorted(tasks.items())), highlight=False)
    console.print("  products: " + ", ".join(f"{t} {n}" for t, n in sorted(products.items())), highlight=False)
    if plans[0]:
        console.print(f"  plans: {plans[0]} (largest: makespan {plans[1] or 0:.1f} s, lower bound {plans[2] or 0:.1f} s, "
                      f"{plans[3] or 0} VMs)", highlight=False)
    else:  # (it said "plans: 0 (largest: makespan 0.0 s, lower bound 0.0 s, 0 VMs)")
        console.print("  plans: none (every task started at once on free capacity: the launcher's fast path)",
                      highlight=False)
    console.print(f"  makespan: planned {planned:.1f} s (from expected durations), actual {actual:.1f} s",
                  highlight=False)
    for task_id, attempts in retried:
        console.print(f"  task {task_id} needed {attempts} attempts (see `task show {task_id}` below)",
                      highlight=False)
    console.print(f"  logs: {demo_home / 'data' / 'logs'}; the services' log: {demo_home / 'demo.log'}",
                  highlight=False, soft_wrap=True)
    console.print(f"  products: {demo_home / 'data' / 'products'}", highlight=False, soft_wrap=True)
    largest = conn.execute(query("report_largest_plan")).fetchone()
    if largest:
        from hrwsi.plan_chart import render_gantt
        from hrwsi.reports import load_plan

        _, plan, plan_tasks, plan_workers, budgets = load_plan(conn, largest[0])
        chart = demo_home / "plan.png"
        render_gantt(plan, plan_tasks, plan_workers, budgets, path=str(chart), title=f"hrwsi demo: plan {largest[0]}")
        console.print(f"  the largest plan as a Gantt chart: {chart}", highlight=False, soft_wrap=True)
    quicklooks = sorted((demo_home / "data" / "products").glob("*/quicklook/**/*.png"))
    if quicklooks:
        console.print(f"  a quicklook: {quicklooks[0]}", highlight=False, soft_wrap=True)
    # (after --backend nomad-emulator, `task show` printed Nomad UI links to NOMAD_ADDR, 127.0.0.1:4646 by default,
    # where nothing listens, and the services hint said "as the demo ran them" of a local `hrwsi up`)
    emulated = backend == "nomad-emulator"
    gone = "; the emulated Nomad cluster ended with the demo, so the Nomad UI links `task show` prints lead nowhere"
    console.print(f"inspect it (the demo's database stays until the next demo{gone if emulated else ''}):",
                  highlight=False)
    for hint in inspection_hints(conn, url, retried, demo_home):
        console.print(f"  $ {hint}", highlight=False, soft_wrap=True, markup=False)
    how = ("on the local backend (the emulated Nomad cluster ended with the demo)" if emulated
           else "as the demo ran them")
    console.print(f"run its services again {how}, in its home (its landing directory is under the landing "
                  "root there; Ctrl-C stops them):", highlight=False)
    console.print(f"  $ {services_hint(demo_home, backend)}", highlight=False, soft_wrap=True, markup=False)
    ok = done and set(tasks) == {"processed"}
    console.print("[green]everything processed[/green]" if ok else
                  "[red]the demo did not finish: see the states above and `hrwsi status`[/red]")
    return ok
