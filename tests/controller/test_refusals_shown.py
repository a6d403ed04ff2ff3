"""The line controller's refused track-ins where an operator looks: a lot an interlock keeps
off a tool shows in ``line status`` (its JSON, as the server answers it, and the CLI's
table) with the tool, the step, the interlock's own message and since when, recorded with the
heartbeat (the same refusal at every dispatch pass keeps its time and writes nothing of its
own); it goes once the lot leaves that queue (held) or is tracked in."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest

from mes.adapters.database import create_engine
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.equipment import ControllerRecord, ToolRegistration
from mes.domain.model import LotState
from mes.materials import MaterialService
from mes.service import utc_now
from pkgline.bootstrap import open_services
from pkgline.line_views import read_status, status_dict
from tests.controller.conftest import Stack, line_config, running_controller, simulated, wait_until


async def _refused(stack: Stack) -> list[dict[str, Any]]:
    """The refusals ``line status --json`` shows, over every queue group."""
    async with open_services(stack.url) as services:
        shown = status_dict(await read_status(services, utc_now()), "db")
    return [r for g in shown["queue"] for r in g["refused"]]


async def _record(stack: Stack) -> ControllerRecord:
    [record] = await stack.equipment.controllers()
    return record


@pytest.mark.slow
async def test_a_refused_track_in_shows_in_line_status_until_the_lot_leaves_the_queue(
    stack: Stack,
) -> None:
    config = line_config(tools=["DB-1"])
    engine = create_engine(stack.url)
    try:
        materials = MaterialService(SqlUnitOfWorkFactory(engine), utc_now)
        await stack.equipment.register(
            config.name,
            [
                ToolRegistration(t.id, t.equipment_class.value, "sim", tuple(t.steps or ()))
                for t in config.tools
            ],
        )
        await materials.add("DAF-1", "die_attach_film", utc_now() + timedelta(days=30), "eng")
        await materials.load("DAF-1", "DB-1", "tech")  # in the freezer still
        await stack.lots.start(cmd.StartLot("D1", "stiffener-bga", "planner", priority=1))
        await stack.lots.start(cmd.StartLot("D2", "stiffener-bga", "planner", priority=2))
        async with simulated(config), running_controller(config, stack):

            async def shown(lot: str) -> bool:
                return any(r["lot"] == lot for r in await _refused(stack))

            await wait_until(lambda: shown("D1"), timeout_s=60, what="D1's refusal shown")
            [refusal] = await _refused(stack)
            assert (refusal["lot"], refusal["tool"], refusal["step"]) == (
                "D1",
                "DB-1",
                "DIE_ATTACH",
            )
            assert refusal["interlock"] == "material_not_thawed"
            assert "DAF-1 is still frozen" in refusal["reason"], refusal
            assert "expected" in refusal["reason"], refusal  # the interlock's own words
            first = await _record(stack)

            # passes every 0.2 s refuse D1 again and again: the refusal keeps its time
            async def beat_again() -> bool:
                return (await _record(stack)).heartbeat_at > first.heartbeat_at

            await wait_until(beat_again, timeout_s=30, what="the next heartbeat")
            assert await _refused(stack) == [refusal]

            text = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "pkgline", "line", "status", "--db", stack.url],
                env={**os.environ, "COLUMNS": "1000"},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert text.returncode == 0, text.stdout + text.stderr
            assert "D1 not started on DB-1 (DIE_ATTACH) since " in text.stdout, text.stdout
            assert "DAF-1 is still frozen" in text.stdout

            # D1 leaves the queue (held): no longer shown at once, and forgotten by the
            # controller, which offers D2 next and is refused it in turn
            await stack.lots.hold(cmd.HoldLot("D1", "op", "looked at"))
            assert not await shown("D1")

            async def only_d2_recorded() -> bool:
                return [r.lot for r in (await _record(stack)).refusals] == ["D2"]

            await wait_until(only_d2_recorded, timeout_s=30, what="D2 refused, D1 forgotten")

            # the cause gone, D2 is tracked in: its refusal goes with it
            await materials.unload("DAF-1", "tech", "back to the freezer")

            async def d2_tracked_in_and_cleared() -> bool:
                d2 = await stack.lots.get("D2")
                started = d2.state is not LotState.WAITING or "DIE_ATTACH" in d2.path
                return started and (await _record(stack)).refusals == ()

            await wait_until(d2_tracked_in_and_cleared, timeout_s=60, what="D2 tracked in")
            assert await _refused(stack) == []
    finally:
        await engine.dispose()
