"""Product names: scene identifier, mission, sensing time and tile of Sentinel and hrwsi names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hrwsi.harvest import product_names


def test_a_sentinel_2_name_gives_tile_mission_and_sensing_time():
    scene = product_names.parse_product_name(
        "S2A_MSIL1C_20240105T103421_N0510_R108_T32TPR_20240105T123456.SAFE")
    assert (scene.mission, scene.tile, scene.product_type) == ("S2A", "32TPR", "MSIL1C")
    assert scene.measured_at == datetime(2024, 1, 5, 10, 34, 21, tzinfo=UTC)
    assert scene.scene_id == "S2A_MSIL1C_20240105T103421_N0510_R108_T32TPR_20240105T123456"
    assert product_names.scene_id_of("S2A_MSIL1C_20240105T103421_N0510_R108_T32TPR_20240105T123456.SAFE.zip") == \
        scene.scene_id


def test_a_sentinel_1_grd_name_has_no_tile():
    scene = product_names.parse_product_name("S1A_IW_GRDH_1SDV_20240105T053012_20240105T053037_051934_064624_ABCD.zip")
    assert (scene.mission, scene.tile, scene.product_type) == ("S1A", None, "GRDH")
    assert scene.measured_at == datetime(2024, 1, 5, 5, 30, 12, tzinfo=UTC)


def test_hrwsi_and_demo_names_are_read_too():
    assert product_names.parse_product_name("S2B_L1C_20240105T103421_T31TCH.json").tile == "31TCH"
    assert product_names.parse_product_name("FSC_20240105T103421_S2A_T32TPR_V100_1.tif").mission == "S2A"


@pytest.mark.parametrize("name", ["notes.txt", "S2A_MSIL1C_20241340T103421_N0510_R108_T32TPR_20240105T123456.SAFE",
                                  "S2A_MSIL1C_2024_T32TPR.zip"])
def test_an_unreadable_name_is_refused_with_the_expected_formats(name):
    with pytest.raises(product_names.UnreadableProductName, match="S2A_MSIL1C|not a valid date"):
        product_names.parse_product_name(name)


def test_a_name_of_an_unknown_format_still_gives_the_tile_and_mission_it_carries():
    assert product_names.tile_and_mission("S2B_OPER_MSI_L2A_TL_20240105_T31TCH_N05.10.SAFE") == ("31TCH", "S2B")
    assert product_names.tile_and_mission("S2A_MSIL1C_20240105T103421_N0510_R108_T32TPR_20240105T123456") == \
        ("32TPR", "S2A")
    assert product_names.tile_and_mission("auxiliary.nc") == (None, None)


def test_scene_id_of_strips_only_ascii_extensions_at_the_very_end_as_sql_does():
    """Found by review: Python's IGNORECASE folded ſ, ı and İ into s, i and I (hrwsi.scene_id_of in SQL does not),
    and `$` matched before a final newline: the harvester's scene id then differed from the database's."""
    assert product_names.scene_id_of("/x/A.\u017fAFE") == "A.\u017fAFE"
    assert product_names.scene_id_of("/x/a.z\u0131p") == "a.z\u0131p"
    assert product_names.scene_id_of("/x/a.T\u0130F") == "a.T\u0130F"
    assert product_names.scene_id_of("/x/a.SAFE\n") == "a.SAFE\n"
    assert product_names.scene_id_of("/x/a.SaFe.ZIP") == "a"
