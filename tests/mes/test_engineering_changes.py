"""Engineering changes in the security log, every store: a tool qualified or disqualified, an
SPC chart set, an SPC inhibit cleared, a reason code added or retired, a tool switched between
auto and manual each append one ``engineering_change`` event (who, what, the tool, step or
code, before and after, the reason) in the transaction of the change; a refused change
appends none; a transaction that fails after the change leaves neither; and ``audit verify``
verifies the chain with them in it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from flows import FlowLibrary
from mes.adapters.audit import verify_history
from mes.adapters.memory import MemoryUnitOfWorkFactory
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.adapters.sql_identity import SqlIdentityStore, SqlSecurityLog
from mes.domain import commands as cmd
from mes.domain.audit import GENESIS
from mes.domain.authority import AuthMethod, NotAuthorized, Principal, Role
from mes.domain.equipment import DispatchMode, ToolRegistration
from mes.domain.errors import InvalidInput, OperationNotAllowed, UnknownTool
from mes.domain.identity import EventKind, SecurityEvent, SecurityEventQuery
from mes.domain.security_chain import SecurityChainCheck, event_hash
from mes.engineering import ChangeRecord
from mes.equipment import EquipmentService
from mes.guard import REQUEST_ORIGIN, SecurityLog
from mes.interlocks import QualificationService
from mes.ports import UnitOfWorkFactory, Work
from mes.reasons import ReasonService
from mes.service import LotService
from mes.spc import SpcService
from tests.mes.conftest import Clock

ENGINEER = Principal("pe1", frozenset({Role.ENGINEER}), AuthMethod.PASSWORD)
QUALITY = Principal("qa1", frozenset({Role.QUALITY}), AuthMethod.PASSWORD)
OPERATOR = Principal("op1", frozenset({Role.OPERATOR}), AuthMethod.PASSWORD)
BLT = "bond_line_thickness_um"
TOOLS = [
    ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1:5020", ("DIE_ATTACH",)),
    ToolRegistration("DICE-1", "dicer", "modbus 127.0.0.1:5022", ("DICE",)),
]


def _log(store: UnitOfWorkFactory) -> SecurityLog:
    """Where the services record refusals: the store's own security log."""
    if isinstance(store, MemoryUnitOfWorkFactory):
        return store
    assert isinstance(store, SqlUnitOfWorkFactory)
    return SqlSecurityLog(store.engine)


async def _events(store: UnitOfWorkFactory, kind: EventKind | None = None) -> list[SecurityEvent]:
    """The security log, oldest first (of one kind)."""
    if isinstance(store, MemoryUnitOfWorkFactory):
        return [e for e in store.store.security_events if kind in (None, e.kind)]
    assert isinstance(store, SqlUnitOfWorkFactory)
    async with SqlIdentityStore(store.engine).transaction(readonly=True) as tx:
        page = await tx.event_page(SecurityEventQuery(kind=kind, limit=500))
    return page.events[::-1]


async def _changes(store: UnitOfWorkFactory) -> list[SecurityEvent]:
    return await _events(store, EventKind.ENGINEERING_CHANGE)


async def _verified(store: UnitOfWorkFactory) -> int:
    """The security log's chain checked as ``audit verify`` checks it: its events."""
    if isinstance(store, MemoryUnitOfWorkFactory):
        check, prev = SecurityChainCheck(), GENESIS
        for e in store.store.security_events:
            digest = event_hash(e, prev)
            assert check.add(e, prev, digest)
            prev = digest
        assert check.finish(store.store.security_head) is None
        return check.events
    assert isinstance(store, SqlUnitOfWorkFactory)
    found = await verify_history(store.engine)
    assert found.ok, found.problem
    return found.security_events


@pytest.fixture
async def line(equipment: EquipmentService) -> None:
    await equipment.register("line-a", TOOLS)


@pytest.fixture
def qualifications(
    store: UnitOfWorkFactory, library: FlowLibrary, clock: Clock
) -> QualificationService:
    return QualificationService(store, library, clock, principal=ENGINEER, security=_log(store))


@pytest.fixture
def spc(store: UnitOfWorkFactory, library: FlowLibrary, clock: Clock) -> SpcService:
    return SpcService(store, library, clock, principal=ENGINEER, security=_log(store))


@pytest.mark.usefixtures("line")
async def test_qualify_and_disqualify_each_leave_one_change_with_before_and_after(
    store: UnitOfWorkFactory, qualifications: QualificationService
) -> None:
    assert await _changes(store) == []  # registration qualifies by configuration: not a change
    off = await qualifications.set("DB-1", "DIE_ATTACH", False, "eng1", "BLT drift")
    [event] = await _changes(store)
    assert (event.actor, event.method, event.action) == (
        "pe1",
        AuthMethod.PASSWORD,
        "tool_disqualify",
    )
    assert event.at == off.at
    detail = dict(event.detail)
    assert (detail["tool"], detail["step"], detail["reason"]) == ("DB-1", "DIE_ATTACH", "BLT drift")
    assert detail["before"]["qualified"] is True and detail["before"]["by"] == "line line-a"
    assert detail["after"] == {
        "qualified": False,
        "by": "eng1",
        "at": off.at.isoformat(),
        "reason": "BLT drift",
    }
    await qualifications.set("DB-1", "DIE_ATTACH", True, "eng1")
    first, second = await _changes(store)
    assert first == event
    assert second.action == "tool_qualify" and second.detail["reason"] is None
    assert second.detail["before"] == detail["after"]
    assert second.detail["after"]["qualified"] is True
    await qualifications.set("DB-1", "DIE_ATTACH", True, "eng1", "again")
    assert len(await _changes(store)) == 3  # qualified again: who, when and why are new
    assert await _verified(store) == 3


@pytest.mark.usefixtures("line")
async def test_spc_set_and_clear_each_leave_one_change_with_before_and_after(
    store: UnitOfWorkFactory, library: FlowLibrary, clock: Clock, spc: SpcService
) -> None:
    first = await spc.configure("DIE_ATTACH", BLT, "DB-1", "eng1", baseline_n=20)
    [made] = await _changes(store)
    assert (made.actor, made.action) == ("pe1", "spc_set")
    assert (made.detail["step"], made.detail["value"], made.detail["tool"]) == (
        "DIE_ATTACH",
        BLT,
        "DB-1",
    )
    assert made.detail["before"] is None
    assert made.detail["after"]["baseline_n"] == 20 and made.detail["after"]["center"] is None
    chart = await spc.configure(
        "DIE_ATTACH", BLT, "DB-1", "eng1", center=25.0, sigma=1.0, inhibit=True
    )
    [_, changed] = await _changes(store)
    assert changed.detail["before"] == made.detail["after"]
    assert changed.detail["before"]["set_at"] == first.set_at.isoformat()
    after = changed.detail["after"]
    assert (after["center"], after["sigma"], after["inhibit"], after["limits"]) == (
        25,
        1,
        True,
        "engineering",
    )
    assert after["set_at"] == chart.set_at.isoformat()

    lots = LotService(store, library, clock)  # a point beyond 3 sigma: SPC inhibits DB-1
    await lots.start(cmd.StartLot("L1", "fo-organic", "op1", carriers=1))
    await lots.track_in(cmd.TrackIn("L1", "SUBSTRATE_PREP", "op1"))
    await lots.track_out(cmd.TrackOut("L1", "op1"))
    await lots.track_in(cmd.TrackIn("L1", "DIE_ATTACH", "ctl", tool="DB-1", dispatched=True))
    await lots.track_out(cmd.TrackOut("L1", "op1", measured={BLT: 28.5}, dispatched=True))
    assert len(await _changes(store)) == 2  # SPC's own inhibit is in the lot's history

    cleared = await spc.clear("DIE_ATTACH", "DB-1", "eng1", "head levelled")
    [*_, event] = await _changes(store)
    assert (event.actor, event.action) == ("pe1", "spc_clear")
    assert (event.detail["tool"], event.detail["step"]) == ("DB-1", "DIE_ATTACH")
    assert event.detail["reason"] == "head levelled"
    before = event.detail["before"]
    assert before["qualified"] is False and before["by"] == "SPC"
    assert before["reason"].startswith("SPC at DIE_ATTACH: SPC bond_line_thickness_um on DB-1")
    assert event.detail["after"] == {
        "qualified": True,
        "by": "eng1",
        "at": cleared.at.isoformat(),
        "reason": "SPC cleared: head levelled",
    }
    assert await _verified(store) == 3


@pytest.mark.usefixtures("line")
async def test_a_refused_change_leaves_no_change_in_the_log(
    store: UnitOfWorkFactory,
    library: FlowLibrary,
    clock: Clock,
    qualifications: QualificationService,
    spc: SpcService,
) -> None:
    with pytest.raises(UnknownTool):
        await qualifications.set("NOPE", "DIE_ATTACH", True, "eng1")
    with pytest.raises(InvalidInput):  # a die bonder does not dice
        await qualifications.set("DB-1", "DICE", True, "eng1")
    with pytest.raises(OperationNotAllowed):  # not inhibited by SPC
        await spc.clear("DIE_ATTACH", "DB-1", "eng1", "x")
    with pytest.raises(InvalidInput):
        await spc.configure("DIE_ATTACH", BLT, "DICE-1", "eng1")
    with pytest.raises(NotAuthorized):
        await qualifications.set("DB-1", "DIE_ATTACH", False, "op1", "x", by=OPERATOR)
    with pytest.raises(NotAuthorized):
        await spc.configure("DIE_ATTACH", BLT, "DB-1", "op1", by=OPERATOR)
    assert await _changes(store) == []
    refused = await _events(store, EventKind.REFUSED)
    assert [(e.actor, e.action) for e in refused] == [("op1", "qualify"), ("op1", "spc")]
    assert [q.qualified for q in await qualifications.list(tool_id="DB-1")] == [True]
    assert await spc.charts() == []


@pytest.mark.usefixtures("line")
async def test_a_transaction_that_fails_after_the_change_leaves_neither(
    store: UnitOfWorkFactory,
    qualifications: QualificationService,
    spc: SpcService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written = ChangeRecord.write

    def then_fail(self: ChangeRecord, detail: Any) -> Work[None]:
        yield from written(self, detail)  # the change and its event are written...
        raise RuntimeError("the connection dropped")  # ...and the transaction fails

    monkeypatch.setattr(ChangeRecord, "write", then_fail)
    with pytest.raises(RuntimeError):
        await qualifications.set("DB-1", "DIE_ATTACH", False, "eng1", "drift")
    with pytest.raises(RuntimeError):
        await spc.configure("DIE_ATTACH", BLT, "DB-1", "eng1")
    assert await _changes(store) == []
    [kept] = await qualifications.list(tool_id="DB-1")
    assert kept.qualified is True and kept.by == "line line-a"
    assert await spc.charts() == []
    assert await _verified(store) == 0


@pytest.mark.usefixtures("line")
async def test_reason_codes_and_dispatch_modes_are_changes_too(
    store: UnitOfWorkFactory, clock: Clock, equipment: EquipmentService
) -> None:
    reasons = ReasonService(store, clock, principal=QUALITY, security=_log(store))
    await reasons.add("VOID", "hold", "voids in the mold", "qa1", release_roles=["engineer"])
    await reasons.retire("VOID", "qa1", "merged into MOLD-DEFECT")
    tools = EquipmentService(store, clock, principal=ENGINEER, security=_log(store))
    await tools.set_dispatch("DB-1", DispatchMode.MANUAL, "eng1", "engineering lot")
    with pytest.raises(UnknownTool):
        await tools.set_dispatch("NOPE", DispatchMode.MANUAL, "eng1")
    added, retired, manual = await _changes(store)
    assert (added.actor, added.action, added.detail["code"]) == ("qa1", "reason_add", "VOID")
    assert added.detail["before"] is None
    assert added.detail["after"]["release_roles"] == ["engineer"]
    assert retired.action == "reason_retire" and retired.detail["before"]["retired_at"] is None
    assert retired.detail["after"]["retired_by"] == "qa1"
    assert retired.detail["reason"] == "merged into MOLD-DEFECT"
    assert (manual.actor, manual.action, manual.detail["tool"]) == ("pe1", "tool_dispatch", "DB-1")
    assert manual.detail["before"]["dispatch"] == "auto"
    assert manual.detail["after"]["dispatch"] == "manual"
    assert manual.detail["reason"] == "engineering lot"
    assert (await equipment.tool("DB-1")).dispatch is DispatchMode.MANUAL
    assert await _verified(store) == 3


@pytest.fixture
def origin() -> Iterator[None]:
    token = REQUEST_ORIGIN.set("10.0.4.33:51234 (https)")
    try:
        yield
    finally:
        REQUEST_ORIGIN.reset(token)


@pytest.mark.usefixtures("line", "origin")
async def test_a_change_through_the_server_keeps_where_the_request_came_from(
    store: UnitOfWorkFactory, qualifications: QualificationService
) -> None:
    """Taken on the event loop: the work of a SQLite transaction runs on the driver's
    thread, where the request's context is not."""
    await qualifications.set("DB-1", "DIE_ATTACH", False, "eng1", "drift")
    [event] = await _changes(store)
    assert event.detail["from"] == "10.0.4.33:51234 (https)"
    assert await _verified(store) == 1
