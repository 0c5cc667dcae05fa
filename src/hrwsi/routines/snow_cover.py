"""L2A -> FSC: fractional snow cover from the normalised difference snow index.

NDSI = (green - swir) / (green + swir); FSC = clip(-0.01 + 1.45 NDSI, 0, 1) in percent, as in the
Salomonson-Appel regression; cloudy pixels get the HR-WSI code 205.
"""

from __future__ import annotations

import os
from pathlib import Path

from hrwsi.routines.raster import EXTERNAL_ERROR, Raster, fail, product_name, read_input, routine_arguments

CLOUD = 205


def snow_fraction(green: float, swir: float) -> float:
    if green + swir <= 0:
        return 0.0
    ndsi = (green - swir) / (green + swir)
    return round(100 * min(1.0, max(0.0, -0.01 + 1.45 * ndsi)), 1)


def main() -> None:
    args = routine_arguments(__doc__)
    scene = read_input(args.input)
    attempt = int(os.environ.get("HRWSI_ATTEMPT", "1"))
    if scene.metadata.get("inject_transient_fault") and attempt == 1:
        # The demo's one flaky input: a storage read that fails the first time only.
        fail(f"reading {args.input}: connection reset by the object store (transient)", EXTERNAL_ERROR)
    fsc = [CLOUD if c else snow_fraction(g, s)
           for g, s, c in zip(scene.bands["green"], scene.bands["swir"], scene.bands["cloud"])]
    product = Raster("FSC", scene.tile, scene.measured_at, scene.width, scene.height, {"fsc": fsc},
                     {**scene.metadata, "source": "L2A"})
    mission = scene.metadata.get("mission", "S2X")
    out = Path(args.output_dir) / product_name(mission, "FSC", scene.measured_at, scene.tile)
    product.write(out)
    clear = [v for v in fsc if v != CLOUD]
    snowy = sum(1 for v in clear if v > 0) / len(clear) if clear else 0.0
    print(f"wrote {out}: {snowy:.0%} of clear pixels snow-covered")


if __name__ == "__main__":
    main()
