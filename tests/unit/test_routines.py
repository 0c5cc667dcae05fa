"""The demo's routines compute real products from their inputs."""

import json
import subprocess
import sys
from datetime import UTC, datetime

from hrwsi.demo import synthetic_scene, write_scenes
from hrwsi.routines.gfsc import composite
from hrwsi.routines.raster import Raster
from hrwsi.routines.snow_cover import CLOUD, snow_fraction
from hrwsi.routines.wet_snow import NO_DATA, wet_snow


def run(module, input_path, output_dir, attempt=1):
    return subprocess.run([sys.executable, "-m", f"hrwsi.routines.{module}", "--input", str(input_path),
                           "--output-dir", str(output_dir)], capture_output=True, text=True,
                          env={"HRWSI_ATTEMPT": str(attempt), "PATH": "/usr/bin:/bin"})


def test_snow_fraction_follows_ndsi():
    assert snow_fraction(0.8, 0.1) == 100.0
    assert snow_fraction(0.2, 0.3) == 0.0
    assert 0 < snow_fraction(0.4, 0.25) < 100
    assert snow_fraction(0.0, 0.0) == 0.0


def test_chain_l1c_to_quicklook(tmp_path):
    scene = write_scenes(tmp_path / "in", 1, datetime(2026, 1, 5, tzinfo=UTC))[0]
    l2a_dir, fsc_dir, ql_dir = tmp_path / "l2a", tmp_path / "fsc", tmp_path / "ql"
    for d in (l2a_dir, fsc_dir, ql_dir):
        d.mkdir()
    assert run("atmospheric_correction", scene["path"], l2a_dir).returncode == 0
    (l2a,) = l2a_dir.iterdir()
    assert Raster.read(l2a).product_type == "L2A"
    assert run("snow_cover", l2a, fsc_dir).returncode == 0
    (fsc_file,) = fsc_dir.iterdir()
    fsc = Raster.read(fsc_file).bands["fsc"]
    assert any(0 < v <= 100 for v in fsc), "the synthetic mountain has snow"
    assert any(v == 0 for v in fsc), "and snow-free ground"
    assert any(v == CLOUD for v in fsc), "and a cloud"
    assert run("quicklook", fsc_file, ql_dir).returncode == 0
    (png,) = ql_dir.iterdir()
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_flaky_input_fails_once_with_external_error_code(tmp_path):
    scene = synthetic_scene("32TLR", datetime(2026, 1, 5, tzinfo=UTC), 1, "S2A")
    l2a = Raster("L2A", scene.tile, scene.measured_at, scene.width, scene.height,
                 {**scene.bands, "cloud": [0.0] * (scene.width * scene.height)}, {"inject_transient_fault": True})
    path = l2a.write(tmp_path / "flaky.json")
    first = run("snow_cover", path, tmp_path, attempt=1)
    assert first.returncode == 210 and "transient" in first.stderr
    assert run("snow_cover", path, tmp_path, attempt=2).returncode == 0


def test_missing_input_is_an_external_error(tmp_path):
    assert run("snow_cover", tmp_path / "missing.json", tmp_path).returncode == 210


def test_unreadable_input_is_an_internal_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"product_type": "L2A"}))
    assert run("snow_cover", bad, tmp_path).returncode == 1


def test_wet_snow_is_the_snow_near_snow_free_ground_and_unknown_under_cloud():
    # one row of 9 pixels: ground, then snow; the last pixel is under a cloud
    snow = [False, True, True, True, True, True, True, True, False]
    cloud = [False] * 8 + [True]
    assert wet_snow(9, 1, snow, cloud) == [0, 1, 1, 1, 0, 0, 0, 0, NO_DATA]


def test_the_composite_takes_the_latest_clear_snow_cover_and_fills_clouds_with_wet_snow():
    earlier = [10.0, CLOUD, CLOUD, 40.0]
    later = [20.0, 30.0, CLOUD, CLOUD]
    wets = [[0, 0, 1, NO_DATA], [NO_DATA, NO_DATA, NO_DATA, NO_DATA]]
    assert composite([earlier, later], wets) == ([20.0, 30.0, 100.0, 40.0], [0, 0, 1, NO_DATA])
    assert composite([[CLOUD]], [[0]]) == ([CLOUD], [0]), "dry or no snow under the cloud: still unknown"


def run_composite(manifest, output_dir):
    return subprocess.run([sys.executable, "-m", "hrwsi.routines.gfsc", "--input", "multi_input/g/32TLR/2026-01-05",
                           "--output-dir", str(output_dir), "--manifest", str(manifest)], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin"})


def test_the_gfsc_routine_reads_its_members_from_the_manifest(tmp_path):
    scene = write_scenes(tmp_path / "in", 1, datetime(2026, 1, 5, tzinfo=UTC))[0]
    paths = {}
    for module, kind in (("atmospheric_correction", "L2A"), ("snow_cover", "FSC"), ("wet_snow", "SWS")):
        out = tmp_path / kind
        out.mkdir()
        source = scene["path"] if kind == "L2A" else paths["L2A"]
        assert run(module, source, out).returncode == 0
        (paths[kind],) = out.iterdir()
    members = [{"path": str(paths["FSC"]), "product_type": "FSC"}, {"path": str(paths["SWS"]), "product_type": "SWS"}]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"condition": "g", "members": members, "routine_version": "v1",
                                    "input": {"measured_at": "2026-01-05T10:00:00+00:00", "tile": "32TLR"}}))
    output = tmp_path / "out"
    output.mkdir()
    result = run_composite(manifest, output)
    assert result.returncode == 0, result.stderr
    (product,) = output.iterdir()
    assert product.name == "HRWSI_GFSC_20260105T100000_T32TLR.json"
    composite_raster = Raster.read(product)
    assert composite_raster.metadata["members"] == [m["path"] for m in members]
    assert CLOUD in Raster.read(paths["FSC"]).bands["fsc"]
    assert composite_raster.bands["gfsc"].count(CLOUD) <= Raster.read(paths["FSC"]).bands["fsc"].count(CLOUD)


def test_the_gfsc_routine_says_what_is_missing(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"condition": "g", "members": [{"path": str(tmp_path / "gone.json"),
                                                                   "product_type": "FSC"}]}))
    missing_file = run_composite(manifest, tmp_path)
    assert missing_file.returncode == 210 and "gone.json does not exist" in missing_file.stderr
    manifest.write_text(json.dumps({"condition": "g", "members": []}))
    missing_type = run_composite(manifest, tmp_path)
    assert missing_type.returncode == 1 and "the manifest lists no FSC member" in missing_type.stderr
    no_manifest = run_composite(tmp_path / "nowhere.json", tmp_path)
    assert no_manifest.returncode == 1 and "nowhere.json does not exist" in no_manifest.stderr
