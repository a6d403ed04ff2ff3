"""The line controller against a simulated line on loopback, on a real database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.config import INSECURE, ModbusEndpoint, OpcUaEndpoint
from drivers.factory import DriverFactory
from mes.adapters.database import create_engine
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.authority import CONTROLLER
from mes.domain.model import Lot, LotState
from mes.equipment import EquipmentService
from mes.service import LotService
from pkgline.bootstrap import flow_library
from pkgline.config import LineConfig, LineTool, SimulationConfig, load_line_config
from pkgline.controller.line import LineController
from simulators.line import SimulatedLine, with_free_ports

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "line.example.toml"
FLOWS = tuple(flow_library().flows)


def line_config(
    *,
    name: str = "line-test",
    time_scale: float = 0.0,
    reject_rate: float = 0.0,
    slow: dict[str, float] | None = None,
    tools: Iterable[str] | None = None,
    auto_manual_steps: bool = True,
) -> LineConfig:
    """The example line (plain OPC UA and Modbus) on free loopback ports, every tool at ``time_scale`` (those in
    ``slow`` at theirs), fast polling, seeded."""
    base = load_line_config(EXAMPLE)
    chosen: list[LineTool] = []
    for n, tool in enumerate(base.tools):
        if tools is not None and tool.id not in tools:
            continue
        scale = (slow or {}).get(tool.id, time_scale)
        endpoint = tool.endpoint
        # plain OPC UA and Modbus TCP: these tests are not about security (the demo,
        # tests/simulators/test_line.py and tests/drivers/*/test_{security,tls}.py run the
        # secure configuration)
        if isinstance(endpoint, OpcUaEndpoint):
            endpoint = endpoint.model_copy(update={"security": INSECURE})
        elif isinstance(endpoint, ModbusEndpoint):
            endpoint = endpoint.model_copy(update={"tls": None})
        chosen.append(
            tool.model_copy(
                update={
                    "endpoint": endpoint,
                    "simulation": SimulationConfig(
                        time_scale=scale, reject_rate=reject_rate, seed=n + 1
                    ),
                    "policy": tool.policy.model_copy(update={"poll_interval_s": 0.05}),
                }
            )
        )
    controller = base.controller.model_copy(
        update={"dispatch_interval_s": 0.2, "auto_manual_steps": auto_manual_steps}
    )
    return with_free_ports(
        base.model_copy(update={"name": name, "tools": tuple(chosen), "controller": controller})
    )


@dataclass
class Stack:
    lots: LotService
    equipment: EquipmentService
    url: str


@pytest.fixture(
    params=[
        "migrated_sqlite_url",
        pytest.param("migrated_postgres_url", marks=pytest.mark.postgres),
    ]
)
def database(request: pytest.FixtureRequest) -> str:
    """A database of the test's own at the head revision, on each store in turn."""
    return str(request.getfixturevalue(request.param))


@pytest.fixture
async def stack(database: str) -> AsyncIterator[Stack]:
    engine = create_engine(database, pool_size=10)
    try:
        factory = SqlUnitOfWorkFactory(engine)
        yield Stack(LotService(factory, flow_library()), EquipmentService(factory), database)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def running_controller(
    config: LineConfig,
    stack: Stack,
    *,
    before_ready: Callable[[LineController], None] = lambda _: None,
) -> AsyncIterator[LineController]:
    """A line controller running in this process until the block ends."""
    drivers = DriverFactory()
    controller = LineController(
        config,
        stack.lots.acting_as(CONTROLLER),  # with its own authority only, as pkgline serve
        stack.equipment.acting_as(CONTROLLER),
        drivers.create_all(config.tools),
        before_ready=lambda: before_ready(controller),
    )
    task = asyncio.create_task(controller.run(), name="controller")
    try:
        ready = asyncio.create_task(controller.ready.wait())
        done, _ = await asyncio.wait([ready, task], timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            ready.cancel()
            task.result()
        assert ready in done, "the controller did not get ready"
        yield controller
    finally:
        controller.request_stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        await drivers.aclose()


@contextlib.asynccontextmanager
async def simulated(config: LineConfig) -> AsyncIterator[SimulatedLine]:
    async with SimulatedLine(config) as line:
        yield line


async def start_lots(
    lots: LotService, flows: Iterable[str] = FLOWS, *, carriers: int = 2
) -> list[str]:
    ids = []
    for n, flow in enumerate(flows):
        lot_id = f"L{n + 1:02d}-{flow}"[:32]
        await lots.start(
            cmd.StartLot(lot_id, flow, "planner", carriers=carriers, priority=1 + n % 9)
        )
        ids.append(lot_id)
    return ids


async def wait_until(
    condition: Callable[[], object], *, timeout_s: float, every_s: float = 0.2, what: str = ""
) -> None:
    """Poll an async condition until it is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or condition}")
        await asyncio.sleep(every_s)


async def lots_in(lots: LotService, ids: Iterable[str]) -> dict[str, Lot]:
    return {lot_id: await lots.get(lot_id) for lot_id in ids}


def all_in(found: dict[str, Lot], *states: LotState) -> bool:
    return all(lot.state in states for lot in found.values())
