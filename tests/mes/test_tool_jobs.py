"""The jobs of a tool in a time window (the tool page's recent jobs): read from the jobs
themselves, newest first, each with its lot, step, carrier, status, the sites its carrier
brought in (not rejected at an earlier step) and its yield; on every store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mes.domain import commands as cmd
from mes.domain.equipment import ToolRegistration
from mes.domain.errors import InvalidInput
from mes.domain.model import JobStatus
from mes.equipment import EquipmentService
from mes.service import LotService
from tests.mes.conftest import Clock

CTRL = "controller"
TOOLS = [
    ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1:5020", ("DIE_ATTACH",)),
    ToolRegistration("WB-1", "wire_bonder", "opc.tcp://127.0.0.1:4840", ("WIRE_BOND",)),
]


async def _run_job(
    service: LotService, lot: str, job: str, tool: str, carrier: str, *rejects: tuple[int, int]
) -> None:
    await service.start_job(cmd.StartJob(lot, job, tool, carrier, CTRL))
    given = tuple(cmd.SiteRejectGiven(carrier, r, c, "PICK_FAIL") for r, c in rejects)
    await service.record_job(cmd.RecordJob(job, CTRL, {}, given))


async def test_a_tools_jobs_in_a_window_newest_first_with_sites_in_and_yield(
    service: LotService, equipment: EquipmentService, clock: Clock
) -> None:
    await equipment.register("line-a", TOOLS)
    begin = clock.now
    await service.start(
        cmd.StartLot("L1", "stiffener-bga", "op", carriers=2, site_rows=2, site_cols=5)
    )
    await service.track_in(cmd.TrackIn("L1", "SUBSTRATE_LOAD", "op"))
    await service.track_out(cmd.TrackOut("L1", "op"))
    first, second = (await service.get("L1")).carriers
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", CTRL, tool="DB-1", dispatched=True))
    await _run_job(service, "L1", "J1", "DB-1", first, (1, 1), (1, 2))  # 10 in, 2 out
    middle = clock.now
    await _run_job(service, "L1", "J2", "DB-1", second)  # 10 in, none out: tracks out
    await service.track_in(cmd.TrackIn("L1", "WIRE_BOND", CTRL, tool="WB-1", dispatched=True))
    await _run_job(service, "L1", "J3", "WB-1", first, (2, 5))  # 8 in (2 out before), 1 out
    await service.start_job(cmd.StartJob("L1", "J4", "WB-1", second, CTRL))  # no results yet
    end = clock.now + timedelta(seconds=1)

    db1 = await service.tool_jobs("DB-1", begin, end, by=None)
    assert [(j.job.job_id, j.job.lot_id, j.job.step, j.job.carrier_id) for j in db1] == [
        ("J2", "L1", "DIE_ATTACH", second),
        ("J1", "L1", "DIE_ATTACH", first),
    ]
    assert [(j.sites_in, j.rejected, j.yield_pct) for j in db1] == [(10, 0, 100.0), (10, 2, 80.0)]

    wb1 = await service.tool_jobs("WB-1", begin, end)
    assert [(j.job.job_id, j.job.status) for j in wb1] == [
        ("J4", JobStatus.STARTED),
        ("J3", JobStatus.RECORDED),
    ]
    assert [(j.sites_in, j.rejected) for j in wb1] == [(10, 0), (8, 1)]
    assert wb1[0].yield_pct is None  # no results yet
    assert wb1[1].yield_pct == pytest.approx(100.0 * 7 / 8)

    # the window: J1 started before ``middle``; the newest first with a limit
    assert [j.job.job_id for j in await service.tool_jobs("DB-1", middle, end)] == ["J2"]
    assert [j.job.job_id for j in await service.tool_jobs("DB-1", begin, middle)] == ["J1"]
    assert [j.job.job_id for j in await service.tool_jobs("DB-1", begin, end, limit=1)] == ["J2"]
    assert await service.tool_jobs("NOPE-1", begin, end) == []


async def test_a_window_that_ends_before_it_starts_is_refused(
    service: LotService, clock: Clock
) -> None:
    with pytest.raises(InvalidInput, match="expected a window whose start"):
        await service.tool_jobs("DB-1", clock.now, clock.now - timedelta(hours=1))
    with pytest.raises(InvalidInput, match="a limit of 1 or more"):
        await service.tool_jobs("DB-1", clock.now, clock.now, limit=0)
