"""The edge node fed by the real line controller driving simulated tools, read back from a
real Mosquitto with the tests' own payload reader: a DBIRTH per tool with every metric of its
class, DDATA as a lot runs (state, recipe, progress, measured values), DDEATH when a tool's
connection drops and DBIRTH when it is back; and ``pkgline serve`` killed with SIGKILL leaves
its NDEATH (the MQTT will) with the bdSeq of its NBIRTH."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.catalogue import class_spec
from drivers.factory import DriverFactory
from mes.domain import commands as cmd
from pkgline.config import LineConfig
from pkgline.controller.line import LineController
from pkgline.sparkplug.config import SparkplugConfig
from pkgline.sparkplug.node import EdgeNode, running
from simulators.line import write_line_config
from tests.controller.conftest import Stack, line_config, simulated
from tests.sparkplug.conftest import Broker, Received, Subscriber, check_seq, subscribed

pytestmark = pytest.mark.slow

COMMON = 20  # metrics every tool has (pkgline/sparkplug/metrics.py)


def with_sparkplug(config: LineConfig, broker: Broker, tmp_path: Path) -> LineConfig:
    sparkplug = SparkplugConfig(
        url=broker.url,
        group_id="packaging",
        bdseq_file=tmp_path / "bdseq",
        backoff_initial_s=0.1,
        backoff_max_s=0.5,
    )
    return config.model_copy(update={"sparkplug": sparkplug})


@contextlib.asynccontextmanager
async def controller_with(
    config: LineConfig, stack: Stack, node: EdgeNode
) -> AsyncIterator[LineController]:
    drivers = DriverFactory()
    controller = LineController(
        config, stack.lots, stack.equipment, drivers.create_all(config.tools), feed=node
    )
    task = asyncio.create_task(controller.run(), name="controller")
    try:
        async with asyncio.timeout(60):
            await controller.ready.wait()
        yield controller
    finally:
        controller.request_stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        await drivers.aclose()


async def ddata_until(sub: Subscriber, tool_id: str, alias: int, wanted: object) -> Received:
    """DDATA of ``tool_id`` until one sets the metric ``alias`` to ``wanted``."""
    while True:
        item = await sub.next(device=tool_id)
        assert item.verb == "DDATA", f"{item.verb} of {tool_id} while waiting for DDATA"
        values = {m.alias: m.value for m in item.payload.metrics}
        if alias in values and (wanted is None or values[alias] == wanted):
            return item


async def test_the_controller_feeds_births_data_and_deaths_of_its_tools(
    broker: Broker, stack: Stack, tmp_path: Path
) -> None:
    config = with_sparkplug(line_config(slow={"DB-1": 0.3}), broker, tmp_path)
    assert config.sparkplug is not None
    node = EdgeNode(
        config.sparkplug, config.name, [(t.id, t.equipment_class) for t in config.tools]
    )
    async with (
        subscribed(broker) as sub,
        simulated(config) as line,
        running(node),
        controller_with(config, stack, node),
    ):
        births: dict[str, Received] = {}
        while len(births) < len(config.tools):
            item = await sub.next()
            if item.verb == "DBIRTH":
                assert item.device is not None
                births[item.device] = item
        for tool in config.tools:
            metrics = births[tool.id].payload.by_name()
            measured = class_spec(tool.equipment_class).measured
            assert len(metrics) == COMMON + len(measured), tool.id
            assert {f"Measured/{n}" for n in measured} <= set(metrics)
            assert metrics["Process/State"].value in ("IDLE", "READY")
            assert metrics["E10/State"].value == "standby"
        aliases = [m.alias for b in births.values() for m in b.payload.metrics]
        assert len(aliases) == len(set(aliases)), "aliases are unique across the node"
        alias = {n: m.alias for n, m in births["DB-1"].payload.by_name().items()}

        await stack.lots.start(cmd.StartLot("S1", "stiffener-bga", "planner", carriers=1))
        recipe = await ddata_until(sub, "DB-1", alias["Recipe/Name"], None)
        assert {m.alias: m.value for m in recipe.payload.metrics}[alias["Recipe/Name"]]
        running_job = await ddata_until(sub, "DB-1", alias["Process/State"], "EXECUTING")
        values = {m.alias: m.value for m in running_job.payload.metrics}
        assert values[alias["E10/State"]] == "productive"
        measured = await ddata_until(sub, "DB-1", alias["Measured/Job"], None)
        values = {m.alias: m.value for m in measured.payload.metrics}
        for name in class_spec(line.tool("DB-1").equipment_class).measured:
            assert isinstance(values[alias[f"Measured/{name}"]], float), name

        await line.drop_connections("DB-1", refuse_for_s=1.0)
        await sub.next("DDEATH", "DB-1")
        back = await sub.next("DBIRTH", "DB-1")
        assert set(back.payload.by_name()) == set(alias)
    check_seq([r for r in sub.seen if r.verb != "NDEATH"])


async def test_a_tool_a_person_declares_down_is_published_so_until_brought_up(
    broker: Broker, stack: Stack, tmp_path: Path
) -> None:
    """``tool down`` through any client reaches SCADA: the controller reads the declarations
    in force and its edge node publishes the declared E10 state (as equipment tracking records
    it, not the standby the tool reports), who, why and since when; ``tool up`` puts back the
    state the tool reports."""
    config = with_sparkplug(line_config(tools=["DB-1", "WB-1"]), broker, tmp_path)
    assert config.sparkplug is not None
    node = EdgeNode(
        config.sparkplug, config.name, [(t.id, t.equipment_class) for t in config.tools]
    )
    async with (
        subscribed(broker) as sub,
        simulated(config),
        running(node),
        controller_with(config, stack, node),
    ):
        birth = await sub.next("DBIRTH", "DB-1")
        alias = {n: m.alias for n, m in birth.payload.by_name().items()}
        assert birth.payload.by_name()["E10/Declared"].is_null

        record, changed = await stack.equipment.declare_down(
            "DB-1", "scheduled_down", "tech1", "PM: bond head"
        )
        assert changed and record.snapshot.e10 == "scheduled_down"
        data = await ddata_until(sub, "DB-1", alias["E10/State"], "scheduled_down")
        values = {m.alias: m.value for m in data.payload.metrics}
        assert values[alias["E10/Declared"]] == "scheduled_down"
        assert values[alias["E10/Declared By"]] == "tech1"
        assert values[alias["E10/Declared Reason"]] == "PM: bond head"
        assert record.down_at is not None
        assert values[alias["E10/Declared At"]] == int(record.down_at.timestamp() * 1000)

        await stack.equipment.bring_up("DB-1", "tech1", "PM done")
        data = await ddata_until(sub, "DB-1", alias["E10/State"], "standby")
        values = {m.alias: m.value for m in data.payload.metrics}
        assert values[alias["E10/Declared"]] is None
        wb_birth = next(i for i in sub.seen if i.verb == "DBIRTH" and i.device == "WB-1")
        wb_declared = {m.alias for n, m in wb_birth.payload.by_name().items() if "Declared" in n}
        for item in sub.seen:  # a tool nobody declared: nothing of it, however often read
            if item.verb == "DDATA" and item.device == "WB-1":
                assert not {m.alias for m in item.payload.metrics} & wb_declared


def _spawn(config: LineConfig, tmp_path: Path, db: str) -> subprocess.Popen[bytes]:
    path = write_line_config(config, tmp_path / "line.toml")
    with (tmp_path / "serve.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pkgline", "serve", "--config", str(path), "--db", db],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PKGLINE_DB": db},
        )


async def _ended(proc: subprocess.Popen[bytes]) -> int:
    return await asyncio.to_thread(proc.wait, 30)


async def test_pkgline_serve_publishes_ndeath_on_sigterm_and_its_will_on_sigkill(
    broker: Broker, stack: Stack, tmp_path: Path
) -> None:
    config = with_sparkplug(line_config(tools=["DB-1", "COAT-1"]), broker, tmp_path)
    async with subscribed(broker) as sub, simulated(config):
        for stop, bdseq in ((signal.SIGTERM, 0), (signal.SIGKILL, 1)):
            proc = _spawn(config, tmp_path, stack.url)
            try:
                birth = await sub.next("NBIRTH")
                assert birth.payload.by_name()["bdSeq"].value == bdseq
                await sub.next("DBIRTH", "DB-1")
                await sub.next("DBIRTH", "COAT-1")
            finally:
                proc.send_signal(stop)
                code = await _ended(proc)
            assert code == (0 if stop is signal.SIGTERM else -signal.SIGKILL)
            death = await sub.next("NDEATH")
            assert death.topic == "spBv1.0/packaging/NDEATH/line-test"
            assert death.payload.seq is None
            assert death.qos == 1 and not death.retain  # the will's QoS, as the spec says
            assert [(m.name, m.value) for m in death.payload.metrics] == [("bdSeq", bdseq)]
