"""The demo's routines compute real products from their inputs."""

import json
import subprocess
import sys
from datetime import UTC, datetime

from hrwsi.demo import synthetic_scene, write_scenes
from hrwsi.routines.raster import Raster
from hrwsi.routines.snow_cover import CLOUD, snow_fraction


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
