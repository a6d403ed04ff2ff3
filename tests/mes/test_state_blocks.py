"""A tool down by the E10 state its line controller recorded takes no lot: `line status`
names it blocked, with why and what is expected, in the words of the refused track-in
(:func:`mes.domain.interlocks.state_blocks`). Pure rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mes.domain.equipment import UNMONITORED, DispatchMode, ToolRecord
from mes.domain.errors import InterlockRefused
from mes.domain.interlocks import Qualification, check_tool, state_blocks
from mes.domain.tool_state import ToolSnapshot

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _tool(tool_id: str, e10: str, mode: str | None = None, reason: str | None = None) -> ToolRecord:
    snapshot = ToolSnapshot(True, e10, "READY", mode, reason=reason)
    return ToolRecord(
        tool_id, "line-a", "wire_bonder", "modbus 127.0.0.1:5021", ("WIRE_BOND",),
        DispatchMode.MANUAL, snapshot, T0, T0,
    )  # fmt: skip


def test_a_tool_in_maintenance_or_alarm_is_blocked_in_the_words_of_the_refused_track_in() -> None:
    """Found by an equipment engineer's walkthrough: the only wire bonder switched to its
    MAINTENANCE mode (E10 scheduled_down), a lot waited for WIRE_BOND and `line status`'s
    queue named the tool with nothing saying it takes no lot (a durable spent or a
    disqualification was said; the tool's own state was not)."""
    tools = [
        _tool("WB-1", "scheduled_down", "MAINTENANCE"),
        _tool("WB-2", "unscheduled_down", reason="no answer: connection refused"),
        _tool("WB-3", "standby", "PRODUCTION"),
        _tool("WB-4", "productive", "PRODUCTION"),
        _tool("WB-5", "engineering", "ENGINEERING"),
        _tool("WB-6", UNMONITORED),  # its controller's line says it is not running
    ]
    blocks = state_blocks(tools)
    assert set(blocks) == {"WB-1", "WB-2"}
    assert blocks["WB-1"] == [
        "WB-1 is scheduled_down, mode MAINTENANCE; expected WB-1 up (standby, productive or "
        "engineering)"
    ]
    (why,) = blocks["WB-2"]
    assert why.startswith("WB-2 is unscheduled_down: no answer: connection refused; expected")
    # the words are those an operator's refused track-in says
    qualified = {"WB-1": Qualification("WB-1", "WIRE_BOND", True, "eng", T0)}
    with pytest.raises(InterlockRefused) as refused:
        check_tool("L1", "WIRE_BOND", "wire_bonder", "WB-1", tools[0], qualified, dispatched=False)
    assert refused.value.interlock == "tool_state"
    assert refused.value.expected is not None and refused.value.expected in blocks["WB-1"][0]
    assert "WB-1 is scheduled_down, mode MAINTENANCE" in str(refused.value)


def test_a_tool_a_person_declared_down_is_blocked_in_the_words_of_its_refusal() -> None:
    """A tool declared down for planned maintenance (``pkgline tool down``) is blocked in the
    queue with who declared it and why, and the way back (``pkgline tool up``), as its
    refused track-in says; not as a tool in maintenance mode of its own."""
    from dataclasses import replace

    declared = replace(
        _tool("WB-1", "scheduled_down"),
        down="scheduled_down",
        down_by="tech1",
        down_at=T0,
        down_reason="PM: capillary and transducer",
        reported_e10="standby",
    )
    (why,) = state_blocks([declared])["WB-1"]
    assert "declared by tech1" in why and "PM: capillary and transducer" in why
    assert why.endswith(
        "expected WB-1 brought back up first (pkgline tool up WB-1), or another qualified tool"
    )
    qualified = {"WB-1": Qualification("WB-1", "WIRE_BOND", True, "eng", T0)}
    with pytest.raises(InterlockRefused) as refused:
        check_tool("L1", "WIRE_BOND", "wire_bonder", "WB-1", declared, qualified, dispatched=False)
    assert refused.value.interlock == "tool_down"
    assert refused.value.expected is not None and refused.value.expected in why
