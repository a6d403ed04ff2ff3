"""Spec limits of measured values (lower, upper, target, origin) in the flow files, beside the
claimed limits: loaded and checked apart from them; a malformed one is a FlowError at its
line; a value outside one is a violation of kind ``spec_lower`` or ``spec_upper``."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows import FlowLibrary
from flows.speclimits import check_spec
from tests.flows.test_loader import assert_at, defs, edit, load_error

__all__ = ["defs"]  # the fixture, imported for these tests

STEPS_LINE = "    bond_line_thickness_um: {spec: {lower: 10.0, upper: 40.0, target: 25.0, origin:"


def test_die_attach_carries_its_spec_limits_with_their_origin(library: FlowLibrary) -> None:
    measured = library.get("fo-organic").steps["DIE_ATTACH"].measured
    blt = measured["bond_line_thickness_um"].spec
    assert blt is not None
    assert (blt.lower, blt.upper, blt.target) == (10.0, 40.0, 25.0)
    assert blt.origin.startswith("line practice")
    assert measured["bond_force_n"].spec is None


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (9.5, "spec_lower", ">= 10 um, target 25 um"),
        (40.5, "spec_upper", "<= 40 um, target 25 um"),
    ],
)
def test_a_value_outside_a_spec_limit_says_the_value_the_limit_and_which(
    library: FlowLibrary, value: float, kind: str, expected: str
) -> None:
    (violation,) = library.get("fo-organic").check_spec(
        "DIE_ATTACH", {"bond_line_thickness_um": value, "bond_force_n": 1e6}
    )
    assert (violation.value_name, violation.value, violation.kind) == (
        "bond_line_thickness_um",
        value,
        kind,
    )
    assert violation.expected == expected
    assert violation.claim.startswith("line practice")


@given(st.floats(min_value=10.0, max_value=40.0))
def test_values_within_the_spec_limits_edges_included_pass(
    library: FlowLibrary, value: float
) -> None:
    measured = library.get("fo-organic").steps["DIE_ATTACH"].measured
    assert check_spec("DIE_ATTACH", measured, {"bond_line_thickness_um": value}) == []


def test_spec_limits_on_a_recipe_value_are_refused_at_their_line(defs: Path) -> None:
    steps = defs / "steps.yaml"
    edit(
        steps,
        "    bond_temperature_c: {default: 240.0}",
        "    bond_temperature_c: {default: 240.0, spec: {upper: 260, origin: line practice}}",
    )
    assert_at(
        load_error(defs),
        steps,
        "bond_temperature_c: {default: 240.0, spec",
        "spec limits are for measured values",
        "or a set-point window (window:, line practice)",
    )


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("{lower: 40.0, upper: 10.0, origin: x}", "spec lower 40.0 is above upper 10.0"),
        ("{lower: 10.0, upper: 40.0, target: 50.0, origin: x}", "target 50.0 is outside"),
        ("{target: 25.0, origin: x}", "need a lower or an upper limit"),
        ("{lower: 10.0}", "origin"),
    ],
)
def test_malformed_spec_limits_are_refused_at_their_line(defs: Path, spec: str, says: str) -> None:
    steps = defs / "steps.yaml"
    edit(
        steps,
        '{spec: {lower: 10.0, upper: 40.0, target: 25.0, origin: "line practice: die attach film"}}',
        f"{{spec: {spec}}}",
    )
    error = load_error(defs)
    assert str(error).startswith(f"{steps}:"), str(error)
    assert says in str(error)
