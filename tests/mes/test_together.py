"""Reads side by side (mes.ports_together): pieces of a transaction's work asked of the store
together get the answers they would get one after the other, decide in the order given (the
first piece's refusal is the one raised), and on PostgreSQL a round of reads is one round
trip: a track-in's interlocks read the tool, its qualifications, durables and material lots
in one statement. The combinator alone first, then every store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, cast

import pytest

from flows import FlowLibrary
from mes.adapters import driver
from mes.adapters.combined import combined_sql
from mes.adapters.driver import Execute, Fetch, FetchAll, IntegrityViolation, Plan
from mes.adapters.sql_plans import side_by_side
from mes.domain import commands as cmd
from mes.domain.equipment import ToolRegistration, ToolSnapshot
from mes.domain.errors import InterlockRefused
from mes.domain.interlocks import Qualification
from mes.domain.model import JobStatus
from mes.durables import DurableService
from mes.equipment import EquipmentService
from mes.materials import MaterialService
from mes.ports import (
    Together,
    UnitOfWorkFactory,
    Work,
    asked_with,
    each_together,
    get_history,
    get_last_track_outs,
    get_lot,
    get_qualifications,
    get_tools,
    nothing,
    save_qualifications,
    served,
    together,
)
from mes.ports_durables import get_durables, get_mounted
from mes.ports_materials import get_materials
from mes.ports_spc import get_charts
from mes.service import LotService
from mes.spc import SpcService
from tests.mes.conftest import Clock

OP = "op1"
WB = ToolRegistration("WB-1", "wire_bonder", "modbus 127.0.0.1:5021", ("WIRE_BOND",))
DB = ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1:5020", ("DIE_ATTACH",))
UP = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")


# -- the combinator alone ----------------------------------------------------------------------


def _asks(*requests: str) -> Work[list[Any]]:
    """A piece that asks ``requests`` one after the other and returns their answers."""
    answers = []
    for r in requests:
        answers.append((yield cast(Any, r)))
    return answers


def _drive(work: Work[Any], answer: Any) -> tuple[list[Any], Any]:
    """Run ``work``, answering each request with ``answer(request)``: what it asked, and what
    it returned."""
    asked: list[Any] = []
    sent: Any = None
    while True:
        try:
            request = work.send(sent)
        except StopIteration as done:
            return asked, done.value
        asked.append(request)
        sent = answer(request)


def _echo(request: Any) -> Any:
    if isinstance(request, Together):
        return tuple(_echo(r) for r in request.requests)
    return f"answer to {request}"


def test_pieces_asked_together_get_their_own_answers_in_rounds() -> None:
    asked, result = _drive(together(_asks("a1", "a2"), _asks("b1"), nothing("c")), _echo)
    # round one: every piece's first request; round two, a round of one: the request itself
    assert asked == [Together(("a1", "b1")), "a2"]
    assert result == (["answer to a1", "answer to a2"], ["answer to b1"], "c")


def test_a_piece_that_asks_nothing_makes_no_round() -> None:
    asked, result = _drive(together(nothing(1), nothing(2)), _echo)
    assert asked == [] and result == (1, 2)


def test_a_together_within_a_together_is_answered_within_it() -> None:
    asked, result = _drive(together(together(_asks("a"), _asks("b")), _asks("c")), _echo)
    assert asked == [Together((Together(("a", "b")), "c"))]
    assert result == ((["answer to a"], ["answer to b"]), ["answer to c"])


def test_reads_asked_with_a_work_go_in_its_first_round() -> None:
    asked, (result, ahead) = _drive(asked_with(_asks("lot", "more"), ["r1", "r2", "r1"]), _echo)
    assert asked == [Together(("lot", Together(("r1", "r2")))), "more"]
    assert result == ["answer to lot", "answer to more"]
    assert ahead == {"r1": "answer to r1", "r2": "answer to r2"}


def test_a_work_served_gets_its_first_rounds_reads_from_those_asked_ahead_once() -> None:
    ahead = {"r1": "ahead r1", "r2": "ahead r2", "unused": "ahead"}
    work = together(_asks("r1", "r2"), together(_asks("r2"), _asks("x", "r1")))
    asked, result = _drive(served(work, ahead), _echo)
    # round one: r1, r2 answered from ahead, x asked (a round of one: itself); round two
    # asked of the store, r2 and r1 too (an answer read ahead is given once, in round one)
    assert asked == ["x", Together(("r2", "r1"))]
    assert result == (
        ["ahead r1", "answer to r2"],
        (["ahead r2"], ["answer to x", "answer to r1"]),
    )


def test_a_work_whose_first_round_is_all_served_asks_nothing_for_it() -> None:
    asked, result = _drive(served(together(_asks("r1"), _asks("r2")), {"r1": 1, "r2": 2}), _echo)
    assert asked == [] and result == ([1], [2])
    asked, result = _drive(served(_asks("r1", "r1"), {"r1": 1}), _echo)
    assert asked == ["r1"] and result == [1, "answer to r1"]


class Refused(Exception):
    pass


def _refuses(name: str, log: list[str]) -> Work[None]:
    try:
        yield cast(Any, name)
        log.append(f"{name} decided")
        raise Refused(name)
    finally:
        log.append(f"{name} closed")


def test_the_pieces_decide_in_the_order_given_and_the_first_refusal_ends_them_all() -> None:
    log: list[str] = []
    with pytest.raises(Refused) as refused:
        _drive(together(_refuses("first", log), _refuses("second", log)), _echo)
    assert str(refused.value) == "first"
    assert log == ["first decided", "first closed", "second closed"]  # second never decided


# -- a round of statements --------------------------------------------------------------------


def _statement(name: str) -> Any:
    return cast(Any, name)  # the plans below never reach a driver


def _reads(*names: str) -> Plan[list[Any]]:
    got = []
    for n in names:
        got.append((yield Fetch(_statement(n), {})))
    return got


def _writes(name: str) -> Plan[str]:
    try:
        yield Execute(_statement(name), {})
    except IntegrityViolation as exc:
        return f"{name} refused: {exc}"
    return f"{name} written"


def _run_side_by_side(plans: list[Plan[Any]], fail: str | None = None) -> tuple[list[Any], Any]:
    """Drive side_by_side as a driver would; a write of statement ``fail`` violates a
    constraint."""
    plan = side_by_side(plans)
    steps: list[Any] = []
    result: Any = None
    failure: IntegrityViolation | None = None
    while True:
        try:
            step = plan.send(result) if failure is None else plan.throw(failure)
        except StopIteration as done:
            return steps, done.value
        steps.append(step)
        result, failure = None, None
        if isinstance(step, FetchAll):
            result = [f"rows of {f.statement}" for f in step.fetches]
        elif isinstance(step, Fetch):
            result = f"rows of {step.statement}"
        elif isinstance(step, Execute) and step.statement == fail:
            failure = IntegrityViolation("duplicate key")


def test_a_round_of_reads_is_one_fetch_of_them_all() -> None:
    steps, results = _run_side_by_side([_reads("a1", "a2"), _reads("b1"), _reads()])
    assert [type(s).__name__ for s in steps] == ["FetchAll", "Fetch"]
    assert [f.statement for f in steps[0].fetches] == ["a1", "b1"]
    assert results == [["rows of a1", "rows of a2"], ["rows of b1"], []]


def test_a_round_with_a_write_runs_its_statements_one_at_a_time_in_order() -> None:
    steps, results = _run_side_by_side([_reads("a"), _writes("w"), _reads("b")], fail="w")
    assert [s.statement for s in steps] == ["a", "w", "b"]
    assert results == [["rows of a"], "w refused: duplicate key", ["rows of b"]]


def test_parameters_are_numbered_on_from_one_statement_to_the_next() -> None:
    sql = combined_sql(("SELECT a FROM t WHERE x = $1 AND y = $2", "SELECT $1, $1"), (2, 1))
    assert sql == (
        "SELECT ARRAY(SELECT q FROM (SELECT a FROM t WHERE x = $1 AND y = $2) AS q) AS r0, "
        "ARRAY(SELECT q FROM (SELECT $3, $3) AS q) AS r1"
    )


# -- every store --------------------------------------------------------------------------------


async def _line(store: UnitOfWorkFactory, clock: Clock, library: FlowLibrary) -> LotService:
    """WB-1 and DB-1 up, a capillary and a spool of wire on WB-1; lot L1 (stiffener-bga, two
    carriers) waiting at WIRE_BOND, one site rejected at DIE_ATTACH on DB-1."""
    equipment = EquipmentService(store, clock)
    await equipment.register("line-a", [WB, DB])
    for tool in (WB, DB):
        await equipment.report(tool.id, UP)
    durables = DurableService(store, clock)
    await durables.add("CAP-1", "capillary", 1_000_000, "eng")
    await durables.mount("CAP-1", "WB-1", "tech")
    materials = MaterialService(store, clock)
    await materials.add("WIRE-1", "wire", clock.now + timedelta(days=30), "eng")
    await materials.load("WIRE-1", "WB-1", "tech")
    service = LotService(store, library, clock)
    await service.start(cmd.StartLot("L1", "stiffener-bga", OP, carriers=2))
    await service.track_in(cmd.TrackIn("L1", "SUBSTRATE_LOAD", OP))
    await service.track_out(cmd.TrackOut("L1", OP))
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", OP, tool="DB-1", dispatched=True))
    reject = cmd.SiteRejectGiven("1", 1, 1, "PICK_FAIL")
    await service.track_out(cmd.TrackOut("L1", OP, rejects=(reject,), dispatched=True))
    return service


def _reads_of_a_track_in() -> Iterator[Work[Any]]:
    yield get_tools(["WB-1", "DB-1", "NOSUCH"])
    yield get_qualifications(step="WIRE_BOND")
    yield get_mounted("WB-1")
    yield get_materials(tool_id="WB-1")
    yield get_last_track_outs("L1", ["SUBSTRATE_LOAD", "DIE_ATTACH"])
    yield get_history("L1")
    yield get_lot("L1")


async def test_reads_together_answer_as_they_do_one_after_the_other(
    store: UnitOfWorkFactory, clock: Clock, library: FlowLibrary
) -> None:
    await _line(store, clock, library)

    def one_by_one() -> Work[list[Any]]:
        found = []
        for work in _reads_of_a_track_in():
            found.append((yield from work))
        return found

    def side_by_side_() -> Work[tuple[Any, ...]]:
        a, b, c, d, e = list(_reads_of_a_track_in())[:5]
        first = yield from together(a, b, together(c, d), e)
        f, g = list(_reads_of_a_track_in())[5:]
        history, lot = yield from together(f, g)
        return (*first[:2], *first[2], first[3], history, lot)

    async with store(readonly=True) as uow:
        expected = await uow.run(one_by_one())
    async with store(readonly=True) as uow:
        found = await uow.run(side_by_side_())
    assert list(found) == expected
    tools, qualified, mounted, loaded, since, history, lot = expected
    # the answers are real ones: typed values (times, JSON), in their statements' order
    assert set(tools) == {"WB-1", "DB-1"} and [q.tool_id for q in qualified] == ["WB-1"]
    assert [d.id for d in mounted.durables] == ["CAP-1"] and [m.id for m in loaded] == ["WIRE-1"]
    assert set(since) == {"SUBSTRATE_LOAD", "DIE_ATTACH"} and since["DIE_ATTACH"].tzinfo is not None
    assert [e.seq for e in history] == sorted(e.seq for e in history) and len(history) == 5
    assert lot is not None and lot.id == "L1" and lot.params == expected[6].params


async def test_reads_by_the_tool_a_lot_runs_on_are_of_its_tool_and_step_as_recorded(
    store: UnitOfWorkFactory, clock: Clock, library: FlowLibrary
) -> None:
    """What a track-out reads with its lot (its tool's durables, the charts of its step on
    its tool) follows the lot's record: nothing once it runs no more, nothing of a tool it
    does not run on."""
    service = await _line(store, clock, library)
    spc = SpcService(store, library, clock)
    await spc.configure("WIRE_BOND", "wire_pull_g", "WB-1", "eng", center=8.0, sigma=1.0)
    await spc.configure(
        "DIE_ATTACH", "bond_line_thickness_um", "DB-1", "eng", center=25.0, sigma=1.0
    )

    def of_l1() -> Work[tuple[list[str], list[tuple[str, str]]]]:
        durables, charts = yield from together(
            get_durables(running_lot="L1"), get_charts(None, running_lot="L1")
        )
        return [d.id for d in durables], [(c.step, c.tool_id) for c in charts]

    assert await _read(store, of_l1()) == ([], [])  # waiting
    await service.track_in(cmd.TrackIn("L1", "WIRE_BOND", OP, tool="WB-1", dispatched=True))
    assert await _read(store, of_l1()) == (["CAP-1"], [("WIRE_BOND", "WB-1")])
    await service.track_out(cmd.TrackOut("L1", OP, measured={"wire_pull_g": 8.1}, dispatched=True))
    assert await _read(store, of_l1()) == ([], [])
    [chart] = await spc.show("WIRE_BOND", "wire_pull_g", tool_id="WB-1")
    assert [p.x for p in chart.points] == [8.1]  # the track-out charted it


async def test_more_reads_together_than_one_statement_may_hold_are_answered_all(
    store: UnitOfWorkFactory, clock: Clock, library: FlowLibrary
) -> None:
    """PostgreSQL takes at most 1,664 columns in a select list: 1,700 reads side by side (a
    dispatch pass over hundreds of tools reads four or five a lot) go as several statements
    (mes.adapters.combined.MAX_COMBINED each), answered as one after the other."""
    await _line(store, clock, library)
    many = 1_700
    found = await _read(
        store,
        each_together(
            get_lot("L1") if i % 2 else get_qualifications(tool_id="WB-1") for i in range(many)
        ),
    )
    lot = await _read(store, get_lot("L1"))
    qualified = await _read(store, get_qualifications(tool_id="WB-1"))
    assert len(found) == many and lot is not None and qualified
    assert all(x == (lot if i % 2 else qualified) for i, x in enumerate(found))


async def test_a_write_together_with_reads_is_written_in_the_same_transaction(
    store: UnitOfWorkFactory, clock: Clock, library: FlowLibrary
) -> None:
    await _line(store, clock, library)
    before = await _read(store, get_qualifications(tool_id="WB-1"))
    changed = [Qualification(q.tool_id, q.step, False, "eng", clock(), "drift") for q in before]
    async with store() as uow:
        tools, _ = await uow.run(
            together(get_tools(["WB-1"]), save_qualifications(changed)), commit=True
        )
    assert set(tools) == {"WB-1"}
    after = await _read(store, get_qualifications(tool_id="WB-1"))
    assert [q.qualified for q in after] == [False] * len(before)


async def _read(store: UnitOfWorkFactory, work: Work[Any]) -> Any:
    async with store(readonly=True) as uow:
        return await uow.run(work)


async def test_a_refused_track_in_still_says_the_first_interlock_that_refuses(
    store: UnitOfWorkFactory, clock: Clock, library: FlowLibrary
) -> None:
    """The tool is not qualified and its capillary is spent: the tool's refusal is raised,
    as it was when the interlocks read one after the other."""
    service = await _line(store, clock, library)
    durables = DurableService(store, clock)
    await durables.unmount("CAP-1", "tech")
    await durables.add("CAP-2", "capillary", 1, "eng")
    await durables.mount("CAP-2", "WB-1", "tech")
    async with store() as uow:
        await uow.run(durables_spent("CAP-2"), commit=True)
    with pytest.raises(InterlockRefused) as spent:
        await service.track_in(cmd.TrackIn("L1", "WIRE_BOND", OP, tool="WB-1", dispatched=True))
    assert spent.value.interlock == "durable_life"
    qualified = await _read(store, get_qualifications(tool_id="WB-1"))
    off = [Qualification(q.tool_id, q.step, False, "eng", clock(), "drift") for q in qualified]
    async with store() as uow:
        await uow.run(save_qualifications(off), commit=True)
    with pytest.raises(InterlockRefused) as refused:
        await service.track_in(cmd.TrackIn("L1", "WIRE_BOND", OP, tool="WB-1", dispatched=True))
    assert refused.value.interlock != "durable_life"  # the tool's, decided first


def durables_spent(durable_id: str) -> Work[None]:
    from mes.domain import durables as rules
    from mes.ports_durables import get_durables, save_durables

    (durable,) = yield from get_durables([durable_id])
    used = rules.use(
        [durable],
        lot_id="L0",
        step="WIRE_BOND",
        job_id=None,
        rows=1,
        cols=1,
        processed_sites=1,
        by="tech",
        now=durable.added_at,
    )
    yield from save_durables(list(used))


ON_POSTGRES = pytest.mark.parametrize(
    "store", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
"""The statements counted are PostgreSQL's: the store fixture (tests/mes/conftest.py) on it
alone."""


def _counted(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """From now on, the statements the PostgreSQL sessions send, by the session's method."""
    sent: Counter[str] = Counter()
    session = driver.AsyncpgSession
    for name in ("fetch_raw", "fetch_all", "execute", "execute_many"):
        monkeypatch.setattr(session, name, _counting(getattr(session, name), name, sent))
    return sent


def _counting(method: Any, name: str, sent: Counter[str]) -> Any:
    async def counted(self: Any, *args: Any) -> Any:
        sent[name] += 1
        return await method(self, *args)

    return counted


@ON_POSTGRES
async def test_on_postgresql_a_track_in_reads_its_lot_and_interlocks_in_one_round_trip(
    store: UnitOfWorkFactory, clock: Clock, library: FlowLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = await _line(store, clock, library)
    sent = _counted(monkeypatch)
    await service.track_in(cmd.TrackIn("L1", "WIRE_BOND", OP, tool="WB-1", dispatched=True))
    # one statement for the lot with the tool, its qualifications, durables and material
    # lots (asked with the lot: the command names them); the move; the material lot's row
    # locked while it is not quarantined (a quarantine cannot race the track-in); the uses
    # recorded
    assert sent == Counter({"fetch_raw": 1, "fetch_all": 1, "execute": 1, "execute_many": 1})
    sent.clear()
    await service.track_out(cmd.TrackOut("L1", OP, dispatched=True))
    # the lot with the durables and SPC charts of the tool and step it runs; then its
    # rejects and jobs (a durable is mounted: it counts); the move; the durable's count
    assert sent["fetch_all"] == 2 and sent["fetch_raw"] == 1


@ON_POSTGRES
async def test_on_postgresql_a_track_out_reads_the_points_of_all_its_charts_in_one_statement(
    store: UnitOfWorkFactory, clock: Clock, library: FlowLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three values of the step charted on the tool: their recent points are read side by
    side (was a statement per chart), and each chart gets its own point."""
    service = await _line(store, clock, library)
    spc = SpcService(store, library, clock)
    values = {"ball_shear_g": 20.0, "wire_pull_g": 8.0, "loop_height_um": 150.0}
    for value, center in values.items():
        await spc.configure("WIRE_BOND", value, "WB-1", "eng", center=center, sigma=1.0)
    await service.track_in(cmd.TrackIn("L1", "WIRE_BOND", OP, tool="WB-1", dispatched=True))
    sent = _counted(monkeypatch)
    await service.track_out(cmd.TrackOut("L1", OP, measured=values, dispatched=True))
    # three reads in all: the lot with its durables and charts, its
    # rejects and jobs, and the three charts' points in one (was one statement each)
    assert sent["fetch_all"] + sent["fetch_raw"] == 3, sent
    for value in values:
        (view,) = await spc.show("WIRE_BOND", value, tool_id="WB-1")
        assert [(p.lot_id, p.x) for p in view.points] == [("L1", values[value])]


@ON_POSTGRES
async def test_on_postgresql_a_dispatch_pass_reads_in_two_statements_for_two_lots_or_five(
    store: UnitOfWorkFactory, clock: Clock, library: FlowLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """track_in_all reads its lots, their interlocks and their step views side by side: its
    reads are the same two statements for two lots or five; each lot's move is its own."""
    service = LotService(store, library, clock)
    names = [f"P{i}" for i in range(7)]
    for lot in names:
        await service.start(cmd.StartLot(lot, "stiffener-bga", OP))
    sent = _counted(monkeypatch)
    for group in (names[:2], names[2:]):
        sent.clear()
        found = await service.track_in_all(
            [cmd.TrackIn(lot, "SUBSTRATE_LOAD", OP, dispatched=True) for lot in group]
        )
        assert [r.lot.state.value for r in found] == ["RUNNING"] * len(group)  # type: ignore[union-attr]
        # the lots; their step views; and each lot's one-statement move
        assert sent == Counter({"fetch_all": 2, "fetch_raw": len(group)})


@ON_POSTGRES
async def test_on_postgresql_a_jobs_start_and_record_read_side_by_side(
    store: UnitOfWorkFactory, clock: Clock, library: FlowLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The line controller's step: a job started reads the step's jobs and the job id in one
    statement, a job recorded its step's jobs and the lot's rejects in one."""
    service = await _line(store, clock, library)
    await service.track_in(cmd.TrackIn("L1", "WIRE_BOND", OP, tool="WB-1", dispatched=True))
    sent = _counted(monkeypatch)
    await service.start_job(cmd.StartJob("L1", "J1", "WB-1", "1", OP))
    # the lot; the step's jobs and the job id together; the job written, the lot's move
    assert sent == Counter({"fetch_raw": 2, "fetch_all": 1, "execute": 1})
    sent.clear()
    done = await service.record_job(cmd.RecordJob("J1", OP))
    assert done.job.status is JobStatus.RECORDED
    # the job with its lot; the step's jobs and the lot's rejects together; then the
    # writes: the job and the lot, the capillary's count and event
    assert sent["fetch_all"] == 1
    assert sent == Counter({"fetch_raw": 4, "fetch_all": 1, "execute_many": 3})


@ON_POSTGRES
async def test_on_postgresql_the_controllers_look_at_queue_times_reads_in_two_statements(
    store: UnitOfWorkFactory, clock: Clock, library: FlowLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every waiting lot under a queue-time limit has its last track-outs read side by side
    (was a statement a lot, every heartbeat of every controller)."""
    from tests.mes.test_queue_times import _coated

    service = LotService(store, library, clock)
    for lot in ("Q1", "Q2", "Q3"):
        await _coated(service, lot)
    sent = _counted(monkeypatch)
    assert await service.hold_expired_queue_times("ctl") == []
    assert sent == Counter({"fetch_raw": 1, "fetch_all": 1})  # the heads; the track-outs
    clock.now += timedelta(minutes=241)
    held = await service.hold_expired_queue_times("ctl")
    assert sorted(h.lot.id for h in held) == ["Q1", "Q2", "Q3"]


@ON_POSTGRES
async def test_on_postgresql_a_recall_reads_the_lots_histories_side_by_side(
    store: UnitOfWorkFactory, clock: Clock, library: FlowLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """material where-used walks the lots a step at a time, each step's histories read in
    one statement (was a round trip per lot), then reads where the lots reached are now in
    one more."""
    service = await _line(store, clock, library)
    for lot in ("L2", "L3"):
        await service.start(cmd.StartLot(lot, "stiffener-bga", OP))
        for step in ("SUBSTRATE_LOAD", "DIE_ATTACH"):
            await service.track_in(cmd.TrackIn(lot, step, OP))
            await service.track_out(cmd.TrackOut(lot, OP))
    for lot in ("L1", "L2", "L3"):  # each takes wire from WIRE-1
        await service.track_in(cmd.TrackIn(lot, "WIRE_BOND", OP, tool="WB-1", dispatched=True))
    sent = _counted(monkeypatch)
    reached = await MaterialService(store, clock).where_used("WIRE-1")
    assert sorted(r.lot_id for r in reached) == ["L1", "L2", "L3"]
    # the material lot; its uses; the three lots' histories in one; the three lots in one
    assert sent == Counter({"fetch_raw": 2, "fetch_all": 2})
