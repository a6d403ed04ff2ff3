"""Loading the defs: a malformed file is a FlowError that reads ``path:line: message``.

Each test copies the packaged defs into a temporary directory, breaks one thing and checks
that the error names the file, the line and what was expected.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flows import DEFS, FlowError, load_library
from pkgline.datafiles import DataFileError


@pytest.fixture
def defs(tmp_path: Path) -> Path:
    target = tmp_path / "defs"
    shutil.copytree(DEFS, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not once in {path.name}"
    path.write_text(text.replace(old, new))


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def load_error(defs: Path) -> FlowError:
    with pytest.raises(FlowError) as caught:
        load_library(defs)
    return caught.value


def assert_at(error: FlowError, path: Path, needle: str, *fragments: str) -> None:
    """The error is at the line of ``path`` holding ``needle`` and says each fragment."""
    line = line_of(path, needle)
    assert str(error).startswith(f"{path}:{line}: "), str(error)
    for fragment in fragments:
        assert fragment in str(error), str(error)


def test_the_packaged_defs_load(defs: Path) -> None:
    assert len(load_library(defs).flows) == 9


def test_a_flow_error_is_a_data_file_error(defs: Path) -> None:
    edit(defs / "fo-metal.yaml", "version: 1", "version: one")
    assert isinstance(load_error(defs), DataFileError)


# --- sequences -----------------------------------------------------------------------------


def test_an_unknown_step_code_in_a_sequence_is_named_with_its_column(defs: Path) -> None:
    flow = defs / "stiffener-bga.yaml"
    edit(flow, "WIRE_BOND STIFFENER_ATTACH", "WIRE_BOMD STIFFENER_ATTACH")
    error = load_error(defs)
    assert_at(
        error,
        flow,
        "sequence:",
        "sequence, column 27: unknown step code or fragment 'WIRE_BOMD'",
        "did you mean WIRE_BOND?",
    )


def test_an_unclosed_bracket_is_reported_at_its_column(defs: Path) -> None:
    flow = defs / "fc-heatsink-muf.yaml"
    edit(flow, "[PASSIVE_ATTACH] [TIM_DISPENSE]", "[PASSIVE_ATTACH [TIM_DISPENSE]")
    error = load_error(defs)
    assert_at(
        error,
        flow,
        "sequence:",
        "column 103: expected ']' to close the '[' at column 31",
        "found the end of the text",
    )


def test_a_repeat_without_its_count_is_refused(defs: Path) -> None:
    flow = defs / "fo-organic.yaml"
    edit(flow, "{ LAYER } x layers FINISH", "{ LAYER } FINISH")
    assert_at(load_error(defs), flow, "sequence:", "expected 'x' and a repeat count after '}'")


def test_an_unknown_fragment_is_named(defs: Path) -> None:
    flow = defs / "fo-metal.yaml"
    edit(flow, "x layers FINISH", "x layers FINNISH")
    assert_at(load_error(defs), flow, "sequence:", "'FINNISH'", "did you mean FINISH?")


def test_an_error_in_a_block_sequence_names_its_own_line(defs: Path) -> None:
    flow = defs / "fo-metal.yaml"
    edit(
        flow,
        'sequence: "SUBSTRATE_PREP DIE_ATTACH [FILL] { LAYER } x layers FINISH"',
        "sequence: |\n  SUBSTRATE_PREP DIE_ATTACH [FILL]\n  { LAYER } x layers FINISH ]",
    )
    error = load_error(defs)
    assert_at(error, flow, "{ LAYER } x layers FINISH ]", "column 27: unexpected ']'")


def test_an_unquoted_sequence_is_explained(defs: Path) -> None:
    fragments = defs / "fragments.yaml"
    edit(fragments, 'sequence: "[PASSIVATION] BALL_MOUNT DICE"', "sequence: [PASSIVATION]")
    assert_at(
        load_error(defs), fragments, "sequence: [PASSIVATION]", "must be text in quotes", "list"
    )


def test_a_fragment_that_refers_to_itself_is_refused(defs: Path) -> None:
    fragments = defs / "fragments.yaml"
    edit(fragments, 'sequence: "[PASSIVATION] BALL_MOUNT DICE"', 'sequence: "BALL_MOUNT FINISH"')
    assert_at(load_error(defs), fragments, 'sequence: "BALL_MOUNT FINISH"', "FINISH -> FINISH")


def test_a_repeat_count_must_be_an_int_lot_parameter(defs: Path) -> None:
    flow = defs / "fo-organic.yaml"
    edit(flow, "{ LAYER } x layers", "{ LAYER } x levels")
    assert_at(
        load_error(defs), flow, "sequence:", "repeat count levels", "lot parameter of type int"
    )


def test_a_repeat_count_that_could_be_negative_is_refused(defs: Path) -> None:
    flow = defs / "fo-organic-insulating.yaml"
    edit(flow, "x (layers - 1)", "x (layers - 2)")
    assert_at(load_error(defs), flow, "sequence:", "(layers - 2) could be negative")


def test_a_wiring_layer_cannot_be_optional(defs: Path) -> None:
    flow = defs / "fo-organic.yaml"
    edit(flow, "[FILL] { LAYER } x layers", "[FILL] [LAYER] { LAYER } x layers")
    assert_at(load_error(defs), flow, "sequence:", "column 35", "cannot be optional")


def test_a_fragment_cannot_specify_a_step_it_does_not_contain(defs: Path) -> None:
    fragments = defs / "fragments.yaml"
    edit(fragments, "    PASSIVATION:\n      rework", "    FILL:\n      rework")
    assert_at(load_error(defs), fragments, "    FILL:", "FINISH specifies step FILL")


# --- steps and values ----------------------------------------------------------------------


def test_a_step_the_flow_does_not_run_is_refused(defs: Path) -> None:
    flow = defs / "stiffener-bga.yaml"
    edit(flow, "  SUBSTRATE_LOAD:\n    recipe:", "  SUBSTRATE_PREP:\n    recipe:")
    assert_at(load_error(defs), flow, "  SUBSTRATE_PREP:", "SUBSTRATE_PREP is not in the sequence")


def test_a_step_code_that_is_not_upper_case_is_refused(defs: Path) -> None:
    steps = defs / "steps.yaml"
    edit(steps, "DICE:\n", "dice:\n")
    error = load_error(defs)
    assert str(error).startswith(f"{steps}:")
    assert "dice" in str(error)
    assert "String should match pattern '^[A-Z][A-Z0-9_]*$'" in str(error)


def test_a_limit_without_a_claim_is_refused(defs: Path) -> None:
    flow = defs / "stiffener-bga.yaml"
    edit(flow, '{range: [0.1, 0.5], claim: "000: 14"}', "{range: [0.1, 0.5]}")
    assert_at(
        load_error(defs), flow, "substrate_thickness_mm:", "a limit needs the claim it comes from"
    )


def test_a_range_upside_down_is_refused(defs: Path) -> None:
    flow = defs / "stiffener-bga.yaml"
    edit(flow, "range: [0.1, 0.5]", "range: [0.5, 0.1]")
    assert_at(load_error(defs), flow, "range: [0.5, 0.1]", "the low end is above the high end")


def test_a_range_on_a_word_is_refused(defs: Path) -> None:
    flow = defs / "stiffener-bga.yaml"
    edit(flow, "stiffener_material: {one_of: [copper]", "stiffener_material: {range: [1, 2]")
    assert_at(load_error(defs), flow, "stiffener_material:", "a range needs a number")


def test_a_one_of_with_a_word_for_a_number_is_refused(defs: Path) -> None:
    flow = defs / "fo-organic.yaml"
    edit(flow, "range: [1, 8]", "one_of: [1, two]")
    assert_at(load_error(defs), flow, "one_of: [1, two]", "one_of 'two' is not a int")


def test_an_unknown_value_referenced_by_a_limit_is_named(defs: Path) -> None:
    flow = defs / "fc-stack-muf.yaml"
    edit(
        flow,
        "mold_cap_over_heat_sink_um: {default: 100.0, equals: standoff_height_um",
        "mold_cap_over_heat_sink_um: {default: 100.0, equals: standof_height_um",
    )
    assert_at(
        load_error(defs),
        flow,
        "equals: standof_height_um",
        "refers to 'standof_height_um', which is no value of flow fc-stack-muf",
        "did you mean standoff_height_um?",
    )


def test_a_limit_comparing_with_a_word_is_refused(defs: Path) -> None:
    flow = defs / "fc-heatsink-muf.yaml"
    edit(flow, "greater_than: die_area_mm2", "greater_than: heat_sink_material")
    assert_at(load_error(defs), flow, "greater_than: heat_sink_material", "a word, not a number")


def test_tolerance_without_equals_is_refused(defs: Path) -> None:
    flow = defs / "fc-heatsink-muf.yaml"
    edit(flow, "{greater_than: 1.2, claim", "{greater_than: 1.2, tolerance: 1, claim")
    assert_at(load_error(defs), flow, "tolerance: 1", "tolerance is only meaningful with equals")


def test_a_default_outside_its_own_limit_is_refused(defs: Path) -> None:
    steps = defs / "steps.yaml"
    edit(steps, "substrate_thickness_mm: {default: 0.3", "substrate_thickness_mm: {default: 0.6")
    flow = defs / "stiffener-bga.yaml"
    error = load_error(defs)
    assert_at(error, steps, "substrate_thickness_mm:", "default 0.6 is outside its own limit")
    assert "0.1 to 0.5 (claim 000: 14)" in str(error)
    assert flow.exists()


def test_a_recipe_value_without_default_must_say_optional(defs: Path) -> None:
    steps = defs / "steps.yaml"
    edit(steps, "standoff_height_um: {optional: true, ", "standoff_height_um: {")
    assert_at(load_error(defs), steps, "standoff_height_um:", "no default; give one, or mark")


def test_a_measured_value_has_no_default(defs: Path) -> None:
    steps = defs / "steps.yaml"
    edit(steps, "    kerf_width_um: {}", "    kerf_width_um: {default: 35.0}")
    assert_at(load_error(defs), steps, "kerf_width_um: {default", "a measured value has no default")


def test_a_default_of_the_wrong_type_is_refused(defs: Path) -> None:
    steps = defs / "steps.yaml"
    edit(
        steps,
        "stiffener_opening_rows: {type: int, default: 4,",
        "stiffener_opening_rows: {type: int, default: 4.5,",
    )
    assert_at(load_error(defs), steps, "stiffener_opening_rows:", "default 4.5 is not a int")


def test_one_name_cannot_have_two_types_in_a_flow(defs: Path) -> None:
    steps = defs / "steps.yaml"
    edit(steps, "    ttv_um: {}\n\nSUBSTRATE_BOND", "    ttv_um: {type: int}\n\nSUBSTRATE_BOND")
    error = load_error(defs)
    assert "ttv_um is a" in str(error)
    assert "a value name means one thing throughout a flow" in str(error)


def test_a_comma_inside_an_unquoted_text_is_explained(defs: Path) -> None:
    steps = defs / "steps.yaml"
    edit(steps, 'description: "solder_ball, bump or pin"', "description: solder_ball, bump or pin")
    assert_at(
        load_error(defs),
        steps,
        "description: solder_ball, bump",
        "a comma inside { ... } ends a text",
    )


def test_an_unknown_field_is_refused(defs: Path) -> None:
    flow = defs / "fo-organic.yaml"
    edit(flow, "range: [1, 8]", "range: [1, 8], maximum: 8")
    assert_at(
        load_error(defs),
        flow,
        "maximum: 8",
        "lot_params.layers.maximum: unknown field 'maximum'; expected one of range, one_of, ",
        "tool_value",
    )


def test_a_misspelt_field_is_named_with_the_fields_expected_and_the_nearest(defs: Path) -> None:
    """Found by the engineer's walk-through: ``spec: {low: 12, ...}`` said only "Extra inputs
    are not permitted", and ``max_minutes: 4h`` said it twice, once per kind of number."""
    flow = defs / "fo-organic.yaml"
    edit(flow, "warn_minutes: 180, max_minutes: 240", "warn_minutes: 180, max_minute: 240")
    assert_at(
        load_error(defs),
        flow,
        "max_minute: 240",
        "queue_times.0.max_minutes: the field max_minutes is missing; it is required here",
        "queue_times.0.max_minute: unknown field 'max_minute' (did you mean max_minutes?); "
        "expected one of from, to, max_minutes, warn_minutes, origin",
    )
    edit(flow, "max_minute: 240", "max_minutes: 4h")
    error = str(load_error(defs))
    assert error.endswith("queue_times.0.max_minutes: expected a number, not '4h'"), error


def test_a_misspelt_required_field_is_said_first_as_the_unknown_field_at_its_own_line(
    defs: Path,
) -> None:
    """``equipment_clas: manual`` is two mistakes to pydantic, equipment_class missing (at
    the step's line) and equipment_clas unknown; the misspelling is the one to fix, at its
    own line, so it comes first."""
    steps = defs / "steps.yaml"
    text = steps.read_text()
    steps.write_text(text.replace("equipment_class: manual", "equipment_clas: manual", 1))
    error = str(load_error(defs))
    first = next(n for n, line in enumerate(text.splitlines(), 1) if "equipment_class" in line)
    assert error.startswith(
        f"{steps}:{first}: SUBSTRATE_LOAD.equipment_clas: unknown field 'equipment_clas' (did "
        "you mean equipment_class?)"
    ), error
    assert "(and 1 more: " in error and "the field equipment_class is missing" in error


def test_duplicate_keys_are_refused(defs: Path) -> None:
    flow = defs / "fc-heatsink-muf.yaml"
    edit(flow, "  MOLD:\n    recipe:", "  MOLD:\n    recipe: {}\n    recipe:")
    error = load_error(defs)
    assert "duplicate key 'recipe'" in str(error)
    assert str(error).startswith(f"{flow}:")


def test_checks_must_name_a_recorded_value(defs: Path) -> None:
    flow = defs / "fo-organic-insulating.yaml"
    edit(flow, "    checks:\n      insulating_thickness_um:", "    checks:\n      insulation_um:")
    assert_at(
        load_error(defs), flow, "insulation_um:", "'insulation_um' is no recipe or measured value"
    )


def test_rework_through_a_step_of_another_flow_is_refused(defs: Path) -> None:
    flow = defs / "stiffener-bga.yaml"
    edit(
        flow,
        "rework: {max_reworks: 1, through: []}",
        "rework: {max_reworks: 1, through: [PASSIVATION]}",
    )
    assert_at(
        load_error(defs),
        flow,
        "through: [PASSIVATION]",
        "PASSIVATION is not a step of flow stiffener-bga",
    )


def test_a_flow_file_must_carry_its_own_name(defs: Path) -> None:
    (defs / "fo-metal.yaml").rename(defs / "fo-steel.yaml")
    flow = defs / "fo-steel.yaml"
    assert_at(load_error(defs), flow, "name: fo-metal", "name the file fo-metal.yaml")


def test_an_unquoted_document_number_is_explained(defs: Path) -> None:
    flow = defs / "fo-metal.yaml"
    edit(flow, 'document: "003"', "document: 003")
    assert_at(load_error(defs), flow, "document: 003", 'write it in quotes, as text: "003"')


def test_invalid_yaml_is_reported_with_its_line(defs: Path) -> None:
    flow = defs / "fo-metal.yaml"
    edit(flow, "title: Fan-out", "title: [Fan-out")
    error = load_error(defs)
    assert "not valid YAML" in str(error)
    assert str(error).startswith(f"{flow}:")


def test_a_missing_steps_file_is_reported(defs: Path) -> None:
    (defs / "steps.yaml").unlink()
    assert "cannot read" in str(load_error(defs))


def test_a_flow_file_that_is_no_text_is_reported(defs: Path) -> None:
    (defs / "fo-metal.yaml").write_bytes(b"title: \xff\n")
    assert "fo-metal.yaml: not UTF-8 text (byte 7)" in str(load_error(defs))


def test_a_check_on_a_lot_parameter_is_refused(defs: Path) -> None:
    """A lot parameter is never recorded at a step: such a check would never apply."""
    flow = defs / "fo-organic-insulating.yaml"
    edit(flow, "    checks:\n      insulating_thickness_um:", "    checks:\n      layers:")
    assert_at(load_error(defs), flow, "      layers:", "'layers' is no recipe or measured value")


def test_a_claim_without_a_limit_is_refused(defs: Path) -> None:
    flow = defs / "fo-metal.yaml"
    edit(
        flow,
        "die_thickness_um: {default: 150.0,",
        'die_thickness_um: {default: 150.0, claim: "003: 65",',
    )
    assert_at(load_error(defs), flow, "die_thickness_um:", "claim given but no limit")
