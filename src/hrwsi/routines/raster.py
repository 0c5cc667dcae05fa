"""A tiny self-describing raster file: JSON with a header and flat band arrays.

Real enough to compute on, small enough to ship: the demo's stand-in for SAFE/GeoTIFF products.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

EXTERNAL_ERROR = 210


@dataclass
class Raster:
    product_type: str
    tile: str
    measured_at: str
    width: int
    height: int
    bands: dict[str, list[float]]
    metadata: dict = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | Path) -> Raster:
        data = json.loads(Path(path).read_text())
        raster = cls(data["product_type"], data["tile"], data["measured_at"], data["width"], data["height"],
                     data["bands"], data.get("metadata", {}))
        for name, values in raster.bands.items():
            if len(values) != raster.width * raster.height:
                raise ValueError(f"band {name} of {path} has {len(values)} values, expected "
                                 f"{raster.width * raster.height}")
        return raster

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_text(json.dumps({
            "product_type": self.product_type, "tile": self.tile, "measured_at": self.measured_at,
            "width": self.width, "height": self.height, "metadata": self.metadata, "bands": self.bands}))
        os.replace(tmp, path)  # a product appears whole or not at all
        return path


def product_name(mission: str, product_type: str, measured_at: str, tile: str, extension: str = "json") -> str:
    stamp = measured_at.replace("-", "").replace(":", "")[:15]
    return f"{mission}_{product_type}_{stamp}_T{tile}.{extension}"


def routine_arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--input", required=True, help="the input product")
    parser.add_argument("--output-dir", required=True, help="where to write the product")
    parser.add_argument("--manifest", help="the task's manifest (JSON): input, members, previous product")
    return parser.parse_args()


def fail(message: str, code: int = 1) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def read_manifest(path: str | None) -> dict:
    """The task's manifest (hrwsi.job_spec.manifest, README "For ops"): from --manifest, else from
    HRWSI_MANIFEST. It lists the task's input, the `members` of a multi-input task and the `series`
    of a time-series task."""
    path = path or os.environ.get("HRWSI_MANIFEST")
    if not path:
        fail("no manifest: give --manifest or HRWSI_MANIFEST (hrwsi passes both)")
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        fail(f"the manifest {path} does not exist")
    except ValueError as error:
        fail(f"the manifest {path} is not JSON: {error}")
    raise AssertionError("unreachable")


def members_of(manifest: dict, product_type: str) -> list[dict]:
    """The members of one product type, in the manifest's order (by sensing time)."""
    return [m for m in manifest.get("members", []) if m.get("product_type") == product_type]


def read_input(path: str) -> Raster:
    try:
        return Raster.read(path)
    except FileNotFoundError:
        fail(f"input {path} does not exist", EXTERNAL_ERROR)
    except (ValueError, KeyError) as error:
        fail(f"input {path} is not a readable raster: {error}")
    raise AssertionError("unreachable")
