"""L2A -> SWS: a wet-snow map, standing in for HR-WSI's SAR wet snow (SWS) on the demo's data.

HR-WSI derives SWS from Sentinel-1 backscatter; the demo has no radar scenes, so this stand-in
marks as wet the snow that lies near the snow line (snow within RING pixels of snow-free ground),
where melt starts. It sees only what the optical scene sees: under a cloud it has no data (255).
Bands: `wet` (1 wet, 0 dry or no snow, 255 no data).
"""

from __future__ import annotations

from pathlib import Path

from hrwsi.routines.raster import Raster, product_name, read_input, routine_arguments

NO_DATA = 255
RING = 3  # pixels: how far above the snow line snow counts as wet
NDSI_SNOW = 0.4


def is_snow(green: float, swir: float) -> bool:
    return green + swir > 0 and (green - swir) / (green + swir) > NDSI_SNOW


def wet_snow(width: int, height: int, snow: list[bool], cloud: list[bool]) -> list[int]:
    """1 for snow within RING pixels of snow-free clear ground, 0 for other clear pixels, NO_DATA under cloud."""
    ground = [not s and not c for s, c in zip(snow, cloud)]
    wet = []
    for index, (s, c) in enumerate(zip(snow, cloud)):
        if c:
            wet.append(NO_DATA)
            continue
        y, x = divmod(index, width)
        near_ground = s and any(
            ground[yy * width + xx]
            for yy in range(max(0, y - RING), min(height, y + RING + 1))
            for xx in range(max(0, x - RING), min(width, x + RING + 1)))
        wet.append(1 if near_ground else 0)
    return wet


def main() -> None:
    args = routine_arguments(__doc__)
    scene = read_input(args.input)
    snow = [is_snow(g, s) for g, s in zip(scene.bands["green"], scene.bands["swir"])]
    cloud = [c > 0 for c in scene.bands["cloud"]]
    product = Raster("SWS", scene.tile, scene.measured_at, scene.width, scene.height,
                     {"wet": wet_snow(scene.width, scene.height, snow, cloud)}, {**scene.metadata, "source": "L2A"})
    out = Path(args.output_dir) / product_name(scene.metadata.get("mission", "S2X"), "SWS", scene.measured_at,
                                               scene.tile)
    product.write(out)
    wet = sum(1 for v in product.bands["wet"] if v == 1)
    print(f"wrote {out}: {wet} wet-snow pixel(s)")


if __name__ == "__main__":
    main()
