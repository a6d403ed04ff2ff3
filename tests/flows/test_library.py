"""The library as data: the step codes, flows, defaults, claims and rework marks of flows.md.

These tests pin the defs files to the specification, so that an edit that drops a step, a
default or a claim reference is caught here rather than on the line.
"""

from __future__ import annotations

import re

import pytest

from flows import FlowLibrary, ReworkSpec
from tests.flows import oracle

# flows.md, "Step codes": code -> equipment class.
EQUIPMENT = {
    "SUBSTRATE_LOAD": "manual",
    "SUBSTRATE_PREP": "manual",
    "CARRIER_LOAD": "manual",
    "DIE_ATTACH": "die_bonder",
    "FLIP_CHIP_BOND": "die_bonder",
    "WIRE_BOND": "wire_bonder",
    "STIFFENER_ATTACH": "die_bonder",
    "PASSIVE_ATTACH": "die_bonder",
    "TIM_DISPENSE": "die_bonder",
    "HEAT_SINK_ATTACH": "die_bonder",
    "MOLD": "molder",
    "FILL": "molder",
    "GRIND": "grinder",
    "SUBSTRATE_BOND": "laminator",
    "THIN": "grinder",
    "DEBOND": "debonder",
    "DIELECTRIC_COAT": "coater",
    "VIA_PATTERN": "litho",
    "VIA_FILL": "plater",
    "SPUTTER": "sputter",
    "ELECTROPLATE": "plater",
    "ELECTROLESS_PLATE": "plater",
    "PASSIVATION": "coater",
    "BALL_MOUNT": "ball_mounter",
    "DICE": "dicer",
}

# flows.md, "Flows": the document each flow comes from.
DOCUMENT = {
    "stiffener-bga": "000",
    "fc-heatsink-muf": "001",
    "fc-stack-muf": "001",
    "fc-stack3-muf": "001",
    "fo-organic": "002",
    "fo-organic-recon": "002",
    "fo-organic-insulating": "002",
    "fo-metal": "003",
    "fo-metal-recon": "003",
}

# The only recipe values with no default: standoffs are optional (001 claims 2, 11).
OPTIONAL = {("HEAT_SINK_ATTACH", "standoff_height_um")}

CLAIM = re.compile(r"^(?P<docs>\d{3}(?:/\d{3})?): \d+(?:-\d+)?(?:, \d+(?:-\d+)?)*$")

FO = sorted(oracle.LAYERED)


def test_the_step_codes_are_those_of_the_specification(library: FlowLibrary) -> None:
    assert list(library.step_codes) == oracle.STEP_CODES
    for code, info in library.step_codes.items():
        assert (info.code, info.equipment_class) == (code, EQUIPMENT[code])
        assert info.description


@pytest.mark.parametrize("flow", sorted(DOCUMENT))
def test_each_flow_names_its_document_claims_and_version(library: FlowLibrary, flow: str) -> None:
    spec = library.get(flow)
    assert spec.name == flow
    assert spec.document == DOCUMENT[flow]
    assert spec.claims
    assert spec.title
    assert spec.description
    assert isinstance(spec.version, int)
    assert spec.version >= 1
    for code, step in spec.steps.items():
        assert step.code == code
        assert step.equipment_class == EQUIPMENT[code]


@pytest.mark.parametrize("flow", sorted(DOCUMENT))
def test_every_limit_cites_a_claim_of_the_flows_own_document(
    library: FlowLibrary, flow: str
) -> None:
    spec = library.get(flow)
    limits = [lim for s in spec.lot_params.values() for lim in s.limits]
    for step in spec.steps.values():
        limits += step.checks
        for value in (*step.recipe.values(), *step.measured.values()):
            limits += value.limits
    assert limits
    for limit in limits:
        match = CLAIM.match(limit.claim)
        assert match, f"{flow}: {limit.value}: claim {limit.claim!r} is not 'ddd: n, n-m'"
        assert spec.document in match["docs"].split("/"), (flow, limit)


@pytest.mark.parametrize("flow", sorted(DOCUMENT))
def test_every_recipe_value_and_lot_parameter_has_a_default(
    library: FlowLibrary, flow: str
) -> None:
    spec = library.get(flow)
    for name, param in spec.lot_params.items():
        assert param.default is not None, name
    for code, step in spec.steps.items():
        for name, value in step.recipe.items():
            assert (value.default is None) == ((code, name) in OPTIONAL), (code, name)
        for name, value in step.measured.items():
            assert value.default is None, (code, name)


def test_fan_out_flows_mark_their_wiring_layers(library: FlowLibrary) -> None:
    layered = {name for name, flow in library.flows.items() if flow.has_layers}
    assert layered == oracle.LAYERED
    for name in oracle.LAYERED:
        layers = library.get(name).lot_params["layers"]
        assert (layers.type, layers.default) == ("int", 2)


@pytest.mark.parametrize("flow", FO)
def test_a_dielectric_layer_may_be_recoated_through_its_thru_holes(
    library: FlowLibrary, flow: str
) -> None:
    steps = library.get(flow).steps
    assert steps["DIELECTRIC_COAT"].rework == ReworkSpec(2, frozenset({"VIA_PATTERN"}))
    assert steps["PASSIVATION"].rework == ReworkSpec(2, frozenset())
    assert steps["BALL_MOUNT"].rework == ReworkSpec(1, frozenset())


@pytest.mark.parametrize(
    "flow", ["stiffener-bga", "fc-heatsink-muf", "fc-stack-muf", "fc-stack3-muf"]
)
def test_balls_may_be_mounted_again_before_dicing(library: FlowLibrary, flow: str) -> None:
    assert library.get(flow).steps["BALL_MOUNT"].rework == ReworkSpec(1, frozenset())


def test_a_substrate_still_too_thick_may_be_thinned_again(library: FlowLibrary) -> None:
    assert library.get("fo-organic-insulating").steps["THIN"].rework == ReworkSpec(1, frozenset())


@pytest.mark.parametrize("flow", sorted(DOCUMENT))
def test_rework_only_undoes_steps_of_the_flow(library: FlowLibrary, flow: str) -> None:
    spec = library.get(flow)
    reworkable = {code for code, step in spec.steps.items() if step.rework is not None}
    assert reworkable
    for code in reworkable:
        rework = spec.steps[code].rework
        assert rework is not None
        assert rework.max_reworks >= 1
        assert rework.through <= set(spec.steps)


def test_only_the_insulating_flow_checks_recorded_values(library: FlowLibrary) -> None:
    checked = {
        (name, code)
        for name, flow in library.flows.items()
        for code, step in flow.steps.items()
        if step.checks
    }
    assert checked == {("fo-organic-insulating", "VIA_PATTERN")}
