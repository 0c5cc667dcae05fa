"""L1C -> L2A: top-of-atmosphere digital numbers to surface reflectance, with a cloud mask.

A dark-object subtraction per band (the darkest 1 % of pixels estimates the path radiance), then
a cloud test: clouds are bright in both green and short-wave infrared, where snow is dark.
"""

from __future__ import annotations

from pathlib import Path

from hrwsi.routines.raster import Raster, product_name, read_input, routine_arguments


def correct(scene: Raster) -> Raster:
    bands = {}
    for name, values in scene.bands.items():
        reflectance = [v / 10000.0 for v in values]
        darkest = sorted(reflectance)[max(0, len(reflectance) // 100 - 1)]
        bands[name] = [round(max(0.0, r - darkest), 4) for r in reflectance]
    green, swir = bands["green"], bands["swir"]
    bands["cloud"] = [1.0 if g > 0.45 and s > 0.25 else 0.0 for g, s in zip(green, swir)]
    return Raster("L2A", scene.tile, scene.measured_at, scene.width, scene.height, bands,
                  {**scene.metadata, "source": "L1C", "correction": "dark-object subtraction"})


def main() -> None:
    args = routine_arguments(__doc__)
    scene = read_input(args.input)
    product = correct(scene)
    mission = scene.metadata.get("mission", "S2X")
    out = Path(args.output_dir) / product_name(mission, "L2A", scene.measured_at, scene.tile)
    product.write(out)
    cloudy = sum(product.bands["cloud"]) / len(product.bands["cloud"])
    print(f"wrote {out} ({product.width}x{product.height}, {cloudy:.0%} cloud)")


if __name__ == "__main__":
    main()
