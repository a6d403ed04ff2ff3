"""Set-point windows of recipe values (``window: {lower, upper, target, origin}``, line
practice) in the flow files: every default sits inside its window; a malformed window, one on
a word, on a measured value or a lot parameter, and a default outside its own window are
refused at their line; the pure check accepts the limits and refuses just past them; a
version's diff names a window changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows import FlowLibrary
from flows.loader import flow_sources, load_sources
from flows.model import SpecLimits
from flows.speclimits import outside_window, window_text
from flows.versions import diff
from tests.flows.test_loader import assert_at, defs, edit, load_error

__all__ = ["defs"]  # the fixture, imported for these tests

MOLD_LINE = (
    "    mold_temperature_c: {default: 175.0, window: {lower: 165.0, upper: 185.0, "
    'target: 175.0, origin: "line practice: epoxy molding compound transfer molding"}}'
)
WINDOW = "window: {lower: 165.0, upper: 185.0, target: 175.0, origin: "


def test_the_mold_and_fill_set_points_carry_their_windows_with_their_origin(
    library: FlowLibrary,
) -> None:
    mold = library.get("stiffener-bga").steps["MOLD"].recipe
    assert mold["mold_temperature_c"].window == SpecLimits(
        165.0, 185.0, 175.0, "line practice: epoxy molding compound transfer molding"
    )
    fill = library.get("fo-organic").steps["FILL"].recipe
    for name in ("mold_temperature_c", "transfer_pressure_mpa", "cure_time_s"):
        window = fill[name].window
        assert window is not None and window.origin.startswith("line practice: ")
    assert mold["compound_material"].window is None


def test_every_default_sits_inside_its_window(library: FlowLibrary) -> None:
    seen = 0
    for flow in library.flows.values():
        for step in flow.steps.values():
            for spec in step.recipe.values():
                if spec.window is None:
                    continue
                seen += 1
                assert isinstance(spec.default, float)
                assert outside_window(spec.window, spec.default) is None, spec
            for spec in step.measured.values():
                assert spec.window is None
    assert seen > 0


@pytest.mark.parametrize(
    ("window", "says"),
    [
        ("{lower: 185.0, upper: 165.0, origin: x}", "window lower 185.0 is above upper 165.0"),
        ("{lower: .nan, upper: 185.0, origin: x}", "window lower nan is not a finite number"),
        ("{lower: 165.0, upper: .inf, origin: x}", "window upper inf is not a finite number"),
        ("{lower: 165.0, upper: 185.0, target: 190.0, origin: x}", "target 190.0 is outside"),
        ("{target: 175.0, origin: x}", "a window needs a lower or an upper limit"),
        ("{lower: 165.0, upper: 185.0}", "origin"),
    ],
)
def test_a_malformed_window_is_refused_at_its_line(defs: Path, window: str, says: str) -> None:
    steps = defs / "steps.yaml"
    edit(steps, MOLD_LINE, f"    mold_temperature_c: {{default: 175.0, window: {window}}}")
    error = load_error(defs)
    assert_at(error, steps, "mold_temperature_c: {default: 175.0, window:", says)


def test_a_default_outside_its_own_window_is_refused_at_the_default(defs: Path) -> None:
    steps = defs / "steps.yaml"
    edit(steps, MOLD_LINE, MOLD_LINE.replace("default: 175.0", "default: 195.0"))
    assert_at(
        load_error(defs),
        steps,
        "mold_temperature_c: {default: 195.0",
        "mold_temperature_c: default 195 degC is outside its own window 165 to 185 degC, target "
        "175 degC (line practice: epoxy molding compound transfer molding): above the upper "
        "limit 185 degC; expected a default inside it",
    )


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        (
            "    wire_material: {default: gold}",
            "    wire_material: {default: gold, window: {lower: 1, origin: x}}",
            "wire_material: a window needs a number, not a word",
        ),
        (
            "    mold_temperature_c: {}\n    transfer_pressure_mpa: {}\n    cure_time_s: {}\n\n"
            "FILL:",
            "    mold_temperature_c: {window: {upper: 185.0, origin: x}}\n"
            "    transfer_pressure_mpa: {}\n    cure_time_s: {}\n\nFILL:",
            "a window is for a recipe set point, refused at track-in outside it; a measured "
            "value has spec limits (spec:)",
        ),
    ],
)
def test_a_window_on_a_word_or_a_measured_value_is_refused_at_its_line(
    defs: Path, old: str, new: str, says: str
) -> None:
    steps = defs / "steps.yaml"
    edit(steps, old, new)
    error = load_error(defs)
    assert str(error).startswith(f"{steps}:"), str(error)
    assert says in str(error)


def test_a_window_on_a_lot_parameter_is_refused_at_its_line(defs: Path) -> None:
    flow = defs / "fo-organic.yaml"
    edit(
        flow,
        "  layers: {type: int, default: 2,",
        "  layers: {window: {upper: 4, origin: x}, type: int, default: 2,",
    )
    assert_at(
        load_error(defs), flow, "layers: {window:", "layers: a window is for a recipe set point"
    )


def test_the_window_check_accepts_its_limits_and_refuses_just_past_them() -> None:
    window = SpecLimits(165.0, 185.0, 175.0, "line practice")
    assert [outside_window(window, v, "degC") for v in (165.0, 175.0, 185.0)] == [None] * 3
    assert outside_window(window, 164.99, "degC") == "below the lower limit 165 degC"
    assert outside_window(window, 185.01, "degC") == "above the upper limit 185 degC"
    assert window_text(window, "degC") == "165 to 185 degC, target 175 degC"
    assert window_text(SpecLimits(None, 15.0, None, "x"), "um") == "at most 15 um"
    assert window_text(SpecLimits(2.0, None, None, "x"), "N", target=False) == "at least 2 N"


def test_the_diff_of_two_versions_names_a_window_changed_added_or_removed() -> None:
    files = flow_sources("stiffener-bga")
    wider = {
        **files,
        "steps.yaml": files["steps.yaml"].replace(WINDOW, WINDOW.replace("185", "195")),
    }
    line = MOLD_LINE.strip()
    none = {
        **files,
        "steps.yaml": files["steps.yaml"].replace(line, "mold_temperature_c: {default: 175.0}"),
    }
    built = {
        k: load_sources(v).get("stiffener-bga")
        for k, v in (("now", files), ("wider", wider), ("none", none))
    }
    origin = "(line practice: epoxy molding compound transfer molding)"
    assert diff(built["now"], built["wider"]) == [
        f"MOLD recipe: mold_temperature_c window [165.0, 185.0] target 175.0 {origin} -> "
        f"[165.0, 195.0] target 175.0 {origin}"
    ]
    assert diff(built["none"], built["now"]) == [
        f"MOLD recipe: mold_temperature_c window none -> [165.0, 185.0] target 175.0 {origin}"
    ]
