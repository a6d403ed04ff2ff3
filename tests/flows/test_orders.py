"""Step orders: each flow accepts exactly the orders its claims give (flows.md, "Flows").

Every claimed order is accepted and complete at its end, and only there (optional tail steps
allowed); out-of-order, skipped, repeated and extra steps are refused with a PathError that
says at which step and what was allowed.
"""

from __future__ import annotations

import pytest

from flows import FlowLibrary, PathError
from tests.flows import oracle

STIFFENER = ["SUBSTRATE_LOAD", "DIE_ATTACH", "WIRE_BOND", "STIFFENER_ATTACH", "MOLD"]
FC_HEATSINK = ["SUBSTRATE_LOAD", "FLIP_CHIP_BOND", "HEAT_SINK_ATTACH", "MOLD"]
FO_HEAD = ["SUBSTRATE_PREP", "DIE_ATTACH"]
RECON_HEAD = ["CARRIER_LOAD", "DIE_ATTACH", "FILL", "GRIND", "SUBSTRATE_BOND", "DEBOND"]
INSULATING_HEAD = ["CARRIER_LOAD", "DIE_ATTACH", "FILL", "GRIND", "SUBSTRATE_BOND"]
LAYER = ["DIELECTRIC_COAT", "VIA_PATTERN", "SPUTTER", "ELECTROPLATE"]
FINISH = ["PASSIVATION", "BALL_MOUNT", "DICE"]


def _refused(library: FlowLibrary, flow: str, path: list[str], layers: int = 2) -> PathError:
    with pytest.raises(PathError) as caught:
        library.get(flow).position(path, {"layers": layers})
    return caught.value


def test_the_library_has_the_nine_flows_of_the_specification(library: FlowLibrary) -> None:
    assert set(library.flows) == set(oracle.SPEC_FLOWS)


EXHAUSTIVE = [(flow, 1) for flow in sorted(oracle.SPEC_FLOWS)] + [
    (flow, 2) for flow in sorted(oracle.LAYERED)
]


@pytest.mark.parametrize(("flow", "layers"), EXHAUSTIVE)
def test_every_claimed_order_is_accepted_and_complete_only_at_its_end(
    library: FlowLibrary, flow: str, layers: int
) -> None:
    """Exhaustive for small lots: each complete order of flows.md, each of its prefixes."""
    spec = library.get(flow)
    for word in oracle.words(flow, layers):
        for end in range(len(word) + 1):
            prefix = word[:end]
            position = spec.position(prefix, {"layers": layers})
            assert position.complete == oracle.complete(flow, layers, prefix), prefix
            assert position.next_steps == oracle.next_steps(flow, layers, prefix), prefix


# --- stiffener-bga -------------------------------------------------------------------------


def test_stiffener_bga_accepts_balls_before_dicing(library: FlowLibrary) -> None:
    """Claim 6: solder balls formed before dicing."""
    assert library.get("stiffener-bga").position([*STIFFENER, "BALL_MOUNT", "DICE"], {}).complete


def test_stiffener_bga_accepts_balls_after_dicing(library: FlowLibrary) -> None:
    """Claim 5: solder balls formed after dicing."""
    assert library.get("stiffener-bga").position([*STIFFENER, "DICE", "BALL_MOUNT"], {}).complete


def test_stiffener_bga_after_mold_offers_both_orders_and_is_not_complete(
    library: FlowLibrary,
) -> None:
    position = library.get("stiffener-bga").position(STIFFENER, {})
    assert position.next_steps == {"BALL_MOUNT", "DICE"}
    assert not position.complete


def test_mold_before_stiffener_attach_is_refused(library: FlowLibrary) -> None:
    """The mold covers both surfaces of the stiffener (claim 1): MOLD after STIFFENER_ATTACH."""
    error = _refused(
        library, "stiffener-bga", ["SUBSTRATE_LOAD", "DIE_ATTACH", "WIRE_BOND", "MOLD"]
    )
    assert (error.index, error.step, error.after) == (3, "MOLD", "WIRE_BOND")
    assert error.allowed == {"STIFFENER_ATTACH"}
    assert "step 4, MOLD, is not allowed after WIRE_BOND" in str(error)
    assert "allowed: STIFFENER_ATTACH" in str(error)


def test_skipping_wire_bond_is_refused(library: FlowLibrary) -> None:
    error = _refused(library, "stiffener-bga", ["SUBSTRATE_LOAD", "DIE_ATTACH", "STIFFENER_ATTACH"])
    assert error.index == 2
    assert error.allowed == {"WIRE_BOND"}


def test_a_repeated_step_is_refused(library: FlowLibrary) -> None:
    error = _refused(library, "stiffener-bga", ["SUBSTRATE_LOAD", "DIE_ATTACH", "DIE_ATTACH"])
    assert (error.index, error.step) == (2, "DIE_ATTACH")


def test_balls_twice_around_dicing_is_refused(library: FlowLibrary) -> None:
    error = _refused(library, "stiffener-bga", [*STIFFENER, "BALL_MOUNT", "DICE", "BALL_MOUNT"])
    assert error.index == 7
    assert error.allowed == frozenset()
    assert "complete" in str(error)


def test_a_first_step_that_does_not_start_the_flow_is_refused(library: FlowLibrary) -> None:
    error = _refused(library, "stiffener-bga", ["DIE_ATTACH"])
    assert (error.index, error.after) == (0, None)
    assert error.allowed == {"SUBSTRATE_LOAD"}
    assert "as the first step" in str(error)


def test_a_step_code_the_flow_does_not_have_is_refused_by_name(library: FlowLibrary) -> None:
    error = _refused(library, "stiffener-bga", ["SUBSTRATE_LOAD", "UNDERFILL"])
    assert error.step == "UNDERFILL"
    assert "not a step of flow stiffener-bga" in str(error)
    assert "DIE_ATTACH" in str(error)


def test_the_empty_path_offers_the_first_step(library: FlowLibrary) -> None:
    position = library.get("fo-organic-recon").position([], {})
    assert position.next_steps == {"CARRIER_LOAD"}
    assert not position.complete
    assert position.layer is None


# --- flip chip ----------------------------------------------------------------------------


def test_fc_heatsink_is_complete_after_mold_with_optional_balls_and_dicing(
    library: FlowLibrary,
) -> None:
    """BALL_MOUNT (claim 7) and DICE (not claimed) are optional: a lead-frame lot has none."""
    flow = library.get("fc-heatsink-muf")
    after_mold = flow.position(FC_HEATSINK, {})
    assert after_mold.complete
    assert after_mold.next_steps == {"BALL_MOUNT", "DICE"}
    assert flow.position([*FC_HEATSINK, "BALL_MOUNT"], {}).next_steps == {"DICE"}
    done = flow.position([*FC_HEATSINK, "BALL_MOUNT", "DICE"], {})
    assert done.complete
    assert done.next_steps == frozenset()
    assert flow.position([*FC_HEATSINK, "DICE"], {}).complete


def test_fc_balls_after_dicing_are_refused(library: FlowLibrary) -> None:
    error = _refused(library, "fc-heatsink-muf", [*FC_HEATSINK, "DICE", "BALL_MOUNT"])
    assert error.index == 5


def test_fc_heatsink_has_no_separate_underfill(library: FlowLibrary) -> None:
    """One MOLD fills the flip-chip gap and covers the heat sink (claim 1)."""
    error = _refused(library, "fc-heatsink-muf", ["SUBSTRATE_LOAD", "FLIP_CHIP_BOND", "FILL"])
    assert error.allowed == {"PASSIVE_ATTACH", "TIM_DISPENSE", "HEAT_SINK_ATTACH"}


def test_fc_mold_before_heat_sink_is_refused(library: FlowLibrary) -> None:
    error = _refused(library, "fc-heatsink-muf", ["SUBSTRATE_LOAD", "FLIP_CHIP_BOND", "MOLD"])
    assert error.step == "MOLD"


def test_fc_passives_and_adhesive_come_in_the_claimed_order(library: FlowLibrary) -> None:
    flow = library.get("fc-heatsink-muf")
    path = ["SUBSTRATE_LOAD", "FLIP_CHIP_BOND", "PASSIVE_ATTACH", "TIM_DISPENSE"]
    assert flow.position(path, {}).next_steps == {"HEAT_SINK_ATTACH"}
    _refused(
        library,
        "fc-heatsink-muf",
        ["SUBSTRATE_LOAD", "FLIP_CHIP_BOND", "TIM_DISPENSE", "PASSIVE_ATTACH"],
    )


def test_fc_stack_attaches_the_face_up_chip_before_the_flip_chip(library: FlowLibrary) -> None:
    """Claim 14: first chip face up on the carrier, second chip flip-chip bonded onto it."""
    flow = library.get("fc-stack-muf")
    path = [
        "SUBSTRATE_LOAD",
        "DIE_ATTACH",
        "FLIP_CHIP_BOND",
        "WIRE_BOND",
        "HEAT_SINK_ATTACH",
        "MOLD",
    ]
    assert flow.position(path, {}).complete
    _refused(library, "fc-stack-muf", ["SUBSTRATE_LOAD", "FLIP_CHIP_BOND"])


def test_fc_stack3_bonds_flip_chip_die_attach_flip_chip(library: FlowLibrary) -> None:
    """Claim 16: flip chip on the carrier, a chip face up on it, a flip chip on that."""
    flow = library.get("fc-stack3-muf")
    path = [
        "SUBSTRATE_LOAD",
        "FLIP_CHIP_BOND",
        "DIE_ATTACH",
        "FLIP_CHIP_BOND",
        "HEAT_SINK_ATTACH",
        "MOLD",
        "BALL_MOUNT",
        "DICE",
    ]
    assert flow.position(path, {}).complete
    error = _refused(
        library, "fc-stack3-muf", ["SUBSTRATE_LOAD", "FLIP_CHIP_BOND", "FLIP_CHIP_BOND"]
    )
    assert error.allowed == {"DIE_ATTACH"}


# --- fan-out -------------------------------------------------------------------------------

METALS = [["SPUTTER"], ["SPUTTER", "ELECTROPLATE"], ["ELECTROPLATE"], ["ELECTROLESS_PLATE"]]


@pytest.mark.parametrize("metal", METALS, ids=lambda m: "+".join(m))
@pytest.mark.parametrize("flow", ["fo-organic", "fo-metal", "fo-organic-recon", "fo-metal-recon"])
def test_every_metal_alternative_is_a_wiring_layer(
    library: FlowLibrary, flow: str, metal: list[str]
) -> None:
    """Sputtering, electroplating or electroless plating (002/003 claims 76, 88)."""
    head = FO_HEAD if flow in ("fo-organic", "fo-metal") else RECON_HEAD
    path = [*head, "DIELECTRIC_COAT", "VIA_PATTERN", *metal, "BALL_MOUNT", "DICE"]
    assert library.get(flow).position(path, {"layers": 1}).complete


def test_electroplate_then_sputter_is_refused(library: FlowLibrary) -> None:
    path = [*FO_HEAD, "DIELECTRIC_COAT", "VIA_PATTERN", "ELECTROPLATE", "SPUTTER"]
    error = _refused(library, "fo-organic", path, layers=1)
    assert error.allowed == {"PASSIVATION", "BALL_MOUNT"}


def test_via_fill_comes_between_thru_holes_and_wiring(library: FlowLibrary) -> None:
    flow = library.get("fo-organic")
    path = [*FO_HEAD, "DIELECTRIC_COAT", "VIA_PATTERN", "VIA_FILL"]
    assert flow.position(path, {}).next_steps == {"SPUTTER", "ELECTROPLATE", "ELECTROLESS_PLATE"}
    _refused(library, "fo-organic", [*FO_HEAD, "DIELECTRIC_COAT", "VIA_FILL"])


@pytest.mark.parametrize("layers", [1, 8])
def test_fo_organic_accepts_one_and_eight_wiring_layers(library: FlowLibrary, layers: int) -> None:
    flow = library.get("fo-organic")
    path = [*FO_HEAD, "FILL", *LAYER * layers, *FINISH]
    assert flow.position(path, {"layers": layers}).complete


def test_fewer_layers_than_the_lot_has_is_not_complete(library: FlowLibrary) -> None:
    flow = library.get("fo-organic")
    position = flow.position([*FO_HEAD, *LAYER * 2], {"layers": 3})
    assert position.next_steps == {"DIELECTRIC_COAT"}
    error = _refused(library, "fo-organic", [*FO_HEAD, *LAYER * 2, "BALL_MOUNT"], layers=3)
    assert error.allowed == {"DIELECTRIC_COAT"}


def test_one_layer_more_than_the_lot_has_is_refused(library: FlowLibrary) -> None:
    error = _refused(library, "fo-organic", [*FO_HEAD, *LAYER * 3], layers=2)
    assert error.step == "DIELECTRIC_COAT"
    assert error.allowed == {"PASSIVATION", "BALL_MOUNT"}


def test_the_default_layer_count_applies_when_the_lot_gives_none(library: FlowLibrary) -> None:
    flow = library.get("fo-metal")
    assert flow.position([*FO_HEAD, *LAYER * 2, "BALL_MOUNT", "DICE"], {}).complete
    assert flow.position([], {}).layers == 2


def test_dicing_before_bonding_points_is_refused(library: FlowLibrary) -> None:
    """Singulation after the bonding points (claims 80, 92, 99)."""
    error = _refused(library, "fo-organic", [*FO_HEAD, *LAYER * 2, "DICE"])
    assert error.allowed == {"PASSIVATION", "BALL_MOUNT"}


def test_recon_debonds_after_the_optional_second_fill(library: FlowLibrary) -> None:
    """Claims 144, 145: the second filling layer before the carrier is removed."""
    flow = library.get("fo-organic-recon")
    head = ["CARRIER_LOAD", "DIE_ATTACH", "FILL", "GRIND", "SUBSTRATE_BOND"]
    assert flow.position(head, {}).next_steps == {"FILL", "DEBOND"}
    assert flow.position([*head, "FILL"], {}).next_steps == {"DEBOND"}
    _refused(library, "fo-organic-recon", [*head, "DEBOND", "FILL"])


def test_recon_grinds_before_the_substrate_is_bonded(library: FlowLibrary) -> None:
    _refused(library, "fo-metal-recon", ["CARRIER_LOAD", "DIE_ATTACH", "FILL", "SUBSTRATE_BOND"])


@pytest.mark.parametrize("thin", [[], ["THIN"]], ids=["without-thin", "with-thin"])
@pytest.mark.parametrize("layers", [1, 3])
def test_insulating_flow_with_and_without_thinning(
    library: FlowLibrary, thin: list[str], layers: int
) -> None:
    flow = library.get("fo-organic-insulating")
    first = ["VIA_PATTERN", "VIA_FILL", "ELECTROLESS_PLATE"]
    path = [*INSULATING_HEAD, *thin, *first, *LAYER * (layers - 1), "BALL_MOUNT", "DICE"]
    assert flow.position(path, {"layers": layers}).complete


def test_insulating_flow_has_no_dielectric_coat_for_the_first_layer(library: FlowLibrary) -> None:
    """The insulating substrate is the first dielectric (claims 102, 111)."""
    flow = library.get("fo-organic-insulating")
    assert flow.position(INSULATING_HEAD, {}).next_steps == {"THIN", "VIA_PATTERN"}
    error = _refused(library, "fo-organic-insulating", [*INSULATING_HEAD, "DIELECTRIC_COAT"])
    assert error.allowed == {"THIN", "VIA_PATTERN"}


def test_insulating_flow_thins_only_before_the_thru_holes(library: FlowLibrary) -> None:
    """Claim 108: thinning after adhering the substrate and before patterning it."""
    _refused(library, "fo-organic-insulating", [*INSULATING_HEAD, "VIA_PATTERN", "THIN"])


# --- wiring layers -------------------------------------------------------------------------


def test_the_layer_of_each_step_counts_the_layer_instances(library: FlowLibrary) -> None:
    flow = library.get("fo-organic")
    path = [*FO_HEAD, "FILL", *LAYER * 3, *FINISH]
    expected = [None, None, None, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, None, None, None]
    seen = [flow.position(path[: i + 1], {"layers": 3}).layer for i in range(len(path))]
    assert seen == expected
    assert flow.position(path, {"layers": 3}).layers == 3


def test_the_insulating_flows_first_wiring_layer_is_layer_1(library: FlowLibrary) -> None:
    flow = library.get("fo-organic-insulating")
    path = [*INSULATING_HEAD, "THIN", "VIA_PATTERN", "SPUTTER", *LAYER]
    layers = [flow.position(path[: i + 1], {"layers": 2}).layer for i in range(len(path))]
    assert layers == [None] * 6 + [1, 1, 2, 2, 2, 2]
    assert flow.position(path, {"layers": 2}).layers == 2


def test_a_single_layer_insulating_lot_has_only_the_first_layer(library: FlowLibrary) -> None:
    flow = library.get("fo-organic-insulating")
    path = [*INSULATING_HEAD, "VIA_PATTERN", "SPUTTER"]
    position = flow.position(path, {"layers": 1})
    assert position.next_steps == {"ELECTROPLATE", "PASSIVATION", "BALL_MOUNT"}
    assert (position.layer, position.layers) == (1, 1)


@pytest.mark.parametrize(
    "flow", ["stiffener-bga", "fc-heatsink-muf", "fc-stack-muf", "fc-stack3-muf"]
)
def test_flows_without_wiring_layers_report_no_layers(library: FlowLibrary, flow: str) -> None:
    position = library.get(flow).position(["SUBSTRATE_LOAD"], {})
    assert (position.layer, position.layers) == (None, None)


def test_a_layer_count_that_is_not_a_whole_number_is_refused(library: FlowLibrary) -> None:
    with pytest.raises(ValueError, match=r"layers must be a whole number, not 2\.5"):
        library.get("fo-organic").position([], {"layers": 2.5})
    with pytest.raises(ValueError, match="layers must be a whole number, not 'two'"):
        library.get("fo-organic").position([], {"layers": "two"})
    assert library.get("fo-organic").position([], {"layers": 3.0}).layers == 3
