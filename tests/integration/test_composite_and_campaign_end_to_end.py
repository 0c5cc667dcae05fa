"""End to end, on the local backend and on the Nomad API emulator (the project's one test double):
a multi-input routine (GFSC-like: FSC + SWS of a tile and day) reads its members from its manifest,
then a reprocessing campaign runs a new version of snow_cover beside the old products and chains
its new products downstream within the campaign (ADR 0010)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hrwsi import campaigns, timeliness
from hrwsi.cli.common import to_json
from hrwsi.demo import synthetic_scene
from hrwsi.routines.raster import Raster, product_name
from hrwsi.testing.nomad_emulator import EmulatedNode, NomadEmulator
from tests.integration.conftest import running, wait_until

DAY = (datetime.now(UTC) - timedelta(days=2)).replace(hour=8, minute=0, second=0, microsecond=0)
TIMEOUT = 180.0  # a liveness guard on a slow shared machine, not a timing assertion

# snow_cover v2: the shipped program, then a mark in each product it wrote, so a test can tell versions apart.
SNOW_COVER_V2 = """
import json, pathlib, runpy, sys
output = pathlib.Path(sys.argv[sys.argv.index("--output-dir") + 1])
runpy.run_module("hrwsi.routines.snow_cover", run_name="__main__")
for path in output.iterdir():
    data = json.loads(path.read_text())
    data["metadata"]["version"] = "v2"
    path.write_text(json.dumps(data))
"""


def configuration() -> dict:
    def routine(name, module, reads, writes, **extra):
        return {"name": name, "cpu": 1, "ram_mb": 1000, "storage_mb": 500, "expected_duration_s": 1,
                "timeout_s": 120, "command": [sys.executable, "-m", f"hrwsi.routines.{module}"],
                "input_product_type": reads, "output_product_type": writes, **extra}

    return {
        "flavour": [{"name": "large", "cpu": 4, "ram_mb": 16000, "disk_mb": 50000}],
        "worker": [{"prefix": "w", "count": 3, "flavour": "large"}],
        "routine": [routine("atmospheric_correction", "atmospheric_correction", "L1C", "L2A",
                            sequential_per_tile=True),
                    routine("snow_cover", "snow_cover", "L2A", "FSC"),
                    routine("wet_snow", "wet_snow", "L2A", "SWS"),
                    routine("gfsc", "gfsc", "FSC", "GFSC"),
                    routine("quicklook", "quicklook", "FSC", "QUICKLOOK")],
        "condition": [{"name": "l1c", "routine": "atmospheric_correction", "lane": "nrt"},
                      {"name": "l2a_snow", "routine": "snow_cover", "deadline_hours": 1,
                       "deadline_from": "publication"},
                      {"name": "l2a_wet", "routine": "wet_snow"},
                      {"name": "fsc_quicklook", "routine": "quicklook"},
                      {"name": "gfsc_daily", "routine": "gfsc",
                       "multi_input": {"requires": [{"product_type": "FSC"}, {"product_type": "SWS"}]}}],
    }


@pytest.fixture(params=["local", "nomad"])
async def backend(request, db, configure, tmp_path, monkeypatch):
    """The configuration loaded; for "nomad", an emulated node per worker (same names) and NOMAD_ADDR."""
    configure(configuration())
    if request.param == "local":
        yield "local"
        return
    names = [r[0] for r in db.execute("SELECT name FROM hrwsi.worker ORDER BY name")]
    nodes = [EmulatedNode(name, cpu_mhz=4000, memory_mb=16000, disk_mb=50000) for name in names]
    async with NomadEmulator(nodes, work_dir=tmp_path / "nomad") as emulator:
        monkeypatch.setenv("NOMAD_ADDR", emulator.address)
        monkeypatch.setenv("HRWSI_NOMAD_MHZ_PER_CORE", "1000")
        monkeypatch.delenv("NOMAD_TOKEN", raising=False)
        yield "nomad"


def write_scenes(directory: Path) -> list[tuple]:
    """Two scenes of 32TLR on one day, one of 31TGL."""
    directory.mkdir()
    rows = []
    for seed, (tile, measured) in enumerate([("32TLR", DAY), ("32TLR", DAY + timedelta(hours=4)),
                                             ("31TGL", DAY + timedelta(hours=1))]):
        scene = synthetic_scene(tile, measured, seed, "S2A")
        path = directory / product_name("S2A", "L1C", scene.measured_at, tile)
        scene.write(path)
        rows.append(("l1c", str(path), tile, measured, measured + timedelta(minutes=30)))
    return rows


def products(db, product_type: str) -> dict[str, int | None]:
    """path -> campaign of the task that made it."""
    return dict(db.execute("""SELECT p.path, t.campaign_id FROM hrwsi.product p
                              JOIN hrwsi.processing_task t ON t.id = p.task_id
                              WHERE p.product_type = %s""", (product_type,)).fetchall())


async def test_a_composite_reads_its_members_then_a_campaign_reprocesses_beside_the_old_products(
        db, database_url, settings, backend, tmp_path):
    script = tmp_path / "snow_cover_v2.py"
    script.write_text(SNOW_COVER_V2)
    async with running(database_url, ["harvester", "orchestrator", "launcher"], settings, backend=backend):
        db.execute("""INSERT INTO hrwsi.input (processing_condition, input_path, tile, measured_at, published_at)
                      SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[],
                                           %s::timestamptz[])""", [list(c) for c in zip(*write_scenes(tmp_path / "l1c"))])
        await wait_until(database_url, "SELECT count(*) = 2 FROM hrwsi.product WHERE product_type = 'GFSC'",
                         timeout=TIMEOUT)
        await wait_until(database_url, "SELECT count(*) = 0 FROM hrwsi.processing_task WHERE state <> 'processed'",
                         timeout=TIMEOUT)
        check_the_composites(db)

        started = campaigns.start(db, campaigns.CampaignRequest(
            DAY - timedelta(days=1), DAY + timedelta(days=1), routine="snow_cover",
            command=(sys.executable, str(script)), name="snow cover v2"))
        assert started["tasks"] == 3
        await wait_until(database_url, "SELECT count(*) = 2 AND bool_and(finished_at IS NOT NULL) "
                                       "FROM hrwsi.campaign_progress WHERE campaign_id = $1",
                         started["campaign_id"], timeout=TIMEOUT)
    check_the_campaign(db, started["campaign_id"], str(script))


def check_the_composites(db) -> None:
    for path, members in db.execute("""SELECT p.path, array_agg(m.member_path ORDER BY m.member_path)
                                       FROM hrwsi.product p JOIN hrwsi.processing_task t ON t.id = p.task_id
                                       JOIN hrwsi.multi_input_member m ON m.input_id = t.input_id
                                       WHERE p.product_type = 'GFSC' GROUP BY p.path"""):
        composite = Raster.read(path)
        assert sorted(composite.metadata["members"]) == members, "the routine read the members of its manifest"
        assert {"FSC", "SWS"} <= {Raster.read(m).product_type for m in members}
        assert {Raster.read(m).tile for m in members} == {composite.tile}
        assert set(composite.bands) == {"gfsc", "wet_snow"}


def check_the_campaign(db, campaign_id: int, script: str) -> None:
    fsc = products(db, "FSC")
    old = [p for p, c in fsc.items() if c is None]
    new = [p for p, c in fsc.items() if c == campaign_id]
    assert len(old) == 3 and len(new) == 3, "the old products are kept; the new ones are beside them"
    assert all(Path(p).exists() for p in old + new)
    assert all(Raster.read(p).metadata.get("version") == "v2" for p in new)
    assert not any(Raster.read(p).metadata.get("version") for p in old)
    versions = dict(db.execute("""SELECT t.campaign_id IS NOT NULL, array_agg(DISTINCT j.routine_version)
                                  FROM hrwsi.job j JOIN hrwsi.processing_task t ON t.id = j.task_id
                                  WHERE t.routine = 'snow_cover' AND j.state = 'processed' GROUP BY 1""").fetchall())
    assert versions == {False: [f"{sys.executable} -m hrwsi.routines.snow_cover"], True: [f"{sys.executable} {script}"]}
    # Chained downstream within the campaign: new quicklooks of the new FSC, in the archive lane ...
    quicklooks = products(db, "QUICKLOOK")
    assert sorted(c is None for c in quicklooks.values()) == [False] * 3 + [True] * 3
    lanes = {r[0] for r in db.execute("SELECT lane FROM hrwsi.processing_task WHERE campaign_id = %s", (campaign_id,))}
    assert lanes == {"archive"}
    # ... but a multi-input group is made once, from production products only (ADR 0010).
    assert len(products(db, "GFSC")) == 2
    [shown] = campaigns.load(db, campaign_id)
    assert shown.status == "finished"
    assert {r["routine"]: (r["tasks"], r["processed"], r["products"]) for r in shown.routines} == {
        "snow_cover": (3, 3, 3), "quicklook": (3, 3, 3)}
    report = timeliness.report(db, timeliness.Filters(routine="snow_cover"))
    by_lane = {row["lane"]: row for row in report["summary"]}
    assert by_lane["nrt"]["products"] == 3 and by_lane["nrt"]["with_deadline"] == 3
    assert "archive" not in by_lane, "a campaign's products, of scenes sensed long before, are not production's (0122)"
    assert json.loads(to_json(report))["filters"]["routine"] == "snow_cover"
