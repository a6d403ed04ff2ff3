"""The SPC chart ``pkgline demo`` sets (pkgline.cli.demo_api.SPC_CHART) fits the simulated
line: it charts a value the simulators measure, on the tool of the example line that runs the
step, with limits no demo lot's point comes near, and on a step the demo's lots run fewer
times than the run of points rule 4 needs, so that the demo's lots all complete. The demo
itself, end to end, shows the chart's points (tests/cli/test_demo.py)."""

from __future__ import annotations

import math

from drivers.model import EquipmentClass
from mes.domain import commands as cmd
from mes.domain.operations import start_lot
from mes.service import utc_now
from pkgline.bootstrap import flow_library
from pkgline.cli.demo import CARRIERS, LOTS, _example_config
from pkgline.cli.demo_api import SPC_CHART
from pkgline.controller.line import tool_steps
from simulators.engine import load_profiles

RULE_4_RUN = 8
"""Rule 4 fires on eight points in a row on one side of the center (docs/interlocks.md):
whatever the limits, a chart of at least eight points of a value centred on the chart's
center fires it in one run of 128."""


def test_the_demo_chart_is_on_a_tool_of_the_demo_line_that_runs_its_step() -> None:
    tools = {t.id: t for t in _example_config().tools}
    assert SPC_CHART.tool in tools
    assert SPC_CHART.step in tool_steps(tools[SPC_CHART.tool], flow_library())


def test_the_demo_chart_is_centred_on_what_the_simulated_tool_measures_with_room_to_spare() -> None:
    tool = next(t for t in _example_config().tools if t.id == SPC_CHART.tool)
    profile = load_profiles()[EquipmentClass(tool.equipment_class)].measured[SPC_CHART.value]
    library = flow_library()
    targets = set()
    for flow, _ in LOTS:
        step = library.get(flow).steps.get(SPC_CHART.step)
        if step is None:
            continue
        if profile.follows is not None and profile.follows in step.recipe:
            targets.add(step.recipe[profile.follows].default)
        else:
            targets.add(profile.nominal)
    assert targets == {SPC_CHART.center}, "every demo lot's tool aims at the chart's center"
    # a lot's point is the mean of its carriers' values, each with the profile's noise
    point_sigma = profile.noise / math.sqrt(CARRIERS)
    assert SPC_CHART.sigma >= 2 * profile.noise
    assert SPC_CHART.sigma / point_sigma > 2.8  # rule 3's one sigma: beyond 2.8 of the points'


def test_the_demo_lots_run_the_charted_step_fewer_times_than_rule_4_needs() -> None:
    library = flow_library()
    points = 0
    for number, (flow, _) in enumerate(LOTS, start=1):
        started = start_lot(cmd.StartLot(f"P{number}", flow, "t"), library.get(flow), utc_now())
        lot, route = started.lot, list(started.lot.path)
        for _ in range(500):  # the route an unattended line takes: the first step allowed
            following = library.get(flow).position(route, lot.params).in_flow_order
            if not following:
                break
            route.append(following[0])
        points += route.count(SPC_CHART.step)
    assert 0 < points < RULE_4_RUN, points
