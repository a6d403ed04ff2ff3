"""A small line for the interlock routes' tests: tools WB-1 (wire bonder), MOLD-1 (molder)
and DB-1 (die bonder), up and in manual; lot M1 of stiffener-bga waiting for WIRE_BOND."""

from __future__ import annotations

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.equipment import DispatchMode, ToolRegistration, ToolSnapshot
from mes.equipment import EquipmentService
from mes.service import LotService
from pkgline.bootstrap import flow_library

UP = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")
TOOLS = [
    ToolRegistration("WB-1", "wire_bonder", "opc.tcp://127.0.0.1:4840", ("WIRE_BOND",)),
    ToolRegistration("MOLD-1", "molder", "modbus://127.0.0.1:1502", ("MOLD",)),
    ToolRegistration("DB-1", "die_bonder", "modbus://127.0.0.1:1503", ("DIE_ATTACH",)),
]
BLT = "bond_line_thickness_um"
"""A value DIE_ATTACH measures (an SPC chart's)."""


async def make_line(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
        factory = SqlUnitOfWorkFactory(engine)
        equipment = EquipmentService(factory)
        await equipment.register("api-line", TOOLS)
        for tool in TOOLS:
            await equipment.report(tool.id, UP)
            await equipment.set_dispatch(tool.id, DispatchMode.MANUAL, "tech", "by hand")
        lots = LotService(factory, flow_library())
        await lots.start(cmd.StartLot("M1", "stiffener-bga", "op1"))
        while True:
            step = lots.next_in_order(await lots.get("M1"))[0]
            if step == "WIRE_BOND":
                break
            await lots.track_in(cmd.TrackIn("M1", step, "op1"))
            await lots.track_out(cmd.TrackOut("M1", "op1"))
    finally:
        await engine.dispose()
