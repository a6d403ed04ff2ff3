"""Lots through DIE_ATTACH for the SPC tests: tracked in on a die bonder as the line
controller tracks them in, then out by hand or job by job (one carrier a job), measuring the
bond line thickness. Shared by the lot tracker's, the CLI's and the station's SPC tests."""

from __future__ import annotations

from collections.abc import Sequence

from mes.domain import commands as cmd
from mes.service import LotService

BLT = "bond_line_thickness_um"
CTRL = "controller"


async def at_die_attach(
    lots: LotService, lot_id: str, carriers: int, tool: str, controller: LotService | None = None
) -> list[str]:
    """A lot of ``carriers`` carriers started, through SUBSTRATE_PREP by hand and tracked in
    at DIE_ATTACH on ``tool`` by the line controller (``controller``: its service, where
    principals differ): its carriers."""
    await lots.start(cmd.StartLot(lot_id, "fo-organic", "op1", carriers=carriers))
    await lots.track_in(cmd.TrackIn(lot_id, "SUBSTRATE_PREP", "op1"))
    await lots.track_out(cmd.TrackOut(lot_id, "op1"))
    await (controller or lots).track_in(
        cmd.TrackIn(lot_id, "DIE_ATTACH", CTRL, tool=tool, dispatched=True)
    )
    return list((await lots.get(lot_id)).carriers)


async def by_jobs(
    lots: LotService,
    lot_id: str,
    blts: Sequence[float],
    tool: str,
    controller: LotService | None = None,
) -> None:
    """A lot through DIE_ATTACH on ``tool`` as the line controller runs it: one job per
    carrier, each measuring its ``blt``; the last job tracks the lot out."""
    ctrl = controller or lots
    carriers = await at_die_attach(lots, lot_id, len(blts), tool, ctrl)
    for n, (carrier, blt) in enumerate(zip(carriers, blts, strict=True)):
        job = f"{lot_id}-{n}"
        await ctrl.start_job(cmd.StartJob(lot_id, job, tool, carrier, CTRL))
        await ctrl.record_job(cmd.RecordJob(job, CTRL, {BLT: blt}))
