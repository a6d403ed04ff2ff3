"""The OPC UA simulator, seen by a plain asyncua client (as a third-party integrator would):
the documented address space per tool with its types, methods answering a refusal code and a
reason, bad arguments failing with a Bad status, status mirrored on every change, alarms as
events, dropped connections, restarts on the same port, and tools added while running."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import OpcEvent
from asyncua.ua.uaerrors import BadArgumentsMissing, BadInvalidArgument

from drivers.model import Alarm, AlarmSeverity, EquipmentClass, Mode, ProcessState, RefusalCode
from simulators.engine import SimulationSettings, VirtualTool
from simulators.opcua_model import ALARM_EVENT_FIELDS, METHODS, NAMESPACE_URI, VARIABLES
from simulators.opcua_server import OpcUaToolServer

V = ua.VariantType
_MEASURED = {"float": V.Double, "int": V.Int32, "enum": V.String}


def _tool(equipment_class: EquipmentClass, time_scale: float = 0.0) -> VirtualTool:
    return VirtualTool(
        f"{equipment_class.value.upper()}-1",
        equipment_class,
        SimulationSettings(time_scale=time_scale, seed=3),
    )


@pytest.fixture
async def server() -> AsyncIterator[OpcUaToolServer]:
    tools = [_tool(c) for c in EquipmentClass]
    async with OpcUaToolServer(tools) as server:
        yield server


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[Client]:
    client = Client(url, timeout=2)
    await client.connect()
    try:
        yield client
    finally:
        await client.disconnect()
        # asyncua cancels its publish loop on disconnect without waiting for it.
        await asyncio.sleep(0.01)


async def _ns(client: Client) -> int:
    return await client.get_namespace_index(NAMESPACE_URI)


async def _child(client: Client, tool_id: str, path: str) -> Node:
    ns = await _ns(client)
    parts = [
        "0:Objects",
        f"{ns}:Tools",
        f"{ns}:{tool_id}",
        *(f"{ns}:{p}" for p in path.split("/") if p),
    ]
    return await client.nodes.root.get_child(parts)


async def _call(client: Client, tool_id: str, method: str, *args: ua.Variant) -> list[object]:
    tool = await _child(client, tool_id, "")
    result = await tool.call_method((await _child(client, tool_id, method)).nodeid, *args)
    assert isinstance(result, list)
    return result


async def test_every_tool_has_the_documented_variables_methods_and_types(
    server: OpcUaToolServer,
) -> None:
    async with connected(server.url) as client:
        for tool in server.tools.values():
            declared = list(VARIABLES) + [
                (f"Results/Measured/{n}", _MEASURED[s.type], "")
                for n, s in tool.spec.measured.items()
            ]
            for path, vtype, _ in declared:
                node = await _child(client, tool.tool_id, path)
                assert await node.read_data_type() == ua.NodeId(ua.Int32(vtype.value)), path
                value = (await node.read_data_value()).Value
                assert value is not None
                assert value.VariantType == vtype, path
            for method, inputs in METHODS.items():
                node = await _child(client, tool.tool_id, method)
                if inputs:
                    arguments = await (await node.get_child("0:InputArguments")).read_value()
                    assert [a.Name for a in arguments] == [name for name, _, _ in inputs]
                outputs = await (await node.get_child("0:OutputArguments")).read_value()
                assert [a.Name for a in outputs] == ["RefusalCode", "Reason"]
            tool_node = await _child(client, tool.tool_id, "")
            notifier = await tool_node.read_event_notifier()
            assert ua.EventNotifier.SubscribeToEvents in notifier
        identity = await _child(client, "DICER-1", "Identification/EquipmentClass")
        assert await identity.read_value() == "dicer"


async def test_a_method_answers_a_refusal_code_and_a_reason(server: OpcUaToolServer) -> None:
    async with connected(server.url) as client:
        code, reason = await _call(
            client,
            "MOLDER-1",
            "StartJob",
            *(ua.Variant(v, V.String) for v in ("J-1", "LOT-1", "MOLD", "C-1")),
            ua.Variant(1, V.UInt16),
            ua.Variant(1, V.UInt16),
            ua.Variant(b"\0", V.ByteString),
        )
        assert code == RefusalCode.WRONG_STATE
        assert isinstance(reason, str)
        assert "IDLE" in reason
        code, reason = await _call(client, "MOLDER-1", "SetMode", ua.Variant(2, V.Int32))
        assert (code, reason) == (RefusalCode.OK, "")
    assert server.tool("MOLDER-1").status.mode is Mode.ENGINEERING


async def test_arguments_of_the_wrong_type_or_number_fail_with_a_bad_status(
    server: OpcUaToolServer,
) -> None:
    async with connected(server.url) as client:
        with pytest.raises(BadInvalidArgument):
            await _call(client, "DICER-1", "SetMode", ua.Variant("ENGINEERING", V.String))
        with pytest.raises(BadArgumentsMissing):
            await _call(client, "DICER-1", "AcknowledgeResults")
    assert server.tool("DICER-1").status.mode is Mode.PRODUCTION


async def test_a_recipe_body_that_is_not_a_json_object_is_an_invalid_argument(
    server: OpcUaToolServer,
) -> None:
    async with connected(server.url) as client:
        for body in ("not json", json.dumps([1, 2]), json.dumps({"spindle_speed_rpm": None})):
            code, _ = await _call(
                client,
                "DICER-1",
                "LoadRecipe",
                ua.Variant("r", V.String),
                ua.Variant(1, V.Int32),
                ua.Variant(body, V.String),
            )
            assert code == RefusalCode.INVALID_ARGUMENT, body
    assert server.tool("DICER-1").status.state is ProcessState.IDLE


async def test_a_method_mirrors_the_change_before_it_answers() -> None:
    tool = _tool(EquipmentClass.GRINDER, time_scale=0.05)  # a 0.25 s setup
    async with OpcUaToolServer([tool]) as server, connected(server.url) as client:
        body = json.dumps({"target_thickness_um": 100.0})
        code, _ = await _call(
            client,
            "GRINDER-1",
            "LoadRecipe",
            ua.Variant("thin", V.String),
            ua.Variant(2, V.Int32),
            ua.Variant(body, V.String),
        )
        assert code == RefusalCode.OK
        state = await _child(client, "GRINDER-1", "State")
        assert await state.read_value() == ProcessState.SETUP
        name = await _child(client, "GRINDER-1", "Recipe/ActiveName")
        assert await name.read_value() == "thin"
        checksum = await _child(client, "GRINDER-1", "Recipe/ActiveChecksum")
        active = tool.active_recipe
        assert active is not None
        assert await checksum.read_value() == active.checksum
        async with asyncio.timeout(3):
            while True:
                if await state.read_value() == ProcessState.READY:
                    break
                await asyncio.sleep(0.02)


async def test_status_changes_reach_a_subscribed_client(server: OpcUaToolServer) -> None:
    tool = server.tool("SPUTTER-1")
    async with connected(server.url) as client:
        subscription = await client.create_subscription(20, None)
        mode = await _child(client, tool.tool_id, "Mode")
        await subscription.subscribe_data_change(mode)
        first = await subscription.next_event(timeout=2)
        assert first is not None
        tool.set_mode(Mode.MAINTENANCE)
        async with asyncio.timeout(2):
            while True:
                event = await subscription.next_event(timeout=2)
                if getattr(event, "value", None) == Mode.MAINTENANCE:
                    break
        await subscription.delete()


async def test_an_alarm_is_emitted_as_an_event_with_code_text_and_severity(
    server: OpcUaToolServer,
) -> None:
    tool = server.tool("LITHO-1")
    async with connected(server.url) as client:
        ns = await _ns(client)
        alarm_type = await client.nodes.base_event_type.get_child(f"{ns}:AlarmEventType")
        subscription = await client.create_subscription(20, None)
        await subscription.subscribe_events(await _child(client, tool.tool_id, ""), alarm_type)
        tool.inject_alarm(Alarm(77, "lamp failure", AlarmSeverity.WARNING))
        received = await subscription.next_event(timeout=2)
        assert isinstance(received, OpcEvent)
        fields = {k: v.Value for k, v in received.event.get_event_props_as_fields_dict().items()}
        assert (fields["AlarmCode"], fields["AlarmText"], fields["AlarmSeverity"]) == (
            77,
            "lamp failure",
            1,
        )
        assert fields["Message"] == ua.LocalizedText("lamp failure")
        assert fields["EventType"] == alarm_type.nodeid
        assert [name for name, _, _ in ALARM_EVENT_FIELDS] == [
            "AlarmCode",
            "AlarmText",
            "AlarmSeverity",
        ]
        code = await _child(client, tool.tool_id, "Alarm/ActiveCode")
        assert await code.read_value() == 77, "the values are written before the event"
        await subscription.delete()


async def test_drop_connections_closes_every_client_connection_and_session(
    server: OpcUaToolServer,
) -> None:
    client = Client(server.url, timeout=2)
    await client.connect()
    try:
        async with client.subscribe_state() as states:
            await server.drop_connections()
            async with asyncio.timeout(2):
                while client.uaclient.state.value != "disconnected":
                    await states.next_change()
    finally:
        await client.disconnect()
    async with connected(server.url) as again:
        assert await (await _child(again, "DICER-1", "State")).read_value() == ProcessState.IDLE


async def test_a_restart_serves_the_same_port_and_the_tools_keep_their_state(
    server: OpcUaToolServer,
) -> None:
    url = server.url
    server.tool("COATER-1").set_mode(Mode.SETUP)
    await server.stop()
    assert not server.running
    await server.start()
    assert server.url == url
    async with connected(url) as client:
        assert await (await _child(client, "COATER-1", "Mode")).read_value() == Mode.SETUP


async def test_a_tool_added_while_running_is_served_at_once(server: OpcUaToolServer) -> None:
    extra = await server.add_tool(
        VirtualTool("DICER-2", EquipmentClass.DICER, SimulationSettings(time_scale=0))
    )
    async with connected(server.url) as client:
        serial = await _child(client, "DICER-2", "Identification/SerialNumber")
        assert await serial.read_value() == extra.identity.serial_number
    with pytest.raises(ValueError, match="already served"):
        await server.add_tool(extra)
