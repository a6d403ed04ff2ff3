"""Connections: one session per server shared by every tool behind it (a gateway), loss noticed
within 2 s, reconnection by itself with the subscription rebuilt (status changes arrive again
after a server restart), dropped and refused connections, a server that never answers (a timeout
error, never a hang), and requests that fail at once while the tool is unreachable."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from drivers.errors import ToolTimeout, ToolUnreachable
from drivers.interface import ConnectionLost, ConnectionRestored, StatusChanged
from drivers.model import EquipmentClass, Job, Mode, ProcessState, SiteMap
from drivers.opcua import OpcUaSessionPool
from simulators.opcua_server import OpcUaToolServer
from tests.drivers.common import event_stream, full_recipe, next_event, next_status

from .conftest import FAST, DriverMaker, virtual_tool

MOLDER = EquipmentClass.MOLDER


@pytest.fixture
async def gateway() -> AsyncIterator[OpcUaToolServer]:
    """One server with a tool of every class."""
    async with OpcUaToolServer([virtual_tool(c) for c in EquipmentClass]) as server:
        yield server


@pytest.fixture
async def molder_server() -> AsyncIterator[OpcUaToolServer]:
    async with OpcUaToolServer([virtual_tool(MOLDER)]) as server:
        yield server


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A TCP server that accepts connections and never answers; yields its URL."""
    writers: list[asyncio.StreamWriter] = []
    handlers: list[asyncio.Task[None]] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        with contextlib.suppress(ConnectionError):
            while await reader.read(4096):
                pass
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"opc.tcp://127.0.0.1:{port}"
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def test_tools_behind_one_server_share_one_session_and_run_jobs_together(
    gateway: OpcUaToolServer, sessions: OpcUaSessionPool, make_driver: DriverMaker
) -> None:
    # Twelve tools start at once against a server in this same event loop: not a latency test,
    # so the answer time is forgiving (a loaded CI machine took over 0.5 s once).
    patient = FAST.model_copy(update={"timeout_s": 3.0})
    drivers = [await make_driver(c, gateway.url, policy=patient) for c in EquipmentClass]
    assert len(sessions) == 1
    session = sessions.session_for(gateway.url)
    assert session is not None
    assert all(d.session is session for d in drivers)
    assert len(session.listeners) == len(EquipmentClass)
    assert session.connections_made == 1

    for driver in drivers:
        await driver.load_recipe(full_recipe(driver.equipment_class))
    jobs = [Job(f"J-{d.tool_id}", "LOT-1", "STEP", "C-1", SiteMap.all_good(2, 3)) for d in drivers]

    async def run(index: int) -> None:
        driver = drivers[index]
        async with event_stream(driver) as events:
            if (await driver.status()).state is not ProcessState.READY:
                await next_status(events, ProcessState.READY)
            await driver.start_job(jobs[index])
            done = await next_status(events, ProcessState.COMPLETE)
        assert done.job_id == jobs[index].job_id

    await asyncio.gather(*(run(i) for i in range(len(drivers))))
    for driver, job in zip(drivers, jobs, strict=True):
        results = await driver.results()
        assert results is not None
        assert results.job_id == job.job_id


async def test_the_last_driver_to_close_closes_the_shared_session(
    gateway: OpcUaToolServer, sessions: OpcUaSessionPool, make_driver: DriverMaker
) -> None:
    first = await make_driver(EquipmentClass.DICER, gateway.url)
    second = await make_driver(EquipmentClass.GRINDER, gateway.url)
    session = first.session
    assert session is not None
    assert second.session is session
    await first.close()
    await first.close()  # idempotent
    assert second.connected, "the other tool still uses the session"
    assert (await second.status()).state is ProcessState.IDLE
    await second.close()
    assert not session.connected
    assert len(sessions) == 0


async def test_connection_loss_is_reported_within_two_seconds_when_the_server_stops(
    molder_server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    driver = await make_driver(MOLDER, molder_server.url)
    async with event_stream(driver) as events:
        await next_event(events, StatusChanged)
        await molder_server.stop()
        lost = await next_event(events, ConnectionLost, within=2.0)
    assert isinstance(lost, ConnectionLost)
    assert lost.tool_id == driver.tool_id
    assert not driver.connected


async def test_requests_fail_at_once_with_tool_unreachable_while_disconnected(
    molder_server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    driver = await make_driver(MOLDER, molder_server.url)
    async with event_stream(driver) as events:
        await molder_server.stop()
        await next_event(events, ConnectionLost, within=2.0)
    async with asyncio.timeout(0.1):  # no request waits for a connection that is not there
        with pytest.raises(ToolUnreachable, match="not connected"):
            await driver.status()
        with pytest.raises(ToolUnreachable):
            await driver.abort()


async def test_after_a_restart_on_the_same_port_the_driver_reconnects_and_status_changes_arrive(
    molder_server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    driver = await make_driver(MOLDER, molder_server.url)
    url, tool = molder_server.url, molder_server.tool("MOLDER-1")
    async with event_stream(driver) as events:
        await next_event(events, StatusChanged)
        await molder_server.stop()
        await next_event(events, ConnectionLost, within=2.0)
        tool.set_mode(Mode.ENGINEERING)  # changed while the server was down
        await molder_server.start()
        assert molder_server.url == url
        await next_event(events, ConnectionRestored, within=5.0)
        current = await next_event(events, StatusChanged)
        assert isinstance(current, StatusChanged)
        assert current.status.mode is Mode.ENGINEERING

        # The subscription was rebuilt: a change made now is published to the driver.
        tool.load_recipe(full_recipe(MOLDER))
        ready = await next_status(events, ProcessState.READY)
    assert ready.mode is Mode.ENGINEERING
    session = driver.session
    assert session is not None
    assert session.connections_made == 2


async def test_dropped_connections_are_rebuilt_even_when_new_ones_are_refused_a_while(
    molder_server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    driver = await make_driver(MOLDER, molder_server.url)
    tool = molder_server.tool("MOLDER-1")
    async with event_stream(driver) as events:
        await next_event(events, StatusChanged)
        await molder_server.drop_connections(refuse_for_s=0.3)
        lost = await next_event(events, ConnectionLost, within=2.0)
        assert isinstance(lost, ConnectionLost)
        assert "closed" in lost.reason
        await next_event(events, ConnectionRestored, within=5.0)
        tool.set_mode(Mode.SETUP)
        changed = await next_event(
            events,
            StatusChanged,
            where=lambda e: isinstance(e, StatusChanged) and e.status.mode is Mode.SETUP,
        )
    assert isinstance(changed, StatusChanged)
    assert (await driver.status()).mode is Mode.SETUP


async def test_a_hung_server_is_noticed_within_two_seconds_and_its_requests_time_out(
    molder_server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    driver = await make_driver(MOLDER, molder_server.url)
    async with event_stream(driver) as events:
        await next_event(events, StatusChanged)
        molder_server.stall()
        with pytest.raises((ToolTimeout, ToolUnreachable)):
            async with asyncio.timeout(FAST.timeout_s * 3):  # never a hang
                await driver.status()
        lost = await next_event(events, ConnectionLost, within=2.0)
        assert isinstance(lost, ConnectionLost)
        # The session dropped the hung connection and reconnects on a fresh one.
        await next_event(events, ConnectionRestored, within=5.0)
    assert (await driver.status()).state is ProcessState.IDLE


async def test_a_waiting_request_fails_as_soon_as_the_connection_drops(
    molder_server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    slow = FAST.model_copy(update={"timeout_s": 5.0})
    driver = await make_driver(MOLDER, molder_server.url, policy=slow)
    molder_server.stall()
    waiting = asyncio.create_task(driver.status())
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await molder_server.drop_connections()
    with pytest.raises(ToolUnreachable):
        async with asyncio.timeout(1.0):  # well before its 5 s timeout
            await waiting


async def test_a_server_that_accepts_and_never_answers_gives_a_timeout_not_a_hang(
    make_driver: DriverMaker,
) -> None:
    async with silent_server() as url:
        async with asyncio.timeout(FAST.timeout_s * 4):
            driver = await make_driver(MOLDER, url)  # returns after the first attempt
        assert not driver.connected
        async with event_stream(driver) as events:
            lost = await next_event(events, ConnectionLost)
        assert isinstance(lost, ConnectionLost)
        with pytest.raises(ToolUnreachable, match="did not answer"):
            await driver.status()
        await driver.close()


async def test_a_closed_port_leaves_the_driver_offline_and_retrying(
    make_driver: DriverMaker,
) -> None:
    async with OpcUaToolServer([virtual_tool(MOLDER)]) as server:
        url = server.url
    driver = await make_driver(MOLDER, url)
    assert not driver.connected
    with pytest.raises(ToolUnreachable, match="connection failed"):
        await driver.identify()
    session = driver.session
    assert session is not None
    assert session.connections_made == 0


async def test_a_tool_the_server_does_not_have_is_offline_with_the_reason(
    molder_server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    driver = await make_driver(MOLDER, molder_server.url, object_name="NO-SUCH-TOOL")
    async with event_stream(driver) as events:
        lost = await next_event(events, ConnectionLost)
    assert isinstance(lost, ConnectionLost)
    assert not driver.connected
    with pytest.raises(ToolUnreachable, match="Tools/NO-SUCH-TOOL not found"):
        await driver.status()
