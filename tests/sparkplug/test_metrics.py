"""Each tool as a Sparkplug device: every measured value of its class is a metric, aliases are
unique across the node, and observations become metric values (an IDLE tool has no recipe)."""

from __future__ import annotations

from drivers.catalogue import load_catalogue
from drivers.model import EquipmentClass, JobResults, SiteMap
from mes.domain.equipment import ToolSnapshot
from pkgline.sparkplug import metrics as m
from pkgline.sparkplug.codec import DataType


def test_every_class_gets_its_measured_values_typed_as_the_catalogue_says() -> None:
    tools = [(f"T-{n}", cls) for n, cls in enumerate(EquipmentClass)]
    devices = m.devices_of(tools)
    for tool_id, cls in tools:
        kinds = {d.name: d.datatype for d in devices[tool_id].metrics}
        for name, spec in load_catalogue()[cls].measured.items():
            expected = {"float": DataType.Double, "int": DataType.Int64, "enum": DataType.String}
            assert kinds[m.MEASURED + name] == expected[spec.type]
    aliases = [d.alias for device in devices.values() for d in device.metrics]
    assert sorted(aliases) == list(range(1, len(aliases) + 1))


def test_an_idle_tool_has_no_recipe_and_an_alarm_sets_the_alarm_metrics() -> None:
    idle = m.from_snapshot(ToolSnapshot(connected=True, e10="standby", process_state="IDLE"))
    assert idle[m.RECIPE_NAME] is None and idle[m.ALARM_ACTIVE] is False
    alarm = {"code": 4, "text": "jam", "severity": "fatal"}
    down = m.from_snapshot(
        ToolSnapshot(connected=True, e10="unscheduled_down", process_state="ALARM", alarm=alarm)
    )
    assert m.RECIPE_NAME not in down
    assert (down[m.ALARM_ACTIVE], down[m.ALARM_CODE], down[m.ALARM_SEVERITY]) == (True, 4, "fatal")


def test_measured_values_the_class_does_not_know_or_of_the_wrong_type_are_left_out() -> None:
    (device,) = m.devices_of([("BM-1", EquipmentClass.BALL_MOUNTER)]).values()
    results = JobResults(
        "J1", "L1", "BALL_MOUNT", "C1",
        {"missing_balls": 2.0, "bonding_point": "laser", "reflow_peak_c": 245, "colour": "red"},
        SiteMap.all_good(1, 1),
    )  # fmt: skip
    values = m.from_results(device, results)
    assert values == {
        m.MEASURED_JOB: "J1",
        m.MEASURED + "missing_balls": 2,
        m.MEASURED + "reflow_peak_c": 245.0,
    }
    assert isinstance(values[m.MEASURED + "missing_balls"], int)
    assert isinstance(values[m.MEASURED + "reflow_peak_c"], float)


def test_same_tells_types_apart() -> None:
    assert m.same(1, 1) and m.same(None, None)
    assert not m.same(True, 1) and not m.same(1, 1.0) and not m.same(None, 0)
