"""Values through the public API: CLI text into typed values, defaults merged, the names the
tools use, limits in words, and the errors that say what was expected."""

from __future__ import annotations

import pytest

from flows import (
    Equals,
    FlowLibrary,
    GreaterThan,
    Limit,
    OneOf,
    Range,
    UnknownFlow,
)
from tests.flows.conftest import ctx


def test_a_float_value_parses_numbers_and_says_what_it_expected(library: FlowLibrary) -> None:
    spec = library.get("stiffener-bga").steps["SUBSTRATE_LOAD"].recipe["substrate_thickness_mm"]
    assert (spec.type, spec.unit) == ("float", "mm")
    assert spec.parse(" 0.25 ") == 0.25
    assert spec.parse("1") == 1.0
    assert isinstance(spec.parse("1"), float)
    for bad in ("thin", "", "nan", "inf"):
        with pytest.raises(ValueError, match="substrate_thickness_mm: expected a number in mm"):
            spec.parse(bad)


def test_an_int_value_refuses_a_fraction(library: FlowLibrary) -> None:
    spec = library.get("stiffener-bga").steps["STIFFENER_ATTACH"].recipe["stiffener_opening_rows"]
    assert spec.parse("5") == 5
    with pytest.raises(
        ValueError, match=r"stiffener_opening_rows: expected a whole number, got '4\.5'"
    ):
        spec.parse("4.5")


def test_a_word_value_is_stripped_and_lists_its_choices(library: FlowLibrary) -> None:
    spec = library.get("fo-organic").steps["DIELECTRIC_COAT"].recipe["dielectric_material"]
    assert spec.parse(" polyimide ") == "polyimide"
    assert spec.expected() == "one of polyimide, benzocyclobutene, porous_dielectric, stress_buffer"
    with pytest.raises(ValueError, match="expected one of polyimide"):
        spec.parse("  ")


def test_units_follow_the_value_names(library: FlowLibrary) -> None:
    flow = library.get("fc-heatsink-muf")
    assert flow.steps["MOLD"].recipe["compound_thermal_conductivity_w_mk"].unit == "W/m.K"
    assert flow.steps["MOLD"].recipe["mold_temperature_c"].unit == "degC"
    assert flow.steps["HEAT_SINK_ATTACH"].recipe["heat_sink_area_mm2"].unit == "mm2"
    assert flow.steps["BALL_MOUNT"].measured["missing_balls"].unit is None


def test_lot_parameters_from_text_merge_over_the_defaults(library: FlowLibrary) -> None:
    flow = library.get("fo-metal")
    assert flow.lot_params_from({}) == {"layers": 2, "die_thickness_um": 150.0}
    assert flow.lot_params_from({"layers": "4"}) == {"layers": 4, "die_thickness_um": 150.0}


def test_an_unknown_lot_parameter_lists_the_expected_names(library: FlowLibrary) -> None:
    with pytest.raises(ValueError, match=r"'layer'; expected one of: die_thickness_um, layers"):
        library.get("fo-metal").lot_params_from({"layer": "3"})
    with pytest.raises(ValueError, match="expected one of: none"):
        library.get("stiffener-bga").lot_params_from({"layers": "3"})


def test_track_in_values_merge_over_the_step_defaults(library: FlowLibrary) -> None:
    flow = library.get("fc-heatsink-muf")
    values = flow.step_values_from("MOLD", {"cure_time_s": "120"}, "recipe")
    assert values["cure_time_s"] == 120.0
    assert values["compound_material"] == "epoxy_resin"
    assert values == {**flow.steps["MOLD"].recipe_defaults(), "cure_time_s": 120.0}


def test_track_out_values_are_only_those_given(library: FlowLibrary) -> None:
    flow = library.get("fc-heatsink-muf")
    assert flow.step_values_from("MOLD", {"cure_time_s": "91.5"}, "measured") == {
        "cure_time_s": 91.5
    }


def test_an_unknown_step_value_lists_the_expected_names(library: FlowLibrary) -> None:
    flow = library.get("fo-organic")
    with pytest.raises(
        ValueError, match=r"'dose'; expected one of: exposure_dose_mj_cm2, via_diameter_um"
    ):
        flow.step_values_from("VIA_PATTERN", {"dose": "300"}, "recipe")
    with pytest.raises(ValueError, match="overlay_um"):
        flow.step_values_from("VIA_PATTERN", {"dose": "300"}, "measured")


def test_a_step_the_flow_does_not_have_is_refused(library: FlowLibrary) -> None:
    flow = library.get("fo-organic")
    with pytest.raises(ValueError, match=r"step of flow fo-organic: 'MOLD'; expected one of:"):
        flow.step_values_from("MOLD", {}, "recipe")
    with pytest.raises(ValueError, match="'MOLD'"):
        flow.check_track_in("MOLD", {}, ctx())


def test_checks_refuse_values_the_step_does_not_have(library: FlowLibrary) -> None:
    flow = library.get("fo-organic")
    with pytest.raises(ValueError, match="'dose'"):
        flow.check_track_in("VIA_PATTERN", {"dose": 3.0}, ctx())
    with pytest.raises(ValueError, match="'final_thickness_um'"):
        library.get("fo-organic-insulating").check_track_out(
            "THIN", {"final_thickness_um": 50.0}, ctx()
        )
    with pytest.raises(ValueError, match="'levels'"):
        flow.check_lot_start({"levels": 3}, ctx())


def test_the_recipe_name_is_flow_slash_step(library: FlowLibrary) -> None:
    assert library.get("fo-organic").recipe_name("DIELECTRIC_COAT") == "fo-organic/DIELECTRIC_COAT"


def test_a_measured_value_may_take_its_tool_value_under_another_name(library: FlowLibrary) -> None:
    """THIN records the grinder's final_thickness_um as insulating_thickness_um."""
    thin = library.get("fo-organic-insulating").steps["THIN"]
    spec = thin.measured["insulating_thickness_um"]
    assert (spec.tool_value, spec.tool_name) == ("final_thickness_um", "final_thickness_um")
    reported = {"final_thickness_um": 48.0, "ttv_um": 1.2, "wheel_speed_rpm": 4000.0}
    assert thin.from_tool(reported) == {"insulating_thickness_um": 48.0, "ttv_um": 1.2}
    assert thin.from_tool({}) == {}


def test_recipe_values_go_to_the_tool_under_their_names(library: FlowLibrary) -> None:
    thin = library.get("fo-organic-insulating").steps["THIN"]
    assert thin.to_tool(thin.recipe_defaults()) == {
        "target_thickness_um": 50.0,
        "wheel_speed_rpm": 4000.0,
    }


@pytest.mark.parametrize(
    ("limit", "words"),
    [
        (Limit("x", None, Range(0.1, 0.5), "000: 14"), "0.1 to 0.5"),
        (Limit("x", None, OneOf(("copper",)), "000: 8"), "one of copper"),
        (Limit("x", None, OneOf(("epoxy", "polymer")), "002: 71"), "one of epoxy, polymer"),
        (
            Limit("x", None, Equals("standoff_height_um", 5.0), "001: 2"),
            "equal to standoff_height_um within 5",
        ),
        (Limit("x", None, Equals("site_rows"), "000: 2"), "equal to site_rows"),
        (Limit("x", None, GreaterThan("die_area_mm2"), "001: 1"), "greater than die_area_mm2"),
        (Limit("x", None, GreaterThan(1.2), "001: 4"), "greater than 1.2"),
    ],
)
def test_a_limit_describes_itself_in_words(limit: Limit, words: str) -> None:
    assert limit.describe() == words


def test_a_limit_describes_its_reference_with_its_value() -> None:
    limit = Limit("heat_sink_area_mm2", "HEAT_SINK_ATTACH", GreaterThan("die_area_mm2"), "001: 1")
    assert limit.reference == "die_area_mm2"
    assert limit.describe(120.0) == "greater than die_area_mm2 (120)"


def test_an_unknown_flow_lists_the_flows(library: FlowLibrary) -> None:
    with pytest.raises(LookupError) as caught:
        library.get("fo-gold")
    assert isinstance(caught.value, UnknownFlow)
    assert str(caught.value) == (
        "unknown flow 'fo-gold'; the flows are: fc-heatsink-muf, fc-stack-muf, fc-stack3-muf, "
        "fo-metal, fo-metal-recon, fo-organic, fo-organic-insulating, fo-organic-recon, "
        "stiffener-bga"
    )


def test_step_specs_are_read_only(library: FlowLibrary) -> None:
    step = library.get("fo-organic").steps["FILL"]
    with pytest.raises(TypeError):
        step.recipe["filling_material"] = step.recipe["filling_material"]  # type: ignore[index]
    with pytest.raises(TypeError):
        library.flows["x"] = library.get("fo-organic")  # type: ignore[index]


@pytest.mark.parametrize(
    "typed", ["1_000", "\u0663", "\uff13", "\u00b2", "0x10", "1.5", "--3", "3 4", ""]
)
def test_a_whole_number_is_read_only_as_typed_at_a_keyboard(
    library: FlowLibrary, typed: str
) -> None:
    spec = library.get("fo-metal").lot_params["layers"]
    with pytest.raises(ValueError, match="layers: expected a whole number"):
        spec.parse(typed)


@pytest.mark.parametrize("typed", ["3", "+3", " 3 ", "-0", "007"])
def test_a_whole_number_takes_a_sign_and_spaces_around(library: FlowLibrary, typed: str) -> None:
    assert library.get("fo-metal").lot_params["layers"].parse(typed) == int(typed)


def test_a_whole_number_past_pythons_digit_limit_says_so(library: FlowLibrary) -> None:
    with pytest.raises(ValueError, match="at most 19 digits, got 5000 digits"):
        library.get("fo-metal").lot_params["layers"].parse("9" * 5000)


@pytest.mark.parametrize(
    "typed",
    ["1_000.5", "\u0661\u0665\u0660", "\uff11\uff15\uff10", "infinity", "NaN", "1e999", "1,5", "."],
)
def test_a_number_is_read_only_as_typed_at_a_keyboard(library: FlowLibrary, typed: str) -> None:
    spec = library.get("fo-metal").lot_params["die_thickness_um"]
    with pytest.raises(ValueError, match="die_thickness_um: expected a number"):
        spec.parse(typed)


@pytest.mark.parametrize(
    ("typed", "value"),
    [("150", 150.0), ("1.5e2", 150.0), (".5", 0.5), ("5.", 5.0), ("-2E-1", -0.2)],
)
def test_a_number_takes_decimals_and_exponents(
    library: FlowLibrary, typed: str, value: float
) -> None:
    assert library.get("fo-metal").lot_params["die_thickness_um"].parse(typed) == value


@pytest.mark.parametrize("typed", ["poly\x1b[2Jimide", "poly\u202eimide", "a\nb"])
def test_a_word_with_a_control_or_format_character_is_refused(
    library: FlowLibrary, typed: str
) -> None:
    spec = library.get("fo-organic").steps["DIELECTRIC_COAT"].recipe["dielectric_material"]
    with pytest.raises(ValueError, match="control or format character"):
        spec.parse(typed)
