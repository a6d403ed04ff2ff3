"""The steps allowed next come in the order the flow writes them, so that a dispatcher that
always takes the first follows one deterministic route through optional steps and
alternatives."""

from __future__ import annotations

from flows import FlowLibrary


def test_optional_steps_and_first_alternatives_come_first(library: FlowLibrary) -> None:
    stiffener = library.get("stiffener-bga")
    after_mold = ["SUBSTRATE_LOAD", "DIE_ATTACH", "WIRE_BOND", "STIFFENER_ATTACH", "MOLD"]
    assert stiffener.position(after_mold, {}).in_flow_order == ("BALL_MOUNT", "DICE")
    organic = library.get("fo-organic")
    start = organic.position(["SUBSTRATE_PREP", "DIE_ATTACH"], {"layers": 2})
    assert start.in_flow_order == ("FILL", "DIELECTRIC_COAT")
    after_sputter = ["SUBSTRATE_PREP", "DIE_ATTACH", "DIELECTRIC_COAT", "VIA_PATTERN", "SPUTTER"]
    position = organic.position(after_sputter, {"layers": 2})
    assert position.in_flow_order == ("ELECTROPLATE", "DIELECTRIC_COAT")


def test_the_ordered_steps_are_exactly_the_allowed_ones(library: FlowLibrary) -> None:
    for flow in library.flows.values():
        position = flow.position([], flow.lot_param_defaults())
        assert set(position.in_flow_order) == position.next_steps
        assert len(position.in_flow_order) == len(position.next_steps)
