"""FSC + SWS of one tile and day -> GFSC: a daily snow composite, like HR-WSI's Gap-filled FSC.

A multi-input routine: its input is a group (a tile and a day), and it reads the group's members
from the task's manifest (`--manifest` or HRWSI_MANIFEST: `members`, each with path, product type,
tile and sensing time), not from `--input`. Per pixel, the snow fraction is the latest clear FSC
of the day; a pixel cloudy in every FSC stays cloudy (205) unless a wet-snow map (SWS) saw wet
snow there (then 100: snow). Bands: `gfsc` (0-100, 205 cloud), `wet_snow` (as SWS: 1, 0, 255).
Exit 210 when a member file is missing (an external fault: the archive), 1 when the manifest lacks
a member type.
"""

from __future__ import annotations

from pathlib import Path

from hrwsi.routines.raster import (
    EXTERNAL_ERROR,
    Raster,
    fail,
    members_of,
    product_name,
    read_manifest,
    routine_arguments,
)
from hrwsi.routines.snow_cover import CLOUD
from hrwsi.routines.wet_snow import NO_DATA


def composite(fscs: list[list[float]], wets: list[list[int]]) -> tuple[list[float], list[int]]:
    """Latest clear FSC per pixel (fscs in sensing order), gaps filled by wet snow; wet snow per pixel
    (1 if any map says wet, else 0 if any says dry, else NO_DATA)."""
    size = len(fscs[0])
    gfsc, wet_snow = [], []
    for i in range(size):
        clear = [f[i] for f in fscs if f[i] != CLOUD]
        seen = [w[i] for w in wets if w[i] != NO_DATA]
        wet = 1 if 1 in seen else (0 if seen else NO_DATA)
        gfsc.append(clear[-1] if clear else (100.0 if wet == 1 else CLOUD))
        wet_snow.append(wet)
    return gfsc, wet_snow


def _read_members(manifest: dict, product_type: str) -> list[Raster]:
    members = members_of(manifest, product_type)
    if not members:
        fail(f"the manifest lists no {product_type} member: is the multi-input rule of condition "
             f"{manifest.get('condition')} requiring {product_type}?")
    rasters = []
    for member in members:
        try:
            rasters.append(Raster.read(member["path"]))
        except FileNotFoundError:
            fail(f"member {member['path']} does not exist", EXTERNAL_ERROR)
    return rasters


def main() -> None:
    args = routine_arguments(__doc__)
    manifest = read_manifest(args.manifest)
    fscs, swss = _read_members(manifest, "FSC"), _read_members(manifest, "SWS")
    first = fscs[0]
    if any((r.width, r.height) != (first.width, first.height) for r in fscs + swss):
        fail("the members do not share one grid")
    gfsc, wet = composite([r.bands["fsc"] for r in fscs], [r.bands["wet"] for r in swss])
    day = manifest["input"]["measured_at"] or first.measured_at
    product = Raster("GFSC", first.tile, day, first.width, first.height, {"gfsc": gfsc, "wet_snow": wet},
                     {"source": "FSC+SWS", "members": [m["path"] for m in manifest["members"]],
                      "routine_version": manifest.get("routine_version"), "campaign": manifest.get("campaign")})
    out = Path(args.output_dir) / product_name("HRWSI", "GFSC", day, first.tile)
    product.write(out)
    cloudy = sum(1 for v in gfsc if v == CLOUD) / len(gfsc)
    print(f"wrote {out} from {len(fscs)} FSC and {len(swss)} SWS: {cloudy:.0%} still cloudy")


if __name__ == "__main__":
    main()
