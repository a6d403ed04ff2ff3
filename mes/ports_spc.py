"""SPC's seams (part of :mod:`mes.ports`): charts and their points, as requests a
transaction's :data:`mes.ports.Work` yields."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from mes.domain.spc import Chart, Point


@dataclass(frozen=True, slots=True)
class GetCharts:
    """Read the charts of a step (or of every step: ``step`` None), on one tool and/or of
    one value (answer: ``list[Chart]`` by step, value then tool; one statement). With
    ``running_lot`` (and no step or tool given): those of the step lot ``running_lot`` runs
    and the tool it runs on, as its record says (none for a lot not running on a tool)."""

    step: str | None
    tool_id: str | None = None
    value: str | None = None
    running_lot: str | None = None


@dataclass(frozen=True, slots=True)
class SaveChart:
    """Write a chart: it replaces the one of its (step, value, tool), if any (answer: None)."""

    chart: Chart


@dataclass(frozen=True, slots=True)
class GetPoints:
    """Read a chart's points, oldest first: the last ``last`` of them, or all (answer:
    ``list[Point]``)."""

    step: str
    value: str
    tool_id: str
    last: int | None = None


@dataclass(frozen=True, slots=True)
class CountPoints:
    """How many points a chart has (answer: ``int``; one statement, on the chart's index)."""

    step: str
    value: str
    tool_id: str


@dataclass(frozen=True, slots=True)
class AddPoints:
    points: tuple[Point, ...]


SpcRequest: TypeAlias = GetCharts | SaveChart | GetPoints | CountPoints | AddPoints


def get_charts(
    step: str | None,
    *,
    tool_id: str | None = None,
    value: str | None = None,
    running_lot: str | None = None,
) -> Generator[SpcRequest, Any, list[Chart]]:
    found: list[Chart] = yield GetCharts(step, tool_id, value, running_lot)
    return found


def save_chart(chart: Chart) -> Generator[SpcRequest, Any, None]:
    yield SaveChart(chart)


def get_points(
    step: str, value: str, tool_id: str, *, last: int | None = None
) -> Generator[SpcRequest, Any, list[Point]]:
    found: list[Point] = yield GetPoints(step, value, tool_id, last)
    return found


def count_points(step: str, value: str, tool_id: str) -> Generator[SpcRequest, Any, int]:
    found: int = yield CountPoints(step, value, tool_id)
    return found


def add_points(points: Sequence[Point]) -> Generator[SpcRequest, Any, None]:
    if points:
        yield AddPoints(tuple(points))
