"""FSC -> QUICKLOOK: a PNG picture of the snow cover (white = snow, brown = ground, grey = cloud)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from hrwsi.routines.raster import product_name, read_input, routine_arguments
from hrwsi.routines.snow_cover import CLOUD

GROUND = (121, 96, 66)
CLOUD_GREY = (150, 150, 150)


def colour(fsc: float) -> tuple[int, int, int]:
    if fsc == CLOUD:
        return CLOUD_GREY
    share = fsc / 100.0
    return tuple(round(g + (255 - g) * share) for g in GROUND)  # type: ignore[return-value]


def png(width: int, height: int, pixels: list[tuple[int, int, int]]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(v for p in pixels[y * width:(y + 1) * width] for v in p)
                    for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def main() -> None:
    args = routine_arguments(__doc__)
    scene = read_input(args.input)
    pixels = [colour(v) for v in scene.bands["fsc"]]
    mission = scene.metadata.get("mission", "S2X")
    out = Path(args.output_dir) / product_name(mission, "QUICKLOOK", scene.measured_at, scene.tile, "png")
    out.write_bytes(png(scene.width, scene.height, pixels))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
