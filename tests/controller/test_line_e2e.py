"""The whole line end to end: the controller runs one lot of each of the nine claimed flows
through a simulated line (Modbus and OPC UA tools of every class) on SQLite and PostgreSQL.
Tools reject sites at random; a site rejected at one step is skipped at every later one, and
the final unit counts are the site maps' good sites."""

from __future__ import annotations

from collections import Counter

import pytest

from drivers.model import SITE_GOOD, SITE_SKIPPED
from mes.domain.model import LotState, Operation
from tests.controller.conftest import (
    Stack,
    all_in,
    line_config,
    lots_in,
    running_controller,
    simulated,
    start_lots,
    wait_until,
)

pytestmark = pytest.mark.slow


async def test_all_nine_flows_run_to_completion_with_rejects_flowing_from_step_to_step(
    stack: Stack,
) -> None:
    config = line_config(reject_rate=0.02)
    async with simulated(config), running_controller(config, stack):
        ids = await start_lots(stack.lots)
        await wait_until(lambda: _settled(stack, ids), timeout_s=150, what="every lot to complete")
        tools = await stack.equipment.tools(config.name)
        assert {t.id for t in tools} == {t.id for t in config.tools}
        assert all(t.snapshot.connected for t in tools), "every tool followed while running"
    found = await lots_in(stack.lots, ids)
    assert all_in(found, LotState.COMPLETED), {k: (v.state, v.hold) for k, v in found.items()}

    for lot_id in ids:
        report = await stack.lots.report(lot_id)
        lot = report.lot
        rejected = sum(len(m.rejects) for m in report.carriers)
        assert lot.good_sites == lot.total_sites - rejected
        assert lot.units == lot.good_sites, "at DICE the good sites became the unit count"
        assert sum(y.rejected for y in report.yields) == rejected

        # Every step ran exactly once, on a tool of its class, through one job per carrier.
        history = report.history
        track_outs = [e for e in history if e.operation is Operation.TRACK_OUT]
        assert [e.step for e in track_outs] == list(lot.path)
        recorded = [e.data["job"] for e in history if e.operation is Operation.JOB_RECORD]
        started = [e.data["job"] for e in history if e.operation is Operation.JOB_START]
        assert len(recorded) == len(set(recorded)) == len(started)

        # Rejects flow: a site rejected at step k came in skipped to every later job.
        rejected_at = {
            (r.carrier_id, r.row, r.col): r.path_index for m in report.carriers for r in m.rejects
        }
        for entry in history:
            if entry.operation is not Operation.JOB_RECORD:
                continue
            job = await stack.lots.job(entry.data["job"])
            assert job is not None
            codes = job.tool_data["site_codes"]
            carrier = next(m.carrier for m in report.carriers if m.carrier.id == job.carrier_id)
            for index, code in enumerate(codes):
                row, col = divmod(index, carrier.cols)
                site = (job.carrier_id, row + 1, col + 1)
                if site in rejected_at and rejected_at[site] < job.path_index:
                    assert code == SITE_SKIPPED, (
                        f"{site} was rejected before {job.step} and must be skipped"
                    )
                elif site not in rejected_at:
                    assert code == SITE_GOOD

    # E10: the tools' jobs here end before a poll could see them executing; productive time
    # counts from each job's start all the same.
    began = min([(await stack.lots.get(lot_id)).created_at for lot_id in ids])
    for tool in config.tools:
        times = await stack.equipment.state_times(tool.id, began)
        assert times.seconds.get("productive", 0) > 0, f"{tool.id} was never productive"

    stopped = await stack.equipment.tools(config.name)
    assert {t.snapshot.e10 for t in stopped} == {"unmonitored"}, "no controller follows them now"
    counts: Counter[Operation] = Counter()
    for lot_id in ids:
        counts.update(e.operation for e in (await stack.lots.report(lot_id)).history)
    assert counts[Operation.HOLD] == 0
    assert counts[Operation.JOB_RECORD] == counts[Operation.JOB_START]


async def _settled(stack: Stack, ids: list[str]) -> bool:
    found = await lots_in(stack.lots, ids)
    return all_in(found, LotState.COMPLETED, LotState.HOLD, LotState.SCRAPPED)
