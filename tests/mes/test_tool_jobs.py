"""The jobs of a tool in a time window (the tool page's recent jobs): read from the jobs
themselves, newest first, each with its lot, step, carrier, status, the sites its carrier
brought in (not rejected at an earlier step) and its yield; on every store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flows import FlowLibrary
from mes.domain import commands as cmd
from mes.domain.equipment import ToolRegistration
from mes.domain.errors import InvalidInput
from mes.domain.model import JobStatus
from mes.equipment import EquipmentService
from mes.ports import ToolJobQuery, UnitOfWorkFactory
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


# -- a tool's jobs a page at a time (tool jobs, GET /tools/{tool}/jobs) ----------------------


async def _die_attach_jobs(
    service: LotService, lot: str, carriers: int, prefix: str, *, start: bool = True
) -> list[str]:
    """A lot started and taken to die attach on DB-1, one job per carrier run there (the
    last tracks it out)."""
    if start:
        await service.start(
            cmd.StartLot(lot, "stiffener-bga", "op", carriers=carriers, site_rows=2, site_cols=5)
        )
        await service.track_in(cmd.TrackIn(lot, "SUBSTRATE_LOAD", "op"))
        await service.track_out(cmd.TrackOut(lot, "op"))
        await service.track_in(cmd.TrackIn(lot, "DIE_ATTACH", CTRL, tool="DB-1", dispatched=True))
    made = []
    for n, carrier in enumerate((await service.get(lot)).carriers):
        job = f"{prefix}{n}"
        await _run_job(service, lot, job, "DB-1", carrier)
        made.append(job)
    return made


async def test_pages_of_a_tools_jobs_show_each_once_newest_first_with_their_count(
    service: LotService, equipment: EquipmentService, clock: Clock
) -> None:
    await equipment.register("line-a", TOOLS)
    made = await _die_attach_jobs(service, "L1", 5, "A")
    made += await _die_attach_jobs(service, "L2", 4, "B")
    newest_first = made[::-1]

    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        page = await service.tool_job_page(ToolJobQuery("DB-1", after=after, limit=2))
        assert page.total == (10 if pages >= 2 else 9)  # counted anew for each page
        seen += [j.job.job_id for j in page.jobs]
        pages += 1
        if pages == 2:  # a job started meanwhile is newer: it comes before, never in a page after
            await _die_attach_jobs(service, "L3", 1, "N")
        if not page.more:
            break
        after = page.jobs[-1].job.job_id
    assert seen == newest_first and pages == 5
    only_l2 = await service.tool_job_page(ToolJobQuery("DB-1", lot_id="L2", limit=100))
    assert [j.job.job_id for j in only_l2.jobs] == ["B3", "B2", "B1", "B0"]
    assert (only_l2.total, only_l2.more) == (4, False)
    assert [j.sites_in for j in only_l2.jobs] == [10, 10, 10, 10]
    assert (await service.tool_job_page(ToolJobQuery("WB-1"))).total == 0


async def test_the_window_filters_and_equal_start_times_page_by_job_id(
    store: UnitOfWorkFactory,
    service: LotService,
    equipment: EquipmentService,
    library: FlowLibrary,
    clock: Clock,
) -> None:
    await equipment.register("line-a", TOOLS)
    await _die_attach_jobs(service, "L1", 2, "A")
    middle = clock.now + timedelta(microseconds=500)
    await _die_attach_jobs(service, "L2", 2, "B")
    since = await service.tool_job_page(ToolJobQuery("DB-1", since=middle))
    until = await service.tool_job_page(ToolJobQuery("DB-1", until=middle))
    assert [j.job.job_id for j in since.jobs] == ["B1", "B0"]
    assert [j.job.job_id for j in until.jobs] == ["A1", "A0"]

    frozen = clock.now + timedelta(hours=1)
    still = LotService(store, library, lambda: frozen)  # every job of L3 starts at one time
    await service.start(
        cmd.StartLot("L3", "stiffener-bga", "op", carriers=3, site_rows=2, site_cols=5)
    )
    await service.track_in(cmd.TrackIn("L3", "SUBSTRATE_LOAD", "op"))
    await service.track_out(cmd.TrackOut("L3", "op"))
    await service.track_in(cmd.TrackIn("L3", "DIE_ATTACH", CTRL, tool="DB-1", dispatched=True))
    await _die_attach_jobs(still, "L3", 3, "C", start=False)
    seen: list[str] = []
    after: str | None = None
    while True:
        page = await service.tool_job_page(ToolJobQuery("DB-1", lot_id="L3", after=after, limit=1))
        seen += [j.job.job_id for j in page.jobs]
        if not page.more:
            break
        after = seen[-1]
    assert seen == ["C2", "C1", "C0"]


async def test_a_cursor_naming_no_job_of_the_tool_a_bad_window_or_limit_is_refused(
    service: LotService, equipment: EquipmentService, clock: Clock
) -> None:
    await equipment.register("line-a", TOOLS)
    await _die_attach_jobs(service, "L1", 1, "A")
    with pytest.raises(InvalidInput, match="there is no job NOPE of tool DB-1"):
        await service.tool_job_page(ToolJobQuery("DB-1", after="NOPE"))
    with pytest.raises(InvalidInput, match="there is no job A0 of tool WB-1"):
        await service.tool_job_page(ToolJobQuery("WB-1", after="A0"))
    with pytest.raises(InvalidInput, match="expected a window whose start"):
        await service.tool_job_page(
            ToolJobQuery("DB-1", since=clock.now, until=clock.now - timedelta(hours=1))
        )
    with pytest.raises(InvalidInput, match="1 job or more"):
        await service.tool_job_page(ToolJobQuery("DB-1", limit=0))


@pytest.mark.postgres
async def test_one_lots_jobs_on_a_tool_are_read_along_their_index(
    postgres_url: str, library: FlowLibrary
) -> None:
    """``tool jobs DB-1 --lot L`` (revision 0023): a lot's few jobs among the 200,000 of a
    busy tool, their page and count along ix_jobs_lot_id, not every job of the tool read and
    filtered (277 ms page and 344 ms count at 100,000 seeded lots, 265,000 jobs on the tool)."""
    from sqlalchemy import text

    from mes.adapters.database import create_engine
    from mes.adapters.migrate import upgrade
    from mes.adapters.sql import SqlUnitOfWorkFactory
    from mes.adapters.sql_statements import tool_job_page_statements

    engine = create_engine(postgres_url)
    plans: list[str] = []
    try:
        await upgrade(engine)
        service = LotService(SqlUnitOfWorkFactory(engine), library)
        for lot_id in ("BUSY", "RARE"):
            await service.start(cmd.StartLot(lot_id, "stiffener-bga", "op"))
        carrier = (await service.get("BUSY")).carriers[0]
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO jobs (job_id, lot_id, tool_id, step, path_index, carrier_id,"
                    " status, started_at, measured, rejects, tool_data)"
                    " SELECT 'J' || n, CASE WHEN n % 50000 = 0 THEN 'RARE' ELSE 'BUSY' END,"
                    " 'DB-1', 'DIE_ATTACH', 0, :carrier, 'recorded',"
                    " now() - n * interval '1 second', '{}', '[]', '{}'"
                    " FROM generate_series(1, 200000) AS n"
                ),
                {"carrier": carrier},
            )
            await conn.execute(text("ANALYZE jobs"))
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            page, count, values = tool_job_page_statements(
                ToolJobQuery(tool_id="DB-1", lot_id="RARE"), engine.dialect
            )
            for statement, given in ((page, {**values, "page_limit": 21}), (count, values)):
                rows = await raw.fetch("EXPLAIN " + statement.sql, *statement.arguments(given))
                plans.append("\n".join(r[0] for r in rows))
    finally:
        await engine.dispose()
    for plan in plans:
        assert "ix_jobs_lot_id" in plan, plan
