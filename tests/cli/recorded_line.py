"""A database that a real line controller has written, for the operator's commands to read.

A small simulated line (a die bonder over Modbus, a wire bonder over OPC UA) and a
:class:`~pkgline.controller.line.LineController` in this process run two ``stiffener-bga``
lots as far as the line can take them: they wait at MOLD, for which it has no tool. The wire
bonder is then put in alarm and the controller stopped (its tools, E10 changes and heartbeat
are in the database). Then, through the lot service, as operators would: one lot is held, two
more are started (waiting at SUBSTRATE_LOAD, the later one more urgent) and one is tracked in
there by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from drivers.factory import DriverFactory
from mes.adapters.migrate import upgrade
from mes.domain import commands as cmd
from mes.domain.model import LotState
from pkgline.bootstrap import Services, open_engine, open_services
from pkgline.config import LineConfig
from pkgline.controller.line import LineController
from simulators.line import SimulatedLine, with_free_ports

LINE = "cli-line"
FLOW = "stiffener-bga"
HOLD_REASON = "voids seen on carrier 1 at incoming inspection"
FAST_POLICY = {"timeout_s": 0.5, "poll_interval_s": 0.05, "backoff_initial_s": 0.05}

PLAIN = {"policy": "None", "mode": "None"}
"""Plain OPC UA: these tests are not about security (tests/drivers/opcua/test_security.py)."""


def line_config() -> LineConfig:
    sim = {"time_scale": 0.02, "reject_rate": 0.0, "seed": 3}
    return with_free_ports(
        LineConfig.model_validate(
            {
                "name": LINE,
                "controller": {"dispatch_interval_s": 0.2, "auto_manual_steps": True},
                "tools": [
                    {
                        "id": "DB-1",
                        "equipment_class": "die_bonder",
                        "endpoint": {"transport": "modbus", "port": 1502},
                        "policy": FAST_POLICY,
                        "simulation": sim,
                    },
                    {
                        "id": "WB-1",
                        "equipment_class": "wire_bonder",
                        "endpoint": {
                            "transport": "opcua",
                            "url": "opc.tcp://127.0.0.1:1484",
                            "security": PLAIN,
                        },
                        "policy": FAST_POLICY,
                        "simulation": sim,
                    },
                ],
            }
        )
    )


@dataclass
class RunningLine:
    simulated: SimulatedLine
    controller: LineController
    services: Services


@contextlib.asynccontextmanager
async def running_line(config: LineConfig, url: str) -> AsyncIterator[RunningLine]:
    """The simulated line and its controller, running in this process until the block ends."""
    async with open_services(url, pool_size=10) as services, SimulatedLine(config) as simulated:
        drivers = DriverFactory()
        controller = LineController(
            config,
            services.lots,
            services.equipment,
            drivers.create_all(config.tools),
        )
        task = asyncio.create_task(controller.run(), name="controller")
        try:
            ready = asyncio.create_task(controller.ready.wait())
            done, _ = await asyncio.wait(
                [ready, task], timeout=30, return_when=asyncio.FIRST_COMPLETED
            )
            if ready not in done:
                ready.cancel()
                if task in done:
                    task.result()  # raises what stopped the controller
                raise AssertionError("the line controller did not get ready")
            yield RunningLine(simulated, controller, services)
        finally:
            controller.request_stop()
            await asyncio.wait_for(task, 30)
            await drivers.aclose()


async def wait_until(
    condition: Callable[[], Awaitable[bool]], what: str, within_s: float = 30
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"no {what} within {within_s} s")
        await asyncio.sleep(0.05)


async def create_database(url: str) -> None:
    async with open_engine(url) as engine:
        await upgrade(engine)


async def _record(url: str) -> None:
    await create_database(url)
    config = line_config()
    async with running_line(config, url) as line:
        lots = line.services.lots
        for lot_id, priority in (("L-1", 3), ("L-2", 5)):
            await lots.start(cmd.StartLot(lot_id, FLOW, "planner", carriers=1, priority=priority))

        async def at_mold() -> bool:
            found = [await lots.get(i) for i in ("L-1", "L-2")]
            return all(
                lot.state is LotState.WAITING and lot.step == "STIFFENER_ATTACH" for lot in found
            )

        await wait_until(at_mold, "lots waiting at MOLD")
        line.simulated.tool("WB-1").inject_alarm()

        async def alarmed() -> bool:
            return (await line.services.equipment.tool("WB-1")).snapshot.alarm is not None

        await wait_until(alarmed, "alarm recorded")
    async with open_services(url) as services:
        lots = services.lots
        await lots.hold(cmd.HoldLot("L-2", "op1", HOLD_REASON))
        await lots.start(cmd.StartLot("L-3", FLOW, "planner", carriers=1, priority=6))
        await lots.start(cmd.StartLot("L-4", FLOW, "planner", carriers=1, priority=7))
        await lots.start(cmd.StartLot("L-5", FLOW, "planner", carriers=1, priority=1))
        await lots.track_in(cmd.TrackIn("L-4", "SUBSTRATE_LOAD", "op1"))


def record_line(path: Path) -> str:
    """Write the recorded line into a new SQLite file; its URL."""
    url = f"sqlite:///{path}"
    asyncio.run(_record(url))
    return url


def copy_database(source: Path, target: Path) -> str:
    """A consistent copy (SQLite's backup: the WAL included); its URL."""
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
    return f"sqlite:///{target}"
