"""The limits the claims fix (flows.md, "Limits the claims fix"), each at its edges.

Every row of the table and every cross-step rule: just inside passes, just outside is a
Violation whose message names the value, the limit and the claim; a limit whose reference
value is unknown does not apply.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from flows import Flow, FlowLibrary, Value, Violation
from tests.flows.conftest import DEFAULT_COLS, DEFAULT_ROWS, ctx

FC = ["fc-heatsink-muf", "fc-stack-muf", "fc-stack3-muf"]
FO = ["fo-organic", "fo-metal", "fo-organic-recon", "fo-metal-recon", "fo-organic-insulating"]


def _track_in(
    flow: Flow,
    step: str,
    values: Mapping[str, Value],
    *,
    params: Mapping[str, Value] | None = None,
    recorded: Mapping[str, Value] | None = None,
    rows: int = DEFAULT_ROWS,
    cols: int = DEFAULT_COLS,
) -> list[Violation]:
    return flow.check_track_in(step, values, ctx(params, recorded, rows, cols))


def _one(violations: list[Violation], name: str, claim: str) -> Violation:
    assert [v.value_name for v in violations] == [name], [v.message for v in violations]
    violation = violations[0]
    assert violation.claim == claim
    assert f"claim {claim}" in violation.message
    assert name in violation.message
    assert violation.expected in violation.message
    return violation


# --- stiffener-bga -------------------------------------------------------------------------


@pytest.mark.parametrize("thickness", [0.1, 0.3, 0.5])
def test_substrate_thickness_inside_0_1_to_0_5_mm_is_accepted(
    library: FlowLibrary, thickness: float
) -> None:
    flow = library.get("stiffener-bga")
    assert _track_in(flow, "SUBSTRATE_LOAD", {"substrate_thickness_mm": thickness}) == []


@pytest.mark.parametrize("thickness", [0.099, 0.501])
def test_substrate_thickness_outside_0_1_to_0_5_mm_is_refused(
    library: FlowLibrary, thickness: float
) -> None:
    flow = library.get("stiffener-bga")
    found = _track_in(flow, "SUBSTRATE_LOAD", {"substrate_thickness_mm": thickness})
    violation = _one(found, "substrate_thickness_mm", "000: 14")
    assert violation.expected == "0.1 to 0.5"
    assert violation.step == "SUBSTRATE_LOAD"
    assert violation.value == thickness
    assert violation.message == (
        f"At SUBSTRATE_LOAD track-in, substrate_thickness_mm is {thickness:g}; claim 000: 14 "
        "requires it to be 0.1 to 0.5."
    )


def test_a_stiffener_that_is_not_copper_is_refused(library: FlowLibrary) -> None:
    flow = library.get("stiffener-bga")
    assert _track_in(flow, "STIFFENER_ATTACH", {"stiffener_material": "copper"}) == []
    found = _track_in(flow, "STIFFENER_ATTACH", {"stiffener_material": "aluminum"})
    assert _one(found, "stiffener_material", "000: 8, 13, 19").expected == "one of copper"


def test_stiffener_openings_matching_the_carrier_sites_are_accepted(library: FlowLibrary) -> None:
    flow = library.get("stiffener-bga")
    values: dict[str, Value] = {"stiffener_opening_rows": 5, "stiffener_opening_cols": 20}
    assert _track_in(flow, "STIFFENER_ATTACH", values, rows=5, cols=20) == []


@pytest.mark.parametrize(
    ("rows", "cols", "wrong"),
    [(6, 20, "stiffener_opening_rows"), (5, 19, "stiffener_opening_cols")],
)
def test_stiffener_openings_not_matching_the_carrier_sites_are_refused(
    library: FlowLibrary, rows: int, cols: int, wrong: str
) -> None:
    """An opening over every die site (claims 2, 10, 17)."""
    flow = library.get("stiffener-bga")
    values: dict[str, Value] = {"stiffener_opening_rows": 5, "stiffener_opening_cols": 20}
    found = _track_in(flow, "STIFFENER_ATTACH", values, rows=rows, cols=cols)
    violation = _one(found, wrong, "000: 2, 10, 17")
    site = "site_rows" if wrong.endswith("rows") else "site_cols"
    assert violation.expected == f"equal to {site} ({rows if site == 'site_rows' else cols})"


def test_the_default_stiffener_fits_the_default_carrier(library: FlowLibrary) -> None:
    assert _track_in(library.get("stiffener-bga"), "STIFFENER_ATTACH", {}) == []


# --- die orientation -------------------------------------------------------------------------

ORIENTATION = [
    ("stiffener-bga", "face_up", "000: 7"),
    ("fc-stack-muf", "face_up", "001: 14"),
    ("fc-stack3-muf", "face_up", "001: 16"),
    ("fo-organic", "face_up", "002: 61"),
    ("fo-metal", "face_up", "003: 61"),
    ("fo-organic-recon", "face_down", "002: 139"),
    ("fo-organic-insulating", "face_down", "002: 102"),
    ("fo-metal-recon", "face_down", "003: 102"),
]


@pytest.mark.parametrize(("flow", "orientation", "claim"), ORIENTATION)
def test_dies_are_attached_in_the_claimed_orientation(
    library: FlowLibrary, flow: str, orientation: str, claim: str
) -> None:
    spec = library.get(flow)
    assert spec.steps["DIE_ATTACH"].recipe["die_orientation"].default == orientation
    assert _track_in(spec, "DIE_ATTACH", {}) == []
    other = "face_down" if orientation == "face_up" else "face_up"
    found = _track_in(spec, "DIE_ATTACH", {"die_orientation": other})
    assert _one(found, "die_orientation", claim).expected == f"one of {orientation}"


@pytest.mark.parametrize(
    ("flow", "claim"),
    [
        ("fc-heatsink-muf", "001: 1"),
        ("fc-stack-muf", "001: 10, 14"),
        ("fc-stack3-muf", "001: 10, 16"),
    ],
)
def test_a_flip_chip_is_bonded_face_down(library: FlowLibrary, flow: str, claim: str) -> None:
    """Implied by the flip-chip bonding of claims 1, 10, 14 and 16: bumps toward the carrier."""
    spec = library.get(flow)
    assert _track_in(spec, "FLIP_CHIP_BOND", {}) == []
    found = _track_in(spec, "FLIP_CHIP_BOND", {"die_orientation": "face_up"})
    _one(found, "die_orientation", claim)


# --- flip chip -----------------------------------------------------------------------------

FC_CLAIMS = {
    "fc-heatsink-muf": {
        "carrier": "001: 9",
        "area": "001: 1",
        "metal": "001: 6",
        "standoff": "001: 2",
        "resin": "001: 5",
        "k": "001: 4",
        "balls": "001: 7",
    },
    "fc-stack-muf": {
        "carrier": "001: 22",
        "area": "001: 10",
        "metal": "001: 19",
        "standoff": "001: 11",
        "resin": "001: 18",
        "k": "001: 13",
        "balls": "001: 20",
    },
    "fc-stack3-muf": {
        "carrier": "001: 22",
        "area": "001: 10",
        "metal": "001: 19",
        "standoff": "001: 11",
        "resin": "001: 18",
        "k": "001: 13",
        "balls": "001: 20",
    },
}


@pytest.mark.parametrize("flow", FC)
def test_the_carrier_is_a_packaging_substrate_or_a_lead_frame(
    library: FlowLibrary, flow: str
) -> None:
    spec = library.get(flow)
    for carrier in ("substrate", "leadframe"):
        assert _track_in(spec, "SUBSTRATE_LOAD", {"carrier_type": carrier}) == []
    found = _track_in(spec, "SUBSTRATE_LOAD", {"carrier_type": "ceramic"})
    assert _one(found, "carrier_type", FC_CLAIMS[flow]["carrier"]).expected == (
        "one of substrate, leadframe"
    )


@pytest.mark.parametrize("flow", FC)
def test_the_die_area_must_be_positive(library: FlowLibrary, flow: str) -> None:
    spec = library.get(flow)
    assert spec.check_lot_start({"die_area_mm2": 0.01}, ctx()) == []
    found = spec.check_lot_start({"die_area_mm2": 0.0}, ctx())
    violation = _one(found, "die_area_mm2", FC_CLAIMS[flow]["area"])
    assert violation.step is None
    assert violation.message.startswith("At lot start, die_area_mm2 is 0;")


@pytest.mark.parametrize("flow", FC)
def test_the_heat_sink_must_be_larger_than_the_die(library: FlowLibrary, flow: str) -> None:
    """Heat sink surface area greater than the chip's or the chipset's (claims 1, 10)."""
    spec = library.get(flow)
    params = {"die_area_mm2": 150.0}
    assert _track_in(spec, "HEAT_SINK_ATTACH", {"heat_sink_area_mm2": 150.01}, params=params) == []
    found = _track_in(spec, "HEAT_SINK_ATTACH", {"heat_sink_area_mm2": 150.0}, params=params)
    violation = _one(found, "heat_sink_area_mm2", FC_CLAIMS[flow]["area"])
    assert violation.expected == "greater than die_area_mm2 (150)"


def test_the_heat_sink_check_uses_the_default_die_area_when_the_lot_gives_none(
    library: FlowLibrary,
) -> None:
    spec = library.get("fc-heatsink-muf")
    default = spec.lot_params["die_area_mm2"].default
    assert default == 100.0
    # The lot tracker passes the lot parameters with their defaults merged in.
    params = spec.lot_params_from({})
    found = _track_in(spec, "HEAT_SINK_ATTACH", {"heat_sink_area_mm2": 90.0}, params=params)
    _one(found, "heat_sink_area_mm2", "001: 1")


@pytest.mark.parametrize("flow", FC)
def test_the_heat_sink_is_metallic(library: FlowLibrary, flow: str) -> None:
    spec = library.get(flow)
    for metal in ("copper", "aluminum", "nickel_plated_copper"):
        assert _track_in(spec, "HEAT_SINK_ATTACH", {"heat_sink_material": metal}) == []
    found = _track_in(spec, "HEAT_SINK_ATTACH", {"heat_sink_material": "graphite"})
    _one(found, "heat_sink_material", FC_CLAIMS[flow]["metal"])


@pytest.mark.parametrize("flow", FC)
def test_the_compound_is_a_resin(library: FlowLibrary, flow: str) -> None:
    spec = library.get(flow)
    for resin in ("epoxy_resin", "silicone_resin"):
        assert _track_in(spec, "MOLD", {"compound_material": resin}) == []
    found = _track_in(spec, "MOLD", {"compound_material": "glass_frit"})
    _one(found, "compound_material", FC_CLAIMS[flow]["resin"])


@pytest.mark.parametrize("flow", FC)
def test_the_compound_conducts_heat_better_than_1_2_w_mk(library: FlowLibrary, flow: str) -> None:
    spec = library.get(flow)
    assert _track_in(spec, "MOLD", {"compound_thermal_conductivity_w_mk": 1.21}) == []
    found = _track_in(spec, "MOLD", {"compound_thermal_conductivity_w_mk": 1.2})
    violation = _one(found, "compound_thermal_conductivity_w_mk", FC_CLAIMS[flow]["k"])
    assert violation.expected == "greater than 1.2"


@pytest.mark.parametrize("flow", FC)
@pytest.mark.parametrize("cap", [95.0, 100.0, 105.0])
def test_a_mold_cap_within_5_um_of_the_standoffs_is_accepted(
    library: FlowLibrary, flow: str, cap: float
) -> None:
    """Standoffs as high as the mold over the heat sink (claims 2, 11): recipe and measured."""
    spec = library.get(flow)
    recorded = {"standoff_height_um": 100.0}
    values = {"mold_cap_over_heat_sink_um": cap}
    assert _track_in(spec, "MOLD", values, recorded=recorded) == []
    assert spec.check_track_out("MOLD", values, ctx(recorded=recorded)) == []


@pytest.mark.parametrize("flow", FC)
@pytest.mark.parametrize("cap", [94.99, 105.01])
def test_a_mold_cap_more_than_5_um_from_the_standoffs_is_refused_and_held(
    library: FlowLibrary, flow: str, cap: float
) -> None:
    spec = library.get(flow)
    recorded = {"standoff_height_um": 100.0}
    values = {"mold_cap_over_heat_sink_um": cap}
    claim = FC_CLAIMS[flow]["standoff"]
    refused = _one(
        _track_in(spec, "MOLD", values, recorded=recorded), "mold_cap_over_heat_sink_um", claim
    )
    assert refused.expected == "equal to standoff_height_um (100) within 5"
    assert refused.message.startswith("At MOLD track-in,")
    held = _one(
        spec.check_track_out("MOLD", values, ctx(recorded=recorded)),
        "mold_cap_over_heat_sink_um",
        claim,
    )
    assert held.message.startswith("At MOLD track-out,")


@pytest.mark.parametrize("flow", FC)
def test_without_standoffs_any_mold_cap_is_accepted(library: FlowLibrary, flow: str) -> None:
    """No standoff height recorded at HEAT_SINK_ATTACH: the reference is unknown."""
    spec = library.get(flow)
    values = {"mold_cap_over_heat_sink_um": 250.0}
    assert _track_in(spec, "MOLD", values) == []
    assert spec.check_track_out("MOLD", values, ctx()) == []


def test_standoff_height_is_optional_with_no_default(library: FlowLibrary) -> None:
    spec = library.get("fc-heatsink-muf").steps["HEAT_SINK_ATTACH"]
    assert spec.recipe["standoff_height_um"].optional
    assert "standoff_height_um" not in spec.recipe_defaults()


def test_the_default_mold_recipe_is_refused_for_standoffs_of_another_height(
    library: FlowLibrary,
) -> None:
    spec = library.get("fc-heatsink-muf")
    found = _track_in(spec, "MOLD", {}, recorded={"standoff_height_um": 150.0})
    _one(found, "mold_cap_over_heat_sink_um", "001: 2")


@pytest.mark.parametrize("flow", ["stiffener-bga", *FC])
def test_bga_and_flip_chip_bonding_points_are_solder_balls(library: FlowLibrary, flow: str) -> None:
    """000 claims 5, 6 and 001 claims 7, 20 claim solder balls."""
    spec = library.get(flow)
    assert _track_in(spec, "BALL_MOUNT", {"bonding_point": "solder_ball"}) == []
    found = _track_in(spec, "BALL_MOUNT", {"bonding_point": "pin"})
    claim = "000: 5, 6" if flow == "stiffener-bga" else FC_CLAIMS[flow]["balls"]
    _one(found, "bonding_point", claim)


def test_a_lead_frame_lot_may_still_take_balls(library: FlowLibrary) -> None:
    """Claims 7/20 (balls) and 9/22 (lead frame) each depend on claim 1/10 alone: no claim
    forbids balls on a lead frame, so BALL_MOUNT has no check on carrier_type."""
    spec = library.get("fc-heatsink-muf")
    found = _track_in(spec, "BALL_MOUNT", {}, recorded={"carrier_type": "leadframe"})
    assert found == []
    assert spec.steps["BALL_MOUNT"].checks == ()


# --- fan-out -------------------------------------------------------------------------------

FO_CLAIMS = {
    "fo-organic": {
        "fill": "002: 71",
        "dielectric": "002/003: 75, 87",
        "bonding": "002/003: 79, 91, 98",
        "layers": "002: 83, 95",
    },
    "fo-metal": {
        "fill": "003: 71",
        "dielectric": "002/003: 75, 87",
        "bonding": "002/003: 79, 91, 98",
        "layers": "003: 83, 95",
    },
    "fo-organic-recon": {
        "fill": "002: 143, 145",
        "dielectric": "002: 149, 161",
        "bonding": "002: 153, 165, 172",
        "layers": "002: 157, 169",
    },
    "fo-metal-recon": {
        "fill": "003: 106, 108",
        "dielectric": "003: 112, 124",
        "bonding": "003: 116, 128, 135",
        "layers": "003: 120, 132",
    },
    "fo-organic-insulating": {
        "fill": "002: 106",
        "dielectric": "002: 124",
        "bonding": "002: 116, 128, 135",
        "layers": "002: 120, 132",
    },
}


@pytest.mark.parametrize("flow", FO)
def test_the_filling_layer_is_epoxy_or_polymer(library: FlowLibrary, flow: str) -> None:
    spec = library.get(flow)
    for material in ("epoxy", "polymer"):
        assert _track_in(spec, "FILL", {"filling_material": material}) == []
    found = _track_in(spec, "FILL", {"filling_material": "silicone"})
    _one(found, "filling_material", FO_CLAIMS[flow]["fill"])


@pytest.mark.parametrize("flow", FO)
def test_the_dielectric_is_one_of_the_claimed_materials(library: FlowLibrary, flow: str) -> None:
    spec = library.get(flow)
    for material in ("polyimide", "benzocyclobutene", "porous_dielectric", "stress_buffer"):
        assert _track_in(spec, "DIELECTRIC_COAT", {"dielectric_material": material}) == []
    found = _track_in(spec, "DIELECTRIC_COAT", {"dielectric_material": "epoxy"})
    violation = _one(found, "dielectric_material", FO_CLAIMS[flow]["dielectric"])
    assert (
        violation.expected == "one of polyimide, benzocyclobutene, porous_dielectric, stress_buffer"
    )


@pytest.mark.parametrize("flow", FO)
def test_the_bonding_points_are_balls_bumps_or_pins(library: FlowLibrary, flow: str) -> None:
    spec = library.get(flow)
    for point in ("solder_ball", "bump", "pin"):
        assert _track_in(spec, "BALL_MOUNT", {"bonding_point": point}) == []
    found = _track_in(spec, "BALL_MOUNT", {"bonding_point": "wire"})
    _one(found, "bonding_point", FO_CLAIMS[flow]["bonding"])


@pytest.mark.parametrize("flow", FO)
@pytest.mark.parametrize("layers", [1, 2, 8])
def test_one_to_eight_wiring_layers_are_accepted(
    library: FlowLibrary, flow: str, layers: int
) -> None:
    assert library.get(flow).check_lot_start({"layers": layers}, ctx()) == []


@pytest.mark.parametrize("flow", FO)
@pytest.mark.parametrize("layers", [0, 9])
def test_zero_or_nine_wiring_layers_are_refused(
    library: FlowLibrary, flow: str, layers: int
) -> None:
    spec = library.get(flow)
    assert spec.lot_params["layers"].default == 2
    found = spec.check_lot_start({"layers": layers}, ctx())
    assert _one(found, "layers", FO_CLAIMS[flow]["layers"]).expected == "1 to 8"


@pytest.mark.parametrize(
    ("flow", "material", "methods", "claim"),
    [
        ("fo-organic", "organic", ["injection_molding", "laminated_core"], "002: 64-68"),
        ("fo-metal", "metal", ["machining", "punched_laminate"], "003: 64-69"),
    ],
)
def test_the_substrate_material_and_cavity_method_are_claimed(
    library: FlowLibrary, flow: str, material: str, methods: list[str], claim: str
) -> None:
    spec = library.get(flow)
    for method in methods:
        values: dict[str, Value] = {"substrate_material": material, "cavity_method": method}
        assert _track_in(spec, "SUBSTRATE_PREP", values) == []
    other = "metal" if material == "organic" else "organic"
    found = _track_in(spec, "SUBSTRATE_PREP", {"substrate_material": other})
    assert found[0].value_name == "substrate_material"
    found = _track_in(spec, "SUBSTRATE_PREP", {"cavity_method": "etching"})
    _one(found, "cavity_method", claim)


@pytest.mark.parametrize("depth", [140.0, 150.0, 160.0])
def test_cavities_within_10_um_of_the_die_thickness_are_accepted(
    library: FlowLibrary, depth: float
) -> None:
    spec = library.get("fo-metal")
    params = {"die_thickness_um": 150.0}
    assert _track_in(spec, "SUBSTRATE_PREP", {"cavity_depth_um": depth}, params=params) == []


@pytest.mark.parametrize("depth", [139.99, 160.01])
def test_cavities_more_than_10_um_from_the_die_thickness_are_refused(
    library: FlowLibrary, depth: float
) -> None:
    """Cavity depth equal to the die thickness (003 claims 65, 68)."""
    spec = library.get("fo-metal")
    found = _track_in(
        spec, "SUBSTRATE_PREP", {"cavity_depth_um": depth}, params={"die_thickness_um": 150.0}
    )
    assert _one(found, "cavity_depth_um", "003: 65, 68").expected == (
        "equal to die_thickness_um (150) within 10"
    )


def test_cavity_depth_is_free_on_an_organic_substrate(library: FlowLibrary) -> None:
    """002 claims no cavity depth: fo-organic has no die_thickness_um to compare with."""
    spec = library.get("fo-organic")
    assert _track_in(spec, "SUBSTRATE_PREP", {"cavity_depth_um": 400.0}) == []


@pytest.mark.parametrize(
    ("flow", "allowed", "refused", "claim"),
    [
        ("fo-metal-recon", ["glass", "silicon", "organic"], "sapphire", "003: 105"),
        # 002 claim 142 reads "glass, organic, and organic material", a slip for the
        # "glass, silicon, and organic material" of 003: 105; flows.md allows silicon.
        ("fo-organic-recon", ["glass", "silicon", "organic"], "sapphire", "002: 142"),
        ("fo-organic-insulating", ["glass", "organic"], "silicon", "002: 105"),
    ],
)
def test_the_carrier_material_is_claimed(
    library: FlowLibrary, flow: str, allowed: list[str], refused: str, claim: str
) -> None:
    spec = library.get(flow)
    for material in allowed:
        assert _track_in(spec, "CARRIER_LOAD", {"carrier_material": material}) == []
    found = _track_in(spec, "CARRIER_LOAD", {"carrier_material": refused})
    _one(found, "carrier_material", claim)


@pytest.mark.parametrize(
    ("flow", "material", "claim"),
    [
        ("fo-organic-recon", "organic", "002: 139"),
        ("fo-organic-insulating", "organic", "002: 102"),
        ("fo-metal-recon", "metal", "003: 102"),
    ],
)
def test_the_permanent_substrate_of_a_reconstituted_flow_is_claimed(
    library: FlowLibrary, flow: str, material: str, claim: str
) -> None:
    spec = library.get(flow)
    assert _track_in(spec, "SUBSTRATE_BOND", {}) == []
    other = "metal" if material == "organic" else "organic"
    _one(
        _track_in(spec, "SUBSTRATE_BOND", {"substrate_material": other}),
        "substrate_material",
        claim,
    )


# --- fo-organic-insulating: insulating substrate thickness -----------------------------------


@pytest.mark.parametrize("thickness", [2.0, 100.0, 200.0])
def test_thru_holes_open_in_an_insulating_substrate_of_2_to_200_um(
    library: FlowLibrary, thickness: float
) -> None:
    spec = library.get("fo-organic-insulating")
    recorded = {"insulating_thickness_um": thickness}
    assert _track_in(spec, "VIA_PATTERN", {}, recorded=recorded) == []


@pytest.mark.parametrize("thickness", [1.99, 200.01, 500.0])
def test_thru_holes_in_a_substrate_outside_2_to_200_um_are_refused(
    library: FlowLibrary, thickness: float
) -> None:
    """A thicker substrate must be thinned first (claims 107, 109)."""
    spec = library.get("fo-organic-insulating")
    found = _track_in(spec, "VIA_PATTERN", {}, recorded={"insulating_thickness_um": thickness})
    violation = _one(found, "insulating_thickness_um", "002: 107, 109, 181")
    assert violation.step == "VIA_PATTERN"
    assert "recorded at an earlier step" in violation.message
    assert "must be thinned (THIN)" in violation.message


def test_the_thickness_check_does_not_apply_before_any_thickness_is_recorded(
    library: FlowLibrary,
) -> None:
    spec = library.get("fo-organic-insulating")
    assert _track_in(spec, "VIA_PATTERN", {}) == []


def test_a_thick_insulating_substrate_may_be_loaded_and_thinned(library: FlowLibrary) -> None:
    """The thickness is only fixed when VIA_PATTERN starts: loading 500 um is fine."""
    spec = library.get("fo-organic-insulating")
    assert _track_in(spec, "CARRIER_LOAD", {"insulating_thickness_um": 500.0}) == []
    assert _track_in(spec, "THIN", {"target_thickness_um": 60.0}) == []


@pytest.mark.parametrize(
    ("measured", "ok"), [(2.0, True), (200.0, True), (1.9, False), (200.5, False)]
)
def test_the_measured_thickness_after_thinning_is_2_to_200_um(
    library: FlowLibrary, measured: float, ok: bool
) -> None:
    """Claim 109; the grinder reports it as final_thickness_um (tool_value)."""
    spec = library.get("fo-organic-insulating")
    found = spec.check_track_out("THIN", {"insulating_thickness_um": measured}, ctx())
    if ok:
        assert found == []
    else:
        _one(found, "insulating_thickness_um", "002: 109")


@pytest.mark.parametrize(
    ("target", "ok"), [(2.0, True), (200.0, True), (1.0, False), (250.0, False)]
)
def test_the_thinning_target_is_2_to_200_um(library: FlowLibrary, target: float, ok: bool) -> None:
    spec = library.get("fo-organic-insulating")
    found = _track_in(spec, "THIN", {"target_thickness_um": target})
    assert (found == []) == ok


# --- general -------------------------------------------------------------------------------


@pytest.mark.parametrize("flow", sorted(["stiffener-bga", *FC, *FO]))
def test_a_lot_run_on_defaults_meets_every_limit(library: FlowLibrary, flow: str) -> None:
    """Every step's defaults pass its own flow's limits (on the default carrier geometry)."""
    spec = library.get(flow)
    params = spec.lot_params_from({})
    assert spec.check_lot_start(params, ctx(params)) == []
    recorded: dict[str, Value] = {}
    for code, step in spec.steps.items():
        assert spec.check_track_in(code, {}, ctx(params, recorded)) == [], code
        recorded.update(step.recipe_defaults())


def test_a_number_where_a_word_is_expected_is_a_violation(library: FlowLibrary) -> None:
    spec = library.get("stiffener-bga")
    found = _track_in(spec, "SUBSTRATE_LOAD", {"substrate_thickness_mm": "thin"})
    assert found[0].expected == "a number 0.1 to 0.5"
