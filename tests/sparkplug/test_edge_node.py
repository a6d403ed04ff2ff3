"""The edge node against a real Mosquitto, read back with the tests' own payload reader: the
birth, data and death sequence, seq and bdSeq as Sparkplug B 3.0 says, the wait for the
primary host's STATE, a rebirth on NCMD, and a reconnect after the broker restarts."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest

from drivers.catalogue import class_spec
from drivers.model import EquipmentClass, JobResults, Recipe, SiteMap
from mes.domain.equipment import ToolSnapshot
from mes.domain.tool_down import InForce
from pkgline.sparkplug.config import SparkplugConfig
from pkgline.sparkplug.node import EdgeNode, running
from tests.sparkplug.conftest import WAIT_S, Broker, Subscriber, check_seq, subscribed
from tests.sparkplug.wire import BOOLEAN, DATETIME, INT64, command_payload

TOOLS = [("DB-1", EquipmentClass.DIE_BONDER), ("WB-1", EquipmentClass.WIRE_BONDER)]
COMMON = {
    "Properties/Equipment Class",
    "Process/State",
    "Process/Mode",
    "E10/State",
    "E10/Declared",
    "E10/Declared By",
    "E10/Declared Reason",
    "E10/Declared At",
    "Recipe/Name",
    "Recipe/Version",
    "Recipe/Checksum",
    "Job/Id",
    "Job/Lot",
    "Job/Sites Done",
    "Job/Sites Total",
    "Alarm/Active",
    "Alarm/Code",
    "Alarm/Text",
    "Alarm/Severity",
    "Measured/Job",
}


def node_for(broker: Broker, tmp_path: Path, **settings: object) -> EdgeNode:
    config = SparkplugConfig.model_validate(
        {
            "url": broker.url,
            "group_id": "packaging",
            "bdseq_file": str(tmp_path / "bdseq"),
            "backoff_initial_s": 0.1,
            "backoff_max_s": 0.5,
            **settings,
        }
    )
    return EdgeNode(config, "line-test", TOOLS)


def seen(state: str = "IDLE", *, connected: bool = True, **more: object) -> ToolSnapshot:
    e10 = {"EXECUTING": "productive", "ALARM": "unscheduled_down"}.get(state, "standby")
    return ToolSnapshot(
        connected=connected,
        e10=e10 if connected else "unscheduled_down",
        process_state=state,
        mode="PRODUCTION",
        **more,  # type: ignore[arg-type]
    )


def now() -> datetime:
    return datetime.now(UTC)


async def wait_state(node: EdgeNode, state: str) -> None:
    async with asyncio.timeout(WAIT_S):
        while node.state != state:
            node.state_changed.clear()
            await node.state_changed.wait()


async def test_births_data_and_deaths_follow_the_tools_in_order_with_aliases(
    broker: Broker, tmp_path: Path
) -> None:
    node = node_for(broker, tmp_path)
    node.tool_seen("DB-1", seen("IDLE"), now())  # before the session: carried by the births
    async with subscribed(broker) as sub, running(node):
        nbirth = await sub.next()
        assert nbirth.topic == "spBv1.0/packaging/NBIRTH/line-test"
        assert nbirth.payload.seq == 0 and nbirth.payload.timestamp
        node_metrics = nbirth.payload.by_name()
        assert node_metrics["bdSeq"].datatype == INT64 and node_metrics["bdSeq"].value == 0
        rebirth = node_metrics["Node Control/Rebirth"]
        assert rebirth.datatype == BOOLEAN and rebirth.value is False and rebirth.alias is None

        dbirth = await sub.next()
        assert dbirth.topic == "spBv1.0/packaging/DBIRTH/line-test/DB-1"
        measured = {f"Measured/{n}" for n in class_spec(EquipmentClass.DIE_BONDER).measured}
        metrics = dbirth.payload.by_name()
        assert set(metrics) == COMMON | measured
        assert all(m.alias is not None for m in dbirth.payload.metrics)
        assert len({m.alias for m in dbirth.payload.metrics}) == len(dbirth.payload.metrics)
        assert metrics["Process/State"].value == "IDLE"
        assert metrics["Properties/Equipment Class"].value == "die_bonder"
        assert metrics["Recipe/Name"].is_null and metrics["Alarm/Active"].value is False
        alias = {name: m.alias for name, m in metrics.items()}

        # WB-1 comes up: its own DBIRTH, aliases unique across the node
        node.tool_seen("WB-1", seen("IDLE"), now())
        wb_birth = await sub.next()
        assert wb_birth.verb == "DBIRTH" and wb_birth.device == "WB-1"
        assert not {m.alias for m in wb_birth.payload.metrics} & set(alias.values())

        # DB-1 starts a job: DDATA by alias, only what changed
        recipe = Recipe("DA-1", 3, {"bond_force_n": 12.5})
        node.recipe_active("DB-1", recipe.info(), now())
        data = await sub.next()
        assert data.verb == "DDATA" and data.device == "DB-1"
        assert all(m.name is None for m in data.payload.metrics)
        values = {m.alias: m.value for m in data.payload.metrics}
        assert values == {
            alias["Recipe/Name"]: "DA-1",
            alias["Recipe/Version"]: 3,
            alias["Recipe/Checksum"]: recipe.checksum(),
        }
        node.tool_seen(
            "DB-1",
            seen("EXECUTING", job_id="J1", lot_id="L1", sites_done=0, sites_total=32),
            now(),
        )
        data = await sub.next()
        values = {m.alias: m.value for m in data.payload.metrics}
        assert values == {
            alias["Process/State"]: "EXECUTING",
            alias["E10/State"]: "productive",
            alias["Job/Id"]: "J1",
            alias["Job/Lot"]: "L1",
            alias["Job/Sites Total"]: 32,
        }
        results = JobResults(
            "J1", "L1", "DIE_ATTACH", "C1",
            {"bond_force_n": 12.4, "xy_offset_um": 3.5, "bond_line_thickness_um": 20.0},
            SiteMap.all_good(4, 8),
        )  # fmt: skip
        node.job_measured("DB-1", results, now())
        data = await sub.next()
        values = {m.alias: m.value for m in data.payload.metrics}
        assert values == {
            alias["Measured/Job"]: "J1",
            alias["Measured/bond_force_n"]: 12.4,
            alias["Measured/xy_offset_um"]: 3.5,
            alias["Measured/bond_line_thickness_um"]: 20.0,
        }
        node.tool_seen("DB-1", seen("EXECUTING", job_id="J1", lot_id="L1", sites_total=32), now())
        # the same again changes nothing: the next message is the alarm's
        alarm = {"code": 7, "text": "vacuum lost", "severity": "error"}
        node.tool_seen(
            "DB-1", seen("ALARM", job_id="J1", lot_id="L1", alarm=alarm, sites_total=32), now()
        )
        data = await sub.next()
        values = {m.alias: m.value for m in data.payload.metrics}
        assert values[alias["Alarm/Active"]] is True
        assert values[alias["Alarm/Code"]] == 7 and values[alias["Alarm/Text"]] == "vacuum lost"
        assert values[alias["Process/State"]] == "ALARM"

        # the tool stops answering: DDEATH; it comes back: DBIRTH with what it says now
        node.tool_seen("DB-1", seen("ALARM", connected=False), now())
        death = await sub.next()
        assert death.topic == "spBv1.0/packaging/DDEATH/line-test/DB-1"
        assert death.payload.metrics == [] and death.payload.timestamp
        node.tool_seen("DB-1", seen("IDLE"), now())
        back = await sub.next()
        assert back.verb == "DBIRTH" and back.device == "DB-1"
        again = back.payload.by_name()
        assert again["Process/State"].value == "IDLE" and again["Recipe/Name"].is_null
        assert {n: m.alias for n, m in again.items()} == alias
    check_seq(sub.seen[: sub.seen.index(back) + 1])
    assert all(r.qos == 0 and not r.retain for r in sub.seen if r.verb != "NDEATH")


async def test_a_declaration_is_the_tools_e10_state_until_it_is_brought_up(
    broker: Broker, tmp_path: Path
) -> None:
    """As equipment tracking records it: while a person declared the tool down, its E10 state
    is the declared one whatever the tool reports, with who, why and since when; brought up,
    the state the tool last reported. Births carry it; the same declarations again send
    nothing."""
    since = datetime(2026, 12, 7, 8, 30, tzinfo=UTC)
    down = InForce("scheduled_down", "tech1", "PM: capillary change", since)
    node = node_for(broker, tmp_path)
    node.tool_seen("DB-1", seen("IDLE"), now())
    node.declared({"DB-1": down}, now())  # before the session: carried by the births
    async with subscribed(broker) as sub, running(node):
        await sub.next("NBIRTH")
        birth = (await sub.next("DBIRTH", "DB-1")).payload.by_name()
        assert birth["E10/State"].value == "scheduled_down"
        assert birth["E10/Declared"].value == "scheduled_down"
        assert birth["E10/Declared By"].value == "tech1"
        assert birth["E10/Declared Reason"].value == "PM: capillary change"
        assert birth["E10/Declared At"].datatype == DATETIME
        assert birth["E10/Declared At"].value == int(since.timestamp() * 1000)
        alias = {name: m.alias for name, m in birth.items()}

        node.declared({"DB-1": down}, now())  # read again, unchanged: nothing is sent
        node.tool_seen("DB-1", seen("READY"), now())  # the tool's own change, still declared
        data = await sub.next("DDATA", "DB-1")
        assert {m.alias: m.value for m in data.payload.metrics} == {alias["Process/State"]: "READY"}

        node.declared({}, now())  # brought up: the state the tool last reported
        data = await sub.next("DDATA", "DB-1")
        values = {m.alias: m.value for m in data.payload.metrics}
        assert values[alias["E10/State"]] == "standby"
        for name in ("E10/Declared", "E10/Declared By", "E10/Declared Reason", "E10/Declared At"):
            assert values[alias[name]] is None, name

        not_scheduled = InForce("non_scheduled", "eng1", None, since)
        node.declared({"DB-1": not_scheduled}, now())
        data = await sub.next("DDATA", "DB-1")
        values = {m.alias: m.value for m in data.payload.metrics}
        assert values[alias["E10/State"]] == "non_scheduled"
        assert values[alias["E10/Declared"]] == "non_scheduled"
        assert values[alias["E10/Declared By"]] == "eng1"
        assert alias["E10/Declared Reason"] not in values, "still null: not sent again"


async def test_seq_runs_0_to_255_and_wraps_to_0(broker: Broker, tmp_path: Path) -> None:
    node = node_for(broker, tmp_path)
    node.tool_seen("DB-1", seen("EXECUTING", job_id="J1", sites_total=400), now())
    async with subscribed(broker) as sub, running(node):
        await sub.next("DBIRTH", "DB-1")
        for done in range(1, 300):
            node.tool_seen(
                "DB-1", seen("EXECUTING", job_id="J1", sites_done=done, sites_total=400), now()
            )
        while len(sub.seen) < 301:  # NBIRTH, DBIRTH, 299 DDATA
            await sub.next()
    sent = sub.seen[:301]
    check_seq(sent)
    assert [r.payload.seq for r in sent[255:258]] == [255, 0, 1]
    assert all(r.verb == "DDATA" for r in sent[2:])


async def test_bdseq_goes_up_by_one_per_connect_and_a_clean_stop_publishes_the_ndeath(
    broker: Broker, tmp_path: Path
) -> None:
    async with subscribed(broker) as sub:
        for expected in (0, 1):
            node = node_for(broker, tmp_path)  # a new process: the bdSeq comes from its file
            async with running(node):
                birth = await sub.next("NBIRTH")
                assert birth.payload.by_name()["bdSeq"].value == expected
            death = await sub.next()
            assert death.verb == "NDEATH" and death.payload.seq is None
            assert death.qos == 1 and not death.retain
            assert [(m.name, m.value) for m in death.payload.metrics] == [("bdSeq", expected)]
    assert (tmp_path / "bdseq").read_text().strip() == "1"


async def test_after_bdseq_255_the_next_connect_uses_0(broker: Broker, tmp_path: Path) -> None:
    (tmp_path / "bdseq").write_text("255\n")
    async with subscribed(broker) as sub, running(node_for(broker, tmp_path)):
        birth = await sub.next("NBIRTH")
    assert birth.payload.by_name()["bdSeq"].value == 0


async def _state(sub: Subscriber, online: bool, timestamp: int) -> None:
    body = json.dumps({"online": online, "timestamp": timestamp}).encode()
    await sub.publish("spBv1.0/STATE/scada", body, qos=1, retain=True)


async def test_with_a_primary_host_the_births_wait_for_its_online_state(
    broker: Broker, tmp_path: Path
) -> None:
    node = node_for(broker, tmp_path, primary_host_id="scada")
    node.tool_seen("DB-1", seen("IDLE"), now())
    t0 = int(time.time() * 1000)
    async with subscribed(broker) as sub, running(node):
        await wait_state(node, "waiting_for_host")
        await _state(sub, False, t0)  # the host is known to be offline: still waiting
        await _state(sub, True, t0 + 1)
        birth = await sub.next()
        assert birth.verb == "NBIRTH"
        assert sub.seen[0] is birth  # nothing before the host was online
        bdseq = birth.payload.by_name()["bdSeq"].value
        await sub.next("DBIRTH", "DB-1")

        # an offline STATE older than the online one is an old session's: ignored
        await _state(sub, False, t0)
        await sub.publish(
            "spBv1.0/packaging/NCMD/line-test", command_payload(t0, "Node Control/Rebirth", True)
        )
        rebirth = await sub.next()
        assert rebirth.verb == "NBIRTH" and rebirth.payload.by_name()["bdSeq"].value == bdseq

        # the host goes offline: NDEATH, a new session that waits for it again
        await _state(sub, False, t0 + 2)
        death = await sub.next("NDEATH")
        assert death.payload.by_name()["bdSeq"].value == bdseq
        await wait_state(node, "waiting_for_host")
        await _state(sub, True, t0 + 3)
        birth = await sub.next("NBIRTH")
        assert birth.payload.by_name()["bdSeq"].value == (bdseq + 1) % 256


async def test_a_rebirth_command_sends_the_births_again_with_the_same_bdseq(
    broker: Broker, tmp_path: Path
) -> None:
    node = node_for(broker, tmp_path)
    for tool_id, _ in TOOLS:
        node.tool_seen(tool_id, seen("IDLE"), now())
    async with subscribed(broker) as sub, running(node):
        first = await sub.next("NBIRTH")
        await sub.next("DBIRTH", "WB-1")
        node.tool_seen("DB-1", seen("READY"), now())
        await sub.next("DDATA", "DB-1")
        ncmd = command_payload(int(time.time() * 1000), "Node Control/Rebirth", True)
        await sub.publish("spBv1.0/packaging/NCMD/line-test", ncmd)
        again = await sub.next()
        assert again.verb == "NBIRTH" and again.payload.seq == 0
        assert again.payload.by_name()["bdSeq"].value == first.payload.by_name()["bdSeq"].value
        births = [await sub.next(), await sub.next()]
        assert [(b.verb, b.device) for b in births] == [("DBIRTH", "DB-1"), ("DBIRTH", "WB-1")]
        assert births[0].payload.by_name()["Process/State"].value == "READY"
        assert [b.payload.seq for b in births] == [1, 2]


async def test_after_the_broker_restarts_the_node_connects_again_and_is_born_with_the_next_bdseq(
    broker: Broker, tmp_path: Path
) -> None:
    node = node_for(broker, tmp_path)
    node.tool_seen("DB-1", seen("IDLE"), now())
    async with running(node):
        async with subscribed(broker) as sub:
            assert (await sub.next("NBIRTH")).payload.by_name()["bdSeq"].value == 0
        broker.stop()
        await wait_state(node, "disconnected")
        node.tool_seen("DB-1", seen("READY"), now())  # while away: carried by the next birth
        broker.start()
        async with subscribed(broker) as sub:
            # the subscriber may connect after the node's births: ask for them again
            await wait_state(node, "born")
            ncmd = command_payload(int(time.time() * 1000), "Node Control/Rebirth", True)
            await sub.publish("spBv1.0/packaging/NCMD/line-test", ncmd)
            birth = await sub.next("NBIRTH")
            assert birth.payload.by_name()["bdSeq"].value >= 1
            dbirth = await sub.next("DBIRTH", "DB-1")
            assert dbirth.payload.by_name()["Process/State"].value == "READY"


@pytest.mark.parametrize("payload", [b"\xff\xff\xff", b"not protobuf at all \x00\x01"])
async def test_a_malformed_command_is_ignored_and_the_node_goes_on(
    broker: Broker, tmp_path: Path, payload: bytes
) -> None:
    node = node_for(broker, tmp_path)
    node.tool_seen("DB-1", seen("IDLE"), now())
    async with subscribed(broker) as sub, running(node):
        await sub.next("DBIRTH", "DB-1")
        await sub.publish("spBv1.0/packaging/NCMD/line-test", payload)
        ncmd = command_payload(int(time.time() * 1000), "Node Control/Rebirth", True)
        await sub.publish("spBv1.0/packaging/NCMD/line-test", ncmd)
        again = await sub.next()
        assert again.verb == "NBIRTH"


async def test_a_session_that_fails_once_connected_backs_off_further(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker takes the connection and the session fails at once (a broker refusing
    what the node sends): each retry waits twice as long, up to the maximum, instead of the
    first delay every time (the backoff started over at each connect: NBIRTH and NDEATH twice
    a second, as the event relay did; found by the probe)."""
    node = node_for(broker, tmp_path, backoff_initial_s=0.05, backoff_max_s=0.4)
    connects: list[int] = []
    waits: list[float] = []

    async def refused(client: object, bdseq: int) -> None:
        connects.append(bdseq)
        raise aiomqtt.MqttError("refused by the broker")

    async def no_wait(delay_s: float) -> None:
        waits.append(delay_s)
        if len(waits) == 6:
            node.stop()

    monkeypatch.setattr(node, "_session", refused)
    monkeypatch.setattr(node, "_pause", no_wait)
    async with asyncio.timeout(WAIT_S):
        await node.run()
    assert len(connects) == 6, "each attempt connected"
    floor = [0.7 * min(0.05 * 2**k, 0.4) for k in range(6)]  # jitter shortens by up to 25 %
    assert all(w >= f for w, f in zip(waits, floor, strict=True)), waits
