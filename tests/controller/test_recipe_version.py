"""The recipe the controller downloads carries the lot's flow version, so that a tool
reporting another recipe is refused naming the version expected."""

from __future__ import annotations

from drivers.errors import RecipeMismatch
from pkgline.bootstrap import flow_library
from pkgline.controller import translate


def test_the_recipe_is_named_with_the_lots_flow_version() -> None:
    flow = flow_library().get("stiffener-bga")
    spec = flow.steps["DIE_ATTACH"]
    accepted = [*spec.to_tool(spec.recipe_defaults())]
    on_v3 = translate.tool_recipe(flow, "DIE_ATTACH", spec.recipe_defaults(), accepted, 3)
    on_v1 = translate.tool_recipe(flow, "DIE_ATTACH", spec.recipe_defaults(), accepted, 1)
    assert (on_v3.version, on_v1.version) == (3, 1)
    assert on_v3.body == on_v1.body
    mismatch = RecipeMismatch(expected=on_v3.info(), actual=on_v1.info(), tool_id="DB-1")
    assert f"expected {on_v3.name} v3" in mismatch.message
