"""Track-in interlocks: whether a lot may start a step on the tool it names. Pure rules.

A track-in that names a tool is refused unless the tool exists, its equipment class runs the
step, engineering qualified it for the step, and (for an operator's track-in) the line
controller does not dispatch it, it is up and it runs no other lot. A track-in without a tool
is a step done off the line's tools and is recorded as such. Every refusal is an
:class:`~mes.domain.errors.InterlockRefused` that says which interlock and what was expected.

Where each rule comes from (docs/interlocks.md): the equipment class of a step is claimed
(flows.md, "Step codes"); qualification, dispatch and state are line practice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from mes.domain.durables import Durable, replacement_expected
from mes.domain.equipment import UNMONITORED, DispatchMode, ToolRecord
from mes.domain.errors import InterlockRefused
from mes.domain.materials import Material
from mes.domain.spc import SPC_USER
from mes.domain.text import utc_stamp
from mes.domain.tool_down import down_text

MANUAL_CLASS = "manual"
"""The equipment class of operator steps (flows/defs/steps.yaml)."""

DOWN_STATES = frozenset({"scheduled_down", "unscheduled_down", "non_scheduled", UNMONITORED})
"""E10 states (and ``unmonitored``) in which a tool takes no lot."""


@dataclass(frozen=True, slots=True)
class Qualification:
    """Engineering's word that a tool may (or, once disqualified, may not) run a step."""

    tool_id: str
    step: str
    qualified: bool
    by: str
    at: datetime
    reason: str | None = None


def qualified_tools(qualifications: Sequence[Qualification]) -> list[str]:
    """The ids of the tools qualified, sorted."""
    return sorted(q.tool_id for q in qualifications if q.qualified)


def check_tool(
    lot_id: str,
    step: str,
    step_class: str,
    tool_id: str,
    tool: ToolRecord | None,
    qualifications: Mapping[str, Qualification],
    *,
    dispatched: bool,
    busy_with: Sequence[str] = (),
) -> None:
    """Refuse a track-in of ``lot_id`` at ``step`` (run by tools of ``step_class``) on
    ``tool_id``, unless it may run there. ``tool`` is its record (None: no such tool),
    ``qualifications`` the step's by tool id, ``busy_with`` the other lots running on it.

    ``dispatched``: the tool's own line controller tracks the lot in. It follows the tool live
    and knows better than the database whether the tool is up and free (the database's record
    of the tool's state is written after the fact, and the controller tracks a tool's next lot
    in while the last one's results are recorded): only class, qualification and a person's
    declaration that the tool is down (:mod:`mes.domain.tool_down`) are checked.
    """
    allowed = qualified_tools(list(qualifications.values()))
    where = f"{step} (class {step_class})"

    def refuse(
        interlock: str, message: str, expected: str, *, elsewhere: bool = False
    ) -> InterlockRefused:
        """``elsewhere``: the tool may run the step, but not now (dispatched, down, busy); the
        tools allowed are the other qualified ones, where the lot could go instead."""
        return InterlockRefused(
            f"track-in of lot {lot_id} at {step} on {tool_id} refused: {message}; "
            f"expected {expected}",
            interlock=interlock,
            expected=expected,
            lot_id=lot_id,
            allowed=[t for t in allowed if t != tool_id] if elsewhere else allowed,
        )

    qualified_text = (
        f"a tool qualified for {step} ({', '.join(allowed)})"
        if allowed
        else f"a tool qualified for {step} (none is: pkgline tool qualify TOOL --step {step})"
    )
    if step_class == MANUAL_CLASS:
        raise refuse(
            "manual_step",
            f"{step} is an operator step, run on no tool",
            "no --tool for a manual step",
        )
    if tool is None:
        raise refuse("unknown_tool", f"there is no tool {tool_id}", qualified_text)
    if tool.equipment_class != step_class:
        raise refuse(
            "tool_class",
            f"{tool_id} is a {tool.equipment_class}, {where} runs on a {step_class}",
            qualified_text,
        )
    found = qualifications.get(tool_id)
    if found is None or not found.qualified:
        why = (
            f"{tool_id} is not qualified for {step}"
            if found is None
            else f"{tool_id} was disqualified for {step} by {found.by} at "
            f"{utc_stamp(found.at, seconds=True)}" + (f" ({found.reason})" if found.reason else "")
        )
        expected = qualified_text
        if found is not None and found.by == SPC_USER and not allowed:
            # the way back is the engineer's clearing of the inhibit, not a qualification
            expected = (
                f"a tool qualified for {step} (none is: an engineer clears {tool_id} once the "
                f"violation is dealt with: pkgline spc clear {step} --tool {tool_id} --reason ...)"
            )
        raise refuse("tool_qualification", why, expected)
    if tool.down is not None:
        # people's word, which the controller (following the tool itself) does not know
        raise refuse("tool_down", *declared_down(tool), elsewhere=True)
    if dispatched:
        return
    if tool.dispatch is DispatchMode.AUTO:
        raise refuse(
            "tool_dispatch",
            f"line controller {tool.line!r} dispatches {tool_id}",
            f"{tool_id} switched to manual first (pkgline tool manual {tool_id})",
            elsewhere=True,
        )
    down = state_down(tool)
    if down is not None:
        raise refuse("tool_state", *down, elsewhere=True)
    if busy_with:
        raise refuse(
            "tool_busy",
            f"{tool_id} is running lot {', '.join(busy_with)}",
            f"{tool_id} free (track {', '.join(busy_with)} out or abort it first)",
            elsewhere=True,
        )


def declared_down(tool: ToolRecord) -> tuple[str, str]:
    """Why ``tool``, which a person declared down, takes no lot, and what is expected: the
    words of the ``tool_down`` refusal."""
    return (
        f"{tool.id} is {down_text(tool)}",
        f"{tool.id} brought back up first (pkgline tool up {tool.id}), or another qualified tool",
    )


def state_down(tool: ToolRecord) -> tuple[str, str] | None:
    """Why ``tool`` takes no lot for its E10 state, and what is expected (None: it is up):
    the words of the ``tool_down`` refusal where a person declared it down, else of the
    ``tool_state`` one."""
    if tool.down is not None:
        return declared_down(tool)
    snapshot = tool.snapshot
    if snapshot.e10 not in DOWN_STATES:
        return None
    state = snapshot.e10 + (f", mode {snapshot.mode}" if snapshot.mode else "")
    detail = f": {snapshot.reason}" if snapshot.reason else ""
    return f"{tool.id} is {state}{detail}", f"{tool.id} up (standby, productive or engineering)"


ELSEWHERE = frozenset({"tool_down", "tool_dispatch", "tool_state", "tool_busy"})
"""The refusals of a tool that may run the step but not now: their ``allowed`` names the
other qualified tools, where the lot could go instead (:func:`where_else` keeps those that
can take it)."""


def where_else(
    refusal: InterlockRefused,
    tools: Mapping[str, ToolRecord],
    busy: Mapping[str, Sequence[str]],
) -> InterlockRefused:
    """``refusal`` (one of :data:`ELSEWHERE`) with ``allowed`` cut to the qualified tools
    that can take the lot: up, and either dispatched by their controller (which takes the lot
    when its turn comes) or in manual and free (``busy``: the lots running on those in
    manual). A tool down, gone, or in manual and busy is no place to go now."""

    def can_take(tool_id: str) -> bool:
        tool = tools.get(tool_id)
        if tool is None or tool.snapshot.e10 in DOWN_STATES:
            return False
        return tool.dispatch is DispatchMode.AUTO or not busy.get(tool_id)

    return InterlockRefused(
        refusal.message,
        interlock=refusal.interlock,
        expected=refusal.expected,
        lot_id=refusal.lot_id,
        allowed=[t for t in refusal.allowed if can_take(t)],
    )


def check_tool_class(step: str, step_class: str, tool_id: str, tool_class: str) -> str | None:
    """Why a tool of ``tool_class`` must not run ``step`` (None: it may). The line controller
    asks this before it sends a recipe, whatever the database says."""
    if tool_class == step_class:
        return None
    return (
        f"tool {tool_id} is a {tool_class}, step {step} runs on a {step_class}: "
        "no recipe sent (the lot tracker's record of the track-in is wrong)"
    )


def qualification_blocks(
    step: str, tools: Sequence[ToolRecord], qualifications: Sequence[Qualification]
) -> dict[str, list[str]]:
    """The tools of ``tools`` disqualified for ``step`` (by engineering, or by an SPC
    violation's inhibit), by tool, with why and what is expected, in the words of the refused
    track-in (:func:`check_tool`): every track-in of ``step`` on them is refused. Tools with
    nothing in the way are left out."""
    found = {(q.tool_id, q.step): q for q in qualifications}
    blocks: dict[str, list[str]] = {}
    for tool in tools:
        q = found.get((tool.id, step))
        if q is None or q.qualified:
            continue
        expected = (
            f"an engineer clears {tool.id} once the violation is dealt with (pkgline spc clear "
            f"{step} --tool {tool.id} --reason ...)"
            if q.by == SPC_USER
            else f"{tool.id} qualified again (pkgline tool qualify {tool.id} --step {step})"
        )
        blocks[tool.id] = [
            f"{tool.id} was disqualified for {step} by {q.by} at "
            f"{utc_stamp(q.at, seconds=True)}"
            + (f" ({q.reason})" if q.reason else "")
            + f"; expected {expected}"
        ]
    return blocks


def consumable_blocks(
    durables: Sequence[Durable], materials: Sequence[Material], now: datetime
) -> dict[str, list[str]]:
    """What refuses every track-in on a tool at ``now`` for what is on it, by tool: a mounted
    durable at or past its life, a loaded material lot expired, not yet thawed or past its
    floor life (the rules of :func:`~mes.domain.durables.check_durables` and
    :meth:`~mes.domain.materials.Material.problem`, without the jobs not yet recorded).
    Tools with nothing in the way are left out."""
    blocks: dict[str, list[str]] = {}
    for d in durables:
        if d.tool_id is not None and d.spent:
            blocks.setdefault(d.tool_id, []).append(
                f"{d.text()}, at or past its life; expected {replacement_expected(d)}"
            )
    for m in materials:
        problem = m.problem(now)
        if m.tool_id is not None and problem is not None:
            blocks.setdefault(m.tool_id, []).append(f"{problem[1]}; expected {problem[2]}")
    return blocks


def state_blocks(tools: Sequence[ToolRecord]) -> dict[str, list[str]]:
    """The tools of ``tools`` down by the state their line controller last recorded (E10
    ``scheduled_down``: a maintenance or setup mode; ``unscheduled_down``: an alarm or no
    answer; ``non_scheduled``) or that a person declared down (``pkgline tool down``), by tool, with why and what is expected, in the words of the
    refused track-in (:func:`check_tool`): the controller starts no lot on them and an
    operator's track-in is refused. A tool ``unmonitored`` (no controller follows it) is left
    out: its controller's own line says it is not running, for every tool it has."""
    blocks: dict[str, list[str]] = {}
    for tool in tools:
        down = state_down(tool)
        if down is not None and tool.snapshot.e10 != UNMONITORED:
            blocks[tool.id] = [f"{down[0]}; expected {down[1]}"]
    return blocks
