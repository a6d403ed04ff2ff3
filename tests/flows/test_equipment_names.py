"""The flows speak the equipment's vocabulary (drivers/classes.yaml).

Every recipe value of a tool step is a value its equipment class accepts, or a material or
claim value for the lot record that no tool takes (the explicit list below); every measured
value, or the tool value it aliases, is one the class reports. flows/ does not import drivers
(layering): the cross-check lives here.
"""

from __future__ import annotations

import pytest

from drivers.catalogue import ClassSpec, load_catalogue
from drivers.model import EquipmentClass
from flows import FlowLibrary, OneOf, ValueSpec
from pkgline.bootstrap import LOT_RECORD_VALUES

# Recipe values that are for the lot record and the claimed limits, not for the tool: the
# list a published version is held to (pkgline.bootstrap.recipe_not_taken).
NOT_FOR_TOOL = set(LOT_RECORD_VALUES)

_TYPES = {"float": "float", "int": "int", "str": "enum"}


def _class_of(step_class: str) -> ClassSpec:
    return load_catalogue()[EquipmentClass(step_class)]


def _compatible(spec: ValueSpec, tool_type: str, tool_words: tuple[str, ...] | None) -> None:
    assert _TYPES[spec.type] == tool_type, (spec.name, spec.type, tool_type)
    if tool_words is not None:
        words = {
            c for limit in spec.limits if isinstance(limit.rule, OneOf) for c in limit.rule.choices
        }
        if isinstance(spec.default, str):
            words.add(spec.default)
        assert words <= set(tool_words), (spec.name, words - set(tool_words))


def _tool_steps(library: FlowLibrary) -> list[tuple[str, str]]:
    return [
        (flow_name, code)
        for flow_name, flow in sorted(library.flows.items())
        for code, step in flow.steps.items()
        if step.equipment_class != "manual"
    ]


def test_every_tool_step_has_an_equipment_class_of_the_catalogue(library: FlowLibrary) -> None:
    classes = {code: info.equipment_class for code, info in library.step_codes.items()}
    for code, name in classes.items():
        if name != "manual":
            assert name in {c.value for c in EquipmentClass}, code


def test_every_tool_recipe_value_is_accepted_by_its_class_or_listed_as_not_for_the_tool(
    library: FlowLibrary,
) -> None:
    used: set[tuple[str, str]] = set()
    for flow_name, code in _tool_steps(library):
        step = library.get(flow_name).steps[code]
        spec = _class_of(step.equipment_class)
        for name, value in step.recipe.items():
            if (code, name) in NOT_FOR_TOOL:
                used.add((code, name))
                assert value.tool_name not in spec.recipe, f"{code}.{name} is a tool value"
                continue
            assert value.tool_name in spec.recipe, (
                f"{flow_name}: {code} recipe value {value.tool_name} is not a recipe value of "
                f"{step.equipment_class}: {sorted(spec.recipe)}"
            )
            tool = spec.recipe[value.tool_name]
            _compatible(value, tool.type, tool.values)
    assert used == NOT_FOR_TOOL, "the list names values no flow uses any more"


def test_every_measured_value_is_reported_by_its_class(library: FlowLibrary) -> None:
    for flow_name, code in _tool_steps(library):
        step = library.get(flow_name).steps[code]
        spec = _class_of(step.equipment_class)
        assert step.measured, f"{flow_name}: {code} records no measured value"
        for value in step.measured.values():
            assert value.tool_name in spec.measured, (
                f"{flow_name}: {code} measured value {value.tool_name} is not reported by "
                f"{step.equipment_class}: {sorted(spec.measured)}"
            )
            tool = spec.measured[value.tool_name]
            _compatible(value, tool.type, tool.values)


@pytest.mark.parametrize("code", ["SUBSTRATE_LOAD", "SUBSTRATE_PREP", "CARRIER_LOAD"])
def test_manual_steps_have_no_measured_values(library: FlowLibrary, code: str) -> None:
    for flow in library.flows.values():
        if code in flow.steps:
            assert flow.steps[code].measured == {}
