"""A stateful property test: hypothesis drives the lot tracker with random operations, valid
and not, and after each one compares it with a simple model of what must hold: refusals change
nothing, every success writes exactly one history entry and one version, the path only grows
by the step tracked out (or is cut back by a rework), rejected sites stay rejected, and the
state always agrees with what the lot carries (running step, hold)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from flows import load_library
from mes.adapters.memory import MemoryUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.errors import LotTrackerError
from mes.domain.model import FINAL_STATES, Lot, LotState
from mes.service import LotService

T = TypeVar("T")
LIBRARY = load_library()
FLOWS = ["stiffener-bga", "fo-organic", "fc-heatsink-muf", "fo-organic-insulating"]
ROWS, COLS, CARRIERS = 2, 3, 2


def _run(coro: Awaitable[T]) -> T:
    async def wrap() -> T:
        return await coro

    return asyncio.run(wrap())


class LotTrackerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.service = LotService(MemoryUnitOfWorkFactory(), LIBRARY)
        self.entries = 0
        self.rejected: set[tuple[str, int, int]] = set()
        self.lot: Lot | None = None

    @initialize(flow=st.sampled_from(FLOWS))
    def start(self, flow: str) -> None:
        params = {"layers": "1"} if flow.startswith("fo-") else {}
        steps = LIBRARY.get(flow).steps
        rows, cols = ROWS, COLS
        if "STIFFENER_ATTACH" in steps:
            rows = int(steps["STIFFENER_ATTACH"].recipe["stiffener_opening_rows"].default or ROWS)
            cols = int(steps["STIFFENER_ATTACH"].recipe["stiffener_opening_cols"].default or COLS)
        _run(self.service.start(cmd.StartLot("L", flow, "u", CARRIERS, rows, cols, params)))
        self.entries = 1
        self.lot = self._get()

    def _get(self) -> Lot:
        return _run(self.service.get("L"))

    def _attempt(self, operation: Awaitable[Any]) -> bool:
        """Run an operation; on refusal check that nothing changed."""
        before = self.lot
        assert before is not None
        try:
            _run(operation)
        except LotTrackerError:
            after = self._get()
            assert after == before, "a refused operation changed the lot"
            return False
        after = self._get()
        assert after.version == before.version + 1
        self.entries += 1
        self.lot = after
        return True

    @property
    def _steps(self) -> list[str]:
        assert self.lot is not None
        return sorted(LIBRARY.get(self.lot.flow).steps)

    @rule(data=st.data())
    def track_in(self, data: st.DataObject) -> None:
        assert self.lot is not None
        before = self.lot
        allowed = self.service.next_steps(before)
        step = data.draw(
            st.sampled_from(sorted(allowed) or self._steps)
            if allowed and data.draw(st.booleans())
            else st.sampled_from(self._steps)
        )
        done = self._attempt(self.service.track_in(cmd.TrackIn("L", step, "u")))
        assert done == (before.state is LotState.WAITING and step in allowed)
        if done:
            assert self.lot.state is LotState.RUNNING and self.lot.step == step

    @rule(
        sites=st.lists(
            st.tuples(st.integers(1, CARRIERS), st.integers(1, ROWS), st.integers(1, COLS)),
            max_size=3,
        )
    )
    def track_out(self, sites: list[tuple[int, int, int]]) -> None:
        before = self.lot
        assert before is not None
        given = tuple(cmd.SiteRejectGiven(str(c), r, k, "DEFECT") for c, r, k in sites)
        named = {(before.carriers[c - 1], r, k) for c, r, k in sites} if before.carriers else set()
        valid = (
            before.state is LotState.RUNNING
            and len(named) == len(sites)
            and not (named & self.rejected)
            and all(r <= before.site_rows and k <= before.site_cols for _, r, k in sites)
        )
        done = self._attempt(self.service.track_out(cmd.TrackOut("L", "u", rejects=given)))
        assert done == valid
        if done:
            assert before.running is not None
            self.rejected |= named
            assert self.lot.path == (*before.path, before.running.step)
            assert self.lot.state in (LotState.WAITING, LotState.HOLD, LotState.COMPLETED)

    @rule(reason=st.sampled_from(["", "inspection"]))
    def hold(self, reason: str) -> None:
        before = self.lot
        assert before is not None
        done = self._attempt(self.service.hold(cmd.HoldLot("L", "u", reason)))
        assert done == (bool(reason) and before.state in (LotState.WAITING, LotState.RUNNING))
        if done:
            assert self.lot.path == before.path, "a hold abandons the running step"

    @rule()
    def release(self) -> None:
        before = self.lot
        assert before is not None
        done = self._attempt(self.service.release(cmd.ReleaseLot("L", "u")))
        assert done == (before.state is LotState.HOLD)

    @rule()
    def abort(self) -> None:
        before = self.lot
        assert before is not None
        done = self._attempt(self.service.abort(cmd.AbortStep("L", "u")))
        assert done == (before.state is LotState.RUNNING)
        if done:
            assert self.lot.state is LotState.WAITING and self.lot.path == before.path

    @rule(data=st.data())
    def rework(self, data: st.DataObject) -> None:
        before = self.lot
        assert before is not None
        step = data.draw(st.sampled_from(self._steps))
        done = self._attempt(self.service.rework(cmd.ReworkLot("L", step, "eng", "redo")))
        if done:
            assert before.state is LotState.HOLD
            index = len(before.path) - 1 - before.path[::-1].index(step)
            assert self.lot.path == before.path[:index]
            assert self.service.next_steps(self.lot) == {step}

    @rule()
    def complete(self) -> None:
        before = self.lot
        assert before is not None
        done = self._attempt(self.service.complete(cmd.CompleteLot("L", "u")))
        if done:
            assert before.state is LotState.WAITING and self.lot.state is LotState.COMPLETED

    @invariant()
    def the_lot_agrees_with_the_model(self) -> None:
        lot = self.lot
        if lot is None:
            return
        assert (lot.state is LotState.RUNNING) == (lot.running is not None)
        assert (lot.state is LotState.HOLD) == (lot.hold is not None)
        assert lot.good_sites == lot.total_sites - len(self.rejected)
        report = _run(self.service.report("L"))
        assert len(report.history) == self.entries
        assert [p.step for p in report.path] == list(lot.path), "history replays to the path"
        if lot.state in FINAL_STATES:
            assert not self.service.next_steps(lot)


LotTrackerMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLotTracker = LotTrackerMachine.TestCase
