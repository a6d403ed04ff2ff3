"""The service layer checks the principal acting against the one table, once: a refused
operation names the role it needs, changes nothing, and is recorded as a security event
(every store; on SQL stores in the security_events table)."""

from __future__ import annotations

import pytest

from flows import FlowLibrary
from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.adapters.sql_identity import SqlIdentityStore, SqlSecurityLog
from mes.domain import commands as cmd
from mes.domain.authority import CONTROLLER, AuthMethod, NotAuthorized, Principal, Role
from mes.domain.equipment import DispatchMode, ToolRegistration, ToolSnapshot
from mes.domain.identity import EventKind, SecurityEvent
from mes.domain.model import HoldSource, LotState
from mes.equipment import EquipmentService
from mes.ports import UnitOfWorkFactory
from mes.service import LotService
from tests.mes.conftest import Clock
from tests.mes.signers import Signers, signed


def _person(name: str, *roles: Role) -> Principal:
    return Principal(name, frozenset(roles), AuthMethod.PASSWORD)


OPERATOR = _person("op1", Role.OPERATOR)
QUALITY = _person("qa1", Role.QUALITY)
ENGINEER = _person("pe1", Role.ENGINEER)
TECHNICIAN = _person("tech1", Role.TECHNICIAN)
MOLDER = ToolRegistration("MOLD-1", "molder", "modbus 127.0.0.1:5020", ("MOLD", "FILL"))


class Log:
    """The security log as a list (the seam; the SQL one is tested below)."""

    def __init__(self) -> None:
        self.events: list[SecurityEvent] = []

    async def record(self, event: SecurityEvent) -> None:
        self.events.append(event)


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def lots(store: UnitOfWorkFactory, library: FlowLibrary, clock: Clock, log: Log) -> LotService:
    """A lot service acting for an operator unless a call names another principal."""
    signers = Signers([OPERATOR, QUALITY, ENGINEER, TECHNICIAN])
    return LotService(store, library, clock, principal=OPERATOR, security=log, verifier=signers)


async def _started(lots: LotService, lot_id: str = "L1") -> None:
    await lots.start(cmd.StartLot(lot_id, "fo-organic", "op1"))


async def test_a_refused_rework_names_the_role_changes_nothing_and_is_recorded(
    lots: LotService, log: Log
) -> None:
    await _started(lots)
    await lots.hold(cmd.HoldLot("L1", "op1", "looks wrong"))
    before = await lots.report("L1")
    with pytest.raises(NotAuthorized, match="op1 \\(operator\\) may not rework lot L1") as refused:
        await lots.rework(cmd.ReworkLot("L1", "SUBSTRATE_PREP", "op1", "redo"))
    assert refused.value.allowed == ("engineer",)
    assert await lots.report("L1") == before
    [event] = log.events
    assert (event.kind, event.actor, event.action, event.lot_id) == (
        EventKind.REFUSED,
        "op1",
        "rework",
        "L1",
    )
    assert event.detail["needed"] == ["engineer"]


async def test_a_hold_a_limit_placed_is_released_by_quality_not_by_an_operator(
    lots: LotService, log: Log
) -> None:
    await _started(lots)
    await lots.hold(cmd.HoldLot("L1", "controller", "thickness", HoldSource.LIMIT), by=CONTROLLER)
    with pytest.raises(NotAuthorized, match="release a hold placed by limit") as refused:
        await lots.release(cmd.ReleaseLot("L1", "op1", "fine"))
    assert set(refused.value.allowed) == {"engineer", "quality"}
    assert (await lots.get("L1")).state is LotState.HOLD
    held = await lots.get("L1")
    released = await lots.release(
        cmd.ReleaseLot("L1", "qa1", "measured again"), by=QUALITY, signatures=signed(QUALITY, held)
    )
    assert released.lot.state is LotState.WAITING
    assert [e.action for e in log.events] == ["release_ruled"]


async def test_an_operator_releases_the_hold_an_operator_placed(lots: LotService) -> None:
    await _started(lots)
    held = (await lots.hold(cmd.HoldLot("L1", "op1", "check"))).lot
    released = await lots.release(cmd.ReleaseLot("L1", "op1"), signatures=signed(OPERATOR, held))
    assert released.lot.state is LotState.WAITING


async def test_scrap_needs_quality(lots: LotService) -> None:
    await _started(lots)
    with pytest.raises(NotAuthorized, match="needs the role quality"):
        await lots.scrap(cmd.ScrapLot("L1", "op1", "voids"))
    lot = await lots.get("L1")
    scrapped = await lots.scrap(
        cmd.ScrapLot("L1", "qa1", "voids"), by=QUALITY, signatures=signed(QUALITY, lot)
    )
    assert scrapped.lot.state is LotState.SCRAPPED


async def test_an_admin_alone_may_not_even_start_a_lot(lots: LotService, log: Log) -> None:
    admin = _person("root", Role.ADMIN)
    with pytest.raises(NotAuthorized, match="needs the role engineer or operator"):
        await lots.start(cmd.StartLot("L9", "fo-organic", "root"), by=admin)
    with pytest.raises(NotAuthorized):
        await lots.get("L9", by=_person("nobody"))
    assert [e.actor for e in log.events] == ["root", "nobody"]
    assert await lots.find() == []


async def test_track_in_all_refuses_only_the_lots_the_principal_may_not_move(
    lots: LotService, log: Log
) -> None:
    await _started(lots, "L1")
    await _started(lots, "L2")
    done = await lots.track_in_all(
        [cmd.TrackIn("L1", "SUBSTRATE_PREP", "controller")], by=_person("qa2", Role.QUALITY)
    )
    assert isinstance(done[0], NotAuthorized)
    assert (await lots.get("L1")).state is LotState.WAITING
    moved = await lots.track_in_all(
        [cmd.TrackIn("L1", "SUBSTRATE_PREP", "controller"), cmd.TrackIn("L2", "SUBSTRATE_PREP", "controller")],
        by=CONTROLLER,
    )  # fmt: skip
    assert [m.lot.state for m in moved if not isinstance(m, Exception)] == [
        LotState.RUNNING,
        LotState.RUNNING,
    ]
    assert [(e.actor, e.action) for e in log.events] == [("qa2", "track_in")]


async def test_tools_are_switched_by_technicians_and_reported_by_the_controller(
    store: UnitOfWorkFactory, clock: Clock, log: Log
) -> None:
    equipment = EquipmentService(store, clock, principal=TECHNICIAN, security=log)
    with pytest.raises(NotAuthorized, match="needs the role controller"):
        await equipment.register("line-1", [MOLDER])
    await equipment.register("line-1", [MOLDER], by=CONTROLLER)
    await equipment.report("MOLD-1", ToolSnapshot(connected=True, e10="standby"), by=CONTROLLER)
    with pytest.raises(NotAuthorized, match="switch a tool between automatic and manual"):
        await equipment.set_dispatch("MOLD-1", DispatchMode.MANUAL, "op1", by=OPERATOR)
    switched = await equipment.set_dispatch("MOLD-1", DispatchMode.MANUAL, "tech1", "PM")
    assert switched.dispatch is DispatchMode.MANUAL
    assert [(e.actor, e.action) for e in log.events] == [
        ("tech1", "tool_report"),
        ("op1", "tool_mode"),
    ]


@pytest.fixture(params=["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)])
def engine_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


async def test_a_refusal_is_written_to_the_security_log_of_the_database(
    engine_url: str, library: FlowLibrary, clock: Clock
) -> None:
    engine = create_engine(engine_url)
    try:
        await upgrade(engine)
        lots = LotService(
            SqlUnitOfWorkFactory(engine),
            library,
            clock,
            principal=OPERATOR,
            security=SqlSecurityLog(engine),
        )
        await _started(lots)
        with pytest.raises(NotAuthorized):
            await lots.scrap(cmd.ScrapLot("L1", "op1", "voids"))
        async with SqlIdentityStore(engine).transaction() as tx:
            [event] = await tx.events(10)
        assert (event.kind, event.actor, event.method, event.action, event.lot_id) == (
            EventKind.REFUSED,
            "op1",
            AuthMethod.PASSWORD,
            "scrap",
            "L1",
        )
        assert (await lots.get("L1")).state is LotState.WAITING
    finally:
        await engine.dispose()


async def test_the_history_says_which_principal_acted_and_how_it_was_known(
    lots: LotService,
) -> None:
    await _started(lots)
    held = await lots.hold(
        cmd.HoldLot("L1", "controller", "alarm", HoldSource.ALARM), by=CONTROLLER
    )
    await lots.release(
        cmd.ReleaseLot("L1", "QA:bob", "checked"), by=QUALITY, signatures=signed(QUALITY, held.lot)
    )
    history = (await lots.report("L1")).history
    assert [(e.user, e.by, e.auth) for e in history] == [
        ("op1", "op1", "password"),
        ("controller", "controller", "system"),
        ("QA:bob", "qa1", "password"),
    ]


async def test_a_service_acting_as_another_principal_shares_the_store_and_the_log(
    lots: LotService, log: Log
) -> None:
    await _started(lots)
    quality = lots.acting_as(QUALITY)
    lot = await lots.get("L1")
    scrap = cmd.ScrapLot("L1", "qa1", "voids")
    assert (
        await quality.scrap(scrap, signatures=signed(QUALITY, lot))
    ).lot.state is LotState.SCRAPPED
    with pytest.raises(NotAuthorized):
        await lots.acting_as(TECHNICIAN).start(cmd.StartLot("L2", "fo-organic", "tech1"))
    assert [(e.actor, e.action) for e in log.events] == [("tech1", "start")]
    assert (await lots.get("L1")).state is LotState.SCRAPPED
