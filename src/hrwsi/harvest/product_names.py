"""Sentinel (and hrwsi) product names: the scene identifier, mission, sensing time and MGRS tile
a name carries. Pure: no I/O. Landing directories and catalogues read names the same way, so that
the same scene from both is recognised as one (hrwsi.input.scene_id)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath


class UnreadableProductName(ValueError):
    """The file name is not a product name hrwsi can read tile, mission and time from."""


@dataclass(frozen=True)
class SceneName:
    scene_id: str            # the product name without extensions: the same scene has the same id everywhere
    mission: str             # S2A, S1B ...
    measured_at: datetime    # sensing start, UTC
    tile: str | None         # MGRS tile (Sentinel-1 names carry none)
    product_type: str        # as the name says: MSIL1C, GRDH, L1C, FSC ...


# (ASCII letters only, to the end of the name: as hrwsi.scene_id_of in SQL reads them; Python's IGNORECASE alone
# also folded ſ, ı and İ into s, i and I, and `$` matched before a final newline: found by review)
_EXTENSIONS = re.compile(r"(\.(safe|sen3|zip|json|tif|tiff|nc|tar|tgz|gz|h5|xml|jp2))+\Z", re.IGNORECASE | re.ASCII)
_STAMP = r"(\d{8}T\d{6})"
_NAME_FORMATS = [
    # Sentinel-2: S2A_MSIL1C_20240105T103421_N0510_R108_T32TPR_20240105T123456
    re.compile(rf"^(?P<mission>S2[A-D])_(?P<type>MSIL[0-9A-Z]{{2}})_(?P<sensing>{_STAMP[1:-1]})_N\d{{4}}_R\d{{3}}"
               rf"_T(?P<tile>\d{{2}}[A-Z]{{3}})_\d{{8}}T\d{{6}}$"),
    # Sentinel-1: S1A_IW_GRDH_1SDV_20240105T053012_20240105T053037_051934_064624_ABCD (no tile)
    re.compile(rf"^(?P<mission>S1[A-D])_[A-Z0-9]{{2}}_(?P<type>[A-Z]{{3}}[A-Z_])_[0-9A-Z_]{{4}}"
               rf"_(?P<sensing>{_STAMP[1:-1]})_\d{{8}}T\d{{6}}_\d{{6}}_[0-9A-F]{{6}}_[0-9A-F]{{4}}$"),
    # hrwsi and demo products: S2A_L1C_20240105T103421_T32TPR[_anything]
    re.compile(rf"^(?P<mission>S[123][A-D])_(?P<type>[A-Z0-9]+)_(?P<sensing>{_STAMP[1:-1]})"
               rf"_T(?P<tile>\d{{2}}[A-Z]{{3}})(_.*)?$"),
    # HR-WSI products: FSC_20240105T103421_S2A_T32TPR_V100_1
    re.compile(rf"^(?P<type>[A-Z0-9]+)_(?P<sensing>{_STAMP[1:-1]})_(?P<mission>S[123][A-D])"
               rf"_T(?P<tile>\d{{2}}[A-Z]{{3}})(_.*)?$"),
]


def scene_id_of(name: str) -> str:
    """The product name without its extensions: `X.SAFE.zip`, `X.zip`, `X.SAFE` -> `X`."""
    return _EXTENSIONS.sub("", PurePosixPath(name).name)


def parse_product_name(name: str) -> SceneName:
    """Mission, sensing time and MGRS tile from a Sentinel (or hrwsi) product name.

    Raises UnreadableProductName saying which formats were expected.
    """
    scene_id = scene_id_of(name)
    for name_format in _NAME_FORMATS:
        match = name_format.match(scene_id)
        if not match:
            continue
        try:
            measured = datetime.strptime(match["sensing"], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        except ValueError:
            raise UnreadableProductName(
                f"{name}: sensing time {match['sensing']} is not a valid date and time") from None
        return SceneName(scene_id, match["mission"], measured, match.groupdict().get("tile"), match["type"])
    raise UnreadableProductName(
        f"{name}: not a product name hrwsi can read (expected e.g. "
        "S2A_MSIL1C_20240105T103421_N0510_R108_T32TPR_20240105T123456.SAFE, "
        "S1A_IW_GRDH_1SDV_20240105T053012_20240105T053037_051934_064624_ABCD.zip or S2A_L1C_20240105T103421_T32TPR.json)")


_TILE_IN_NAME = re.compile(r"_T(\d{2}[A-Z]{3})(?:_|\.|$)")
_MISSION_IN_NAME = re.compile(r"^(S[1-6][A-D])_")


def tile_and_mission(name: str) -> tuple[str | None, str | None]:
    """The MGRS tile and mission of any product name: read exactly when it has a known format,
    else picked out of it (`_T32TPR_`, a leading `S2A_`), or None. A catalogue lists products of
    formats hrwsi does not know; their tile still decides which conditions take them."""
    try:
        scene = parse_product_name(name)
    except UnreadableProductName:
        tile, mission = _TILE_IN_NAME.search(name), _MISSION_IN_NAME.search(name)
        return (tile.group(1) if tile else None), (mission.group(1) if mission else None)
    return scene.tile, scene.mission
