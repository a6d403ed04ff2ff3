"""Dispatching a tool while the results of its lot's last job are recorded: it takes the most
urgent waiting lot, unless the lot it is finishing goes on here next and is more urgent."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mes.adapters.memory import MemoryUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.model import Lot, LotHead, LotState, Operation
from mes.service import JobOutcome, LotService
from pkgline.bootstrap import flow_library
from pkgline.controller.dispatch import Candidate, Pool, choose, keeps_tool
from tests.controller.conftest import Stack, line_config, running_controller, simulated, wait_until


@pytest.fixture
def lots() -> LotService:
    return LotService(MemoryUnitOfWorkFactory(), flow_library())


async def _finishing_and_waiting(
    lots: LotService, finishing_priority: int, waiting_priority: int
) -> tuple[Lot, Candidate]:
    """Lot F running its first step on a tool, and lot W waiting for it."""
    await lots.start(cmd.StartLot("F", "stiffener-bga", "planner", priority=finishing_priority))
    await lots.start(cmd.StartLot("W", "stiffener-bga", "planner", priority=waiting_priority))
    await lots.track_in(cmd.TrackIn("F", "SUBSTRATE_LOAD", "op"))
    (head,) = await lots.heads([LotState.WAITING])
    return await lots.get("F"), Candidate(head, "SUBSTRATE_LOAD")


async def test_a_tool_waits_for_its_lot_when_it_goes_on_here_and_is_more_urgent(
    lots: LotService,
) -> None:
    finishing, pick = await _finishing_and_waiting(lots, 1, 5)
    after = lots.next_in_order_after_step(finishing)
    assert after == ("DIE_ATTACH",)
    assert keeps_tool(finishing, after, pick, {"SUBSTRATE_LOAD", "DIE_ATTACH"})


async def test_a_tool_takes_the_waiting_lot_when_its_own_goes_elsewhere_or_is_less_urgent(
    lots: LotService,
) -> None:
    finishing, pick = await _finishing_and_waiting(lots, 1, 5)
    after = lots.next_in_order_after_step(finishing)
    assert not keeps_tool(finishing, after, pick, {"SUBSTRATE_LOAD"}), "goes on elsewhere"
    assert not keeps_tool(finishing, (), pick, {"SUBSTRATE_LOAD"}), "the flow ends"
    other = LotService(MemoryUnitOfWorkFactory(), flow_library())
    finishing, pick = await _finishing_and_waiting(other, 5, 1)
    assert not keeps_tool(finishing, after, pick, {"SUBSTRATE_LOAD", "DIE_ATTACH"})


async def test_the_most_urgent_fitting_lot_is_chosen(lots: LotService) -> None:
    for lot_id, priority in (("A", 5), ("B", 1), ("C", 1)):
        await lots.start(cmd.StartLot(lot_id, "stiffener-bga", "planner", priority=priority))
    heads = await lots.heads([LotState.WAITING])
    candidates = [Candidate(h, "SUBSTRATE_LOAD") for h in heads]
    chosen = choose(candidates, {"SUBSTRATE_LOAD"})
    assert chosen is not None and chosen.lot.id == "B", "priority first, then the oldest"
    assert choose(candidates, {"MOLD"}) is None


@pytest.mark.slow
async def test_a_tool_is_given_its_next_lot_while_its_last_results_are_recorded(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two lots for one die bonder: the second is tracked in on it while the first lot's
    results are still being written (the record of the first is held back until then, and
    would go on after 10 s without it), and both then finish the step in order."""
    config = line_config(tools=["DB-1"])
    record = stack.lots.record_job
    tracked_in_meanwhile: list[bool] = []

    async def record_after_the_next_track_in(c: cmd.RecordJob) -> JobOutcome:
        if not tracked_in_meanwhile:
            try:
                await wait_until(
                    lambda: _running_on("W", "DB-1", stack),
                    timeout_s=10,
                    every_s=0.02,
                    what="W tracked in on DB-1",
                )
                tracked_in_meanwhile.append(True)
            except AssertionError:
                tracked_in_meanwhile.append(False)
        return await record(c)

    monkeypatch.setattr(stack.lots, "record_job", record_after_the_next_track_in)
    async with simulated(config), running_controller(config, stack):
        await _start_f_then_w(stack, "stiffener-bga")
        await wait_until(
            lambda: _after("W", "DIE_ATTACH", stack), timeout_s=60, what="W done at DIE_ATTACH"
        )
    assert tracked_in_meanwhile == [True], "W waited for F's track-out"
    f, w = await stack.lots.report("F"), await stack.lots.report("W")
    assert f.lot.path[-1] == "DIE_ATTACH" and f.lot.state is LotState.WAITING
    f_out = [e for e in f.history if e.step == "DIE_ATTACH" and e.operation is Operation.TRACK_OUT]
    w_in = [e for e in w.history if e.step == "DIE_ATTACH" and e.operation is Operation.TRACK_IN]
    assert len(f_out) == len(w_in) == 1
    assert w_in[0].at < f_out[0].at, "the history shows W tracked in before F was tracked out"


async def _start_f_then_w(stack: Stack, flow: str) -> None:
    """Lot F (priority 1), then lot W (priority 5), one carrier each."""
    for lot_id, priority in (("F", 1), ("W", 5)):
        await stack.lots.start(cmd.StartLot(lot_id, flow, "planner", carriers=1, priority=priority))


async def _running_on(lot_id: str, tool_id: str, stack: Stack) -> bool:
    lot = await stack.lots.get(lot_id)
    return lot.running is not None and lot.running.tool == tool_id


async def _after(lot_id: str, step: str, stack: Stack) -> bool:
    lot = await stack.lots.get(lot_id)
    return step in lot.path


@pytest.mark.slow
async def test_a_tool_keeps_itself_for_its_own_more_urgent_lot_that_goes_on_here(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fc-heatsink-muf runs PASSIVE_ATTACH, TIM_DISPENSE and HEAT_SINK_ATTACH on DB-2. While
    the urgent lot F's PASSIVE_ATTACH results are recorded (held back until lot W waits for
    DB-2 too, and a few dispatch passes have gone by), DB-2 is not given to W: F, more
    urgent, goes on there, and W follows once F has done all three steps."""
    config = line_config(tools=["DB-1", "DB-2"])
    record = stack.lots.record_job
    held_back: list[bool] = []

    async def record_once_w_waits(c: cmd.RecordJob) -> JobOutcome:
        job = await stack.lots.job(c.job_id)
        if not held_back and job is not None and job.step == "PASSIVE_ATTACH":
            await wait_until(
                lambda: _after("W", "FLIP_CHIP_BOND", stack),
                timeout_s=30,
                every_s=0.02,
                what="W waiting for PASSIVE_ATTACH",
            )
            await asyncio.sleep(0.5)  # dispatch passes (every 0.2 s, and on each event)
            held_back.append(True)
        return await record(c)

    monkeypatch.setattr(stack.lots, "record_job", record_once_w_waits)
    async with simulated(config), running_controller(config, stack):
        await _start_f_then_w(stack, "fc-heatsink-muf")
        await wait_until(
            lambda: _after("W", "HEAT_SINK_ATTACH", stack),
            timeout_s=60,
            what="W done at HEAT_SINK_ATTACH",
        )
    assert held_back == [True]
    f, w = await stack.lots.report("F"), await stack.lots.report("W")
    on_db2 = sorted(
        (e.at, e.lot_id, e.step)
        for e in (*f.history, *w.history)
        if e.operation is Operation.TRACK_IN and e.tool == "DB-2"
    )
    assert [(lot, step) for _, lot, step in on_db2] == [
        ("F", "PASSIVE_ATTACH"),
        ("F", "TIM_DISPENSE"),
        ("F", "HEAT_SINK_ATTACH"),
        ("W", "PASSIVE_ATTACH"),
        ("W", "TIM_DISPENSE"),
        ("W", "HEAT_SINK_ATTACH"),
    ]


@pytest.mark.slow
async def test_a_wake_that_brings_nothing_new_does_not_read_the_lots_again(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tool left idle by the last pass, no lot of ours waiting anew: waking the dispatcher
    reads nothing (the full passes, every dispatch_interval_s, pick up what others change).
    A lot of ours that waits anew is read at once."""
    base = line_config(tools=["DB-1"])
    config = base.model_copy(
        update={"controller": base.controller.model_copy(update={"dispatch_interval_s": 60})}
    )
    reads: list[object] = []
    view = stack.lots.dispatch_view

    async def counted(states: Sequence[LotState], line: str) -> Any:
        reads.append(states)
        return await view(states, line)

    monkeypatch.setattr(stack.lots, "dispatch_view", counted)
    async with (
        simulated(config),
        running_controller(config, stack) as controller,
    ):
        await wait_until(
            lambda: controller.runners["DB-1"].is_idle(), timeout_s=10, what="DB-1 idle"
        )
        first = len(reads)
        controller.wake(lot_waits=True)
        await wait_until(lambda: len(reads) > first, timeout_s=10, every_s=0.01, what="a pass")
        await asyncio.sleep(0.2)
        before = len(reads)
        for _ in range(5):
            controller.wake()  # DB-1 is idle and was idle at the last pass; nothing waits
            await asyncio.sleep(0.05)
        controller.wake(lot_waits=True)
        await wait_until(
            lambda: len(reads) > before, timeout_s=10, every_s=0.01, what="the pass it asked for"
        )
        await asyncio.sleep(0.2)
    assert len(reads) == before + 1, "the plain wakes read the lots again"


_STEPS = ("SUBSTRATE_LOAD", "DIE_ATTACH", "WIRE_BOND", "MOLD")


@settings(max_examples=200, deadline=None)
@given(
    lots=st.lists(
        st.tuples(st.integers(1, 9), st.integers(0, 5), st.sampled_from(_STEPS)),
        max_size=30,
    ),
    tools=st.lists(st.sets(st.sampled_from(_STEPS), max_size=3), max_size=20),
    refused=st.sets(st.integers(0, 19), max_size=5),
)
def test_the_pool_picks_as_a_scan_of_every_candidate_would(
    lots: list[tuple[int, int, str]], tools: list[set[str]], refused: set[int]
) -> None:
    """Tools take their picks one after the other, some given back (refused), as a pass does:
    the pool's pick is always the scan's (:func:`choose` over the candidates left)."""
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    candidates = [
        Candidate(_head(f"L{i}", priority, epoch + timedelta(minutes=age)), step)
        for i, (priority, age, step) in enumerate(lots)
    ]
    pool, left = Pool(candidates), list(candidates)
    for rounds in range(2):
        given_back = []
        for k, steps in enumerate(tools):
            pick = pool.best(steps)
            assert pick == choose(left, steps)
            if pick is None:
                continue
            pool.take(pick)
            left.remove(pick)
            if k in refused and rounds == 0:
                given_back.append(pick)
        for pick in given_back:
            pool.add(pick)
            left.append(pick)
        assert len(pool) == len(left)
        assert sorted(c.lot.id for c in pool) == sorted(c.lot.id for c in left)


def _head(lot_id: str, priority: int, created_at: datetime) -> LotHead:
    return LotHead(
        id=lot_id, flow="stiffener-bga", state=LotState.WAITING, priority=priority,
        created_at=created_at, path=(), params={}, pending_rework=None, tool=None,
    )  # fmt: skip
