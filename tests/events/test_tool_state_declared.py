"""Who declared a tool down or brought it up, and why, on the event feed: the tool-state said
``scheduled_down`` but not who declared it nor why, and nothing of who brought it back up,
where a lot event says who acted (``by``) and how they were known (``auth``). Each tool-state
now carries ``down`` (the declaration in force) and ``declared`` (the last person's ``tool
down`` or ``tool up``: the name given, who acted, how known, why, when), through a real
broker; a declaration that leaves the E10 state as it was is published too, and one made
before pkgline recorded who acted has ``by`` and ``auth`` null."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from mes.adapters.database import create_engine
from mes.adapters.outbox import OutboxStore
from mes.domain.authority import AuthMethod, Principal, Role
from mes.domain.equipment import DispatchMode, ToolRecord, ToolRegistration, ToolSnapshot
from pkgline.events import payloads
from pkgline.events.relay import Relay
from tests.controller.conftest import Stack, wait_until
from tests.events.conftest import Mosquitto, check_schema, events_config, running, subscribed

TECH = Principal("tom", frozenset({Role.TECHNICIAN}), AuthMethod.SESSION)
ROOT = Principal.file_owner("root")
STANDBY = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")


@pytest.mark.slow
async def test_a_tools_state_on_the_feed_says_who_declared_it_down_or_up_and_why(
    stack: Stack, broker: Mosquitto
) -> None:
    events = events_config(broker.port)
    engine = create_engine(stack.url)

    async def tools() -> list[ToolRecord]:
        return await stack.equipment.tools("feed-tools")

    relay = Relay(events, OutboxStore(engine), controller="feed-tools", tools=tools)
    try:
        await stack.equipment.register(
            "feed-tools", [ToolRegistration("DB-1", "die_bonder", "sim", ("DIE_ATTACH",))]
        )
        await stack.equipment.report("DB-1", STANDBY)
        async with subscribed(events, relay.topics) as sub, running(relay):

            def states() -> list[dict[str, Any]]:
                return [m.payload for m in sub.of("/tools/DB-1/state")]

            async def published(what: str, **fields: Any) -> dict[str, Any]:
                def seen() -> bool:
                    return bool(states()) and fields.items() <= states()[-1].items()

                await wait_until(seen, timeout_s=20, what=what)
                return states()[-1]

            first = await published("the tool's state", e10="standby")
            assert (first["down"], first["declared"]) == (None, None)
            tech = stack.equipment.acting_as(TECH)
            await tech.declare_down("DB-1", "scheduled_down", "tom", "PM 500 h")
            down = await published("declared down", down="scheduled_down")
            assert down["e10"] == "scheduled_down"
            said = dict(down["declared"])
            assert said.pop("at") == down["e10_since"]
            assert said == {
                "down": "scheduled_down",
                "user": "tom",
                "by": "tom",
                "auth": "session",
                "reason": "PM 500 h",
            }
            await tech.bring_up("DB-1", "tom", "PM done")
            up = await published("brought up", down=None, e10="standby")
            assert {k: up["declared"][k] for k in ("down", "by", "auth", "reason")} == {
                "down": None,
                "by": "tom",
                "auth": "session",
                "reason": "PM done",
            }
            # the tool in maintenance by its own mode: declared so, its E10 state stays as it
            # was, and the declaration is published all the same (who, in direct mode)
            await stack.equipment.report("DB-1", replace(STANDBY, e10="scheduled_down"))
            await published("the tool's own maintenance", e10="scheduled_down")
            root = stack.equipment.acting_as(ROOT)
            await root.declare_down("DB-1", "scheduled_down", "eng1", "PM by the book")
            again = await published("declared over its own state", down="scheduled_down")
            said = again["declared"]
            assert (said["user"], said["by"], said["auth"]) == ("eng1", "root", "file_owner")
        for state in states():
            check_schema(state, "tool-state")
    finally:
        await engine.dispose()


def test_a_declaration_made_before_pkgline_recorded_who_acted_has_by_and_auth_null() -> None:
    at = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    never = ToolRecord(
        "DB-1", "line-1", "die_bonder", "", ("DIE_ATTACH",), DispatchMode.AUTO, STANDBY, at, at
    )
    assert payloads.tool_state(never)["declared"] is None
    check_schema(payloads.tool_state(never), "tool-state")
    older = replace(
        never, down="non_scheduled", down_by="eng1", down_reason="no orders", down_at=at
    )
    document = payloads.tool_state(older)
    check_schema(document, "tool-state")
    assert document["down"] == "non_scheduled"
    assert document["declared"] == {
        "down": "non_scheduled",
        "user": "eng1",
        "by": None,
        "auth": None,
        "reason": "no orders",
        "at": at.isoformat(),
    }
