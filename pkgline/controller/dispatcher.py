"""The line controller's dispatching: which waiting lot goes on which idle tool, and the
manual steps completed when configured to (:class:`Dispatcher`). What to pick is
:mod:`pkgline.controller.dispatch` (pure); this is the passes that read the lots, track the
picks in and hand each to its tool's runner, with what they keep from one pass to the next
(each lot's next step, the tools left idle, the refused track-ins: logged once, and kept for
the heartbeat to record, :meth:`Dispatcher.refusals`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

import structlog

from mes.adapters.driver import DatabaseUnavailable
from mes.domain import commands as cmd
from mes.domain.equipment import DispatchMode, TrackInRefusal
from mes.domain.errors import ConcurrentUpdate, InterlockRefused, LotTrackerError
from mes.domain.model import LotHead, LotState
from mes.service import LotService, Outcome, TrackedIn, utc_now
from pkgline.config import ControllerConfig
from pkgline.controller.dispatch import Candidate, Pool, keeps_tool, next_step_of
from pkgline.controller.outage import DatabaseOutage
from pkgline.controller.runner import ToolRunner

log = structlog.get_logger("pkgline.controller")

MANUAL = "manual"
REFUSALS_KEPT = 10_000
"""(tool, lot) pairs whose last refused track-in is remembered (to log each refusal once):
past that, the memory starts again (a refusal may then be logged once more)."""
REFUSALS_RECORDED = 200
"""The most recent refusals the heartbeat records (:meth:`Dispatcher.refusals`); a pass is
refused at most once a tool, so a line has far fewer."""


class Dispatcher:
    """The dispatch passes of one line controller over its tools' ``runners``, moving lots
    through ``lots`` as ``user``. The controller decides when a pass runs
    (:meth:`dispatch_once`), and runs :meth:`manual_loop` when manual steps are completed
    automatically."""

    def __init__(
        self,
        name: str,
        config: ControllerConfig,
        lots: LotService,
        runners: Mapping[str, ToolRunner],
        user: str,
        wake: Callable[[], None],
        outage: DatabaseOutage,
    ) -> None:
        """``name``: the controller's; ``wake``: have the controller run a pass soon;
        ``outage``: told when the manual steps' loop finds the database unavailable."""
        self._name = name
        self._outage = outage
        self._config = config
        self._lots = lots
        self._library = lots.flows
        self._runners = runners
        self._user = user
        self._wake = wake
        self.counts = (0, 0)
        """(lots running on our tools, lots waiting) as the last pass found them."""
        self._manual_wake = asyncio.Event()
        self._lots_moved = True
        """A lot this controller moved waits at a step since the last pass began."""
        self._unserved: frozenset[str] = frozenset()
        """The tools the last pass left idle: no waiting lot it read fits them."""
        self._next: dict[str, tuple[LotHead, Candidate | None]] = {}
        """Each waiting lot's head as last read, and the step it goes to next."""
        self._refused: dict[tuple[str, str], TrackInRefusal] = {}
        """Each (tool, lot)'s last refused track-in: logged once, not on every pass, and
        recorded with the heartbeat while the lot waits for that step."""
        self._by_hand: frozenset[str] = frozenset()
        """Our tools running a lot an operator tracked in by hand, as the last full pass read
        them: the lot is the operator's to track out, and no other starts there meanwhile,
        even once the tool is switched back to auto."""
        self._held: frozenset[str] = frozenset()
        """The tools the passes between full ones start no lot on: those running a lot by hand
        at the last full pass and those found in manual since (only a full pass reads the
        running lots, and a lot may have been tracked in by hand there meanwhile)."""

    def lot_waits(self) -> None:
        """A lot this controller moved waits at a step: the next pass reads the lots (and
        the controller is woken for it)."""
        self._lots_moved = True
        self._wake()

    async def dispatch_once(self, *, full: bool = True) -> None:
        """Start waiting lots on idle tools and complete manual steps when configured to; a
        full pass also follows lots running on our tools that this controller does not run
        yet (left running by a controller that stopped), and leaves those an operator tracked
        in by hand (on the tool in manual) to the operator."""
        idle = frozenset(t for t, r in self._runners.items() if r.is_idle())
        if not full and not self._lots_moved and idle <= self._unserved:
            # Nothing new since the last pass: no lot of ours waits anew, no tool is newly
            # idle. What others change (operators) is for the full passes.
            return
        self._lots_moved = False
        try:
            await self._pass(full, idle)
        except BaseException:
            self._lots_moved = True  # the next pass reads again
            raise

    async def _pass(self, full: bool, idle: frozenset[str]) -> None:
        states = [LotState.WAITING, LotState.RUNNING] if full else [LotState.WAITING]
        dispatching = self._config.dispatch and bool(idle)
        if dispatching:  # the tools' dispatch modes are read with the lots, not after them
            lots, modes = await self._lots.dispatch_view(states, self._name)
        else:
            lots, modes = await self._lots.heads(states), {}
        manual = frozenset(t for t, mode in modes.items() if mode is not DispatchMode.AUTO)
        if full:
            by_hand: set[str] = set()
            for lot in lots:
                runner = (
                    self._runners.get(lot.tool or "") if lot.state is LotState.RUNNING else None
                )
                if runner is None:
                    continue
                if lot.by_hand:
                    by_hand.add(runner.tool_id)
                elif not runner.is_working_on(lot.id):
                    runner.assign(lot.id)
            self._by_hand = frozenset(by_hand)
            self._held = self._by_hand | (manual if dispatching else self._held)
        else:
            self._held |= manual
        found = self._candidates(lots)
        self._forget_refusals_of_lots_gone(found)
        candidates = Pool(found)
        working = sum(1 for r in self._runners.values() if r.current_lot is not None)
        self.counts = (working, len(candidates))
        self._unserved = (
            await self._start_on_idle_tools(
                candidates, modes, self._by_hand if full else self._held
            )
            if dispatching
            else idle
        )
        if self._config.auto_manual_steps and (
            any(self._is_manual(c.step) for c in candidates)
            or any(lot.state is LotState.RUNNING and lot.tool is None for lot in lots)
        ):
            self._manual_wake.set()

    async def _start_on_idle_tools(
        self, pool: Pool, modes: Mapping[str, DispatchMode], held: frozenset[str]
    ) -> frozenset[str]:
        """Track the most urgent fitting lot in on each idle tool in auto (``modes``: the
        tools' dispatch modes, read with the lots, so an operator's switch to manual counts)
        but those ``held`` (running a lot tracked in by hand, or maybe: :attr:`_held`):
        all of them in one transaction (on SQLite, one wait for the writer, not one per
        tool). A tool whose track-in an interlock refused (a spent durable, a frozen
        compound, ...) takes no lot in this pass, and the lot it was offered goes to the
        other idle tools that run its step, in another round: a tool that refuses every
        lot does not keep the most urgent one from a tool that would run it. The lots
        started leave ``pool``. The idle tools left without a lot."""
        refusing: set[str] = set()
        offered: set[str] = set()
        while True:
            picks: list[tuple[Candidate, ToolRunner]] = []
            for tool_id, runner in sorted(self._runners.items()):
                if not runner.is_idle() or tool_id in refusing:
                    continue
                offered.add(tool_id)
                pick = pool.best(runner.steps)
                if (
                    modes.get(tool_id) is not DispatchMode.AUTO
                    or tool_id in held
                    or pick is None
                    or self._waits_for_its_lot(runner, pick)
                ):
                    continue
                pool.take(pick)
                picks.append((pick, runner))
            refused = await self._track_in(picks) if picks else []
            if not refused:
                break
            for pick, runner in refused:
                refusing.add(runner.tool_id)
                pool.add(pick)  # for another tool, in the next round
        return frozenset(t for t in offered if self._runners[t].is_idle())

    async def _track_in(
        self, picks: list[tuple[Candidate, ToolRunner]]
    ) -> list[tuple[Candidate, ToolRunner]]:
        """Each pick on its tool, in one transaction when none of the lots moved meanwhile;
        the picks an interlock refused."""
        refused: list[tuple[Candidate, ToolRunner]] = []
        try:
            results = await self._lots.track_in_all(
                [
                    cmd.TrackIn(
                        pick.lot.id, pick.step, self._user, tool=runner.tool_id, dispatched=True
                    )
                    for pick, runner in picks
                ]
            )
        except ConcurrentUpdate:  # one of them moved meanwhile: the others one by one
            for pick, runner in picks:
                if isinstance(await self._start(pick, runner), InterlockRefused):
                    refused.append((pick, runner))
            return refused
        for (pick, runner), result in zip(picks, results, strict=True):
            self._started(pick, runner, result)
            if isinstance(result, InterlockRefused):
                refused.append((pick, runner))
        return refused

    def _waits_for_its_lot(self, runner: ToolRunner, pick: Candidate) -> bool:
        """The lot the tool is finishing goes on there once tracked out, and before ``pick``
        (:func:`keeps_tool`): it is dispatched then."""
        finishing = runner.finishing
        return finishing is not None and keeps_tool(
            finishing, self._lots.next_in_order_after_step(finishing), pick, runner.steps
        )

    async def _start(self, pick: Candidate, runner: ToolRunner) -> Outcome | LotTrackerError:
        try:
            outcome: Outcome | LotTrackerError = await self._lots.track_in(
                cmd.TrackIn(
                    pick.lot.id, pick.step, self._user, tool=runner.tool_id, dispatched=True
                )
            )
        except LotTrackerError as exc:
            outcome = exc
        self._started(pick, runner, outcome)
        return outcome

    def refusals(self) -> tuple[TrackInRefusal, ...]:
        """The refused track-ins of the lots still waiting for the step refused (the latest
        per tool and lot, at most :data:`REFUSALS_RECORDED`, the newest), by tool and lot:
        what the heartbeat records for ``line status``."""
        newest = sorted(self._refused.values(), key=lambda r: r.since)[-REFUSALS_RECORDED:]
        return tuple(sorted(newest, key=lambda r: (r.tool, r.lot)))

    def _forget_refusals_of_lots_gone(self, waiting: Sequence[Candidate]) -> None:
        """A lot that no longer waits for the step it was refused (tracked in elsewhere or by
        hand, held, moved on) is not kept off a tool by that refusal any more."""
        steps = {c.lot.id: c.step for c in waiting}
        for key, refusal in list(self._refused.items()):
            if steps.get(refusal.lot) != refusal.step:
                del self._refused[key]

    def _started(
        self, pick: Candidate, runner: ToolRunner, outcome: Outcome | LotTrackerError
    ) -> None:
        key = (runner.tool_id, pick.lot.id)
        if isinstance(outcome, LotTrackerError):
            last = self._refused.get(key)
            if last is None or (last.step, last.reason) != (pick.step, outcome.message):
                # said on the edge, as it changes; the same refusal again keeps its time, and
                # so does the same interlock's in other words (a durable's count gone on)
                interlock = (
                    outcome.interlock if isinstance(outcome, InterlockRefused) else outcome.kind
                )
                same = last is not None and (last.step, last.interlock) == (pick.step, interlock)
                if len(self._refused) >= REFUSALS_KEPT:
                    self._refused.clear()
                self._refused[key] = TrackInRefusal(
                    tool=runner.tool_id,
                    lot=pick.lot.id,
                    step=pick.step,
                    interlock=interlock,
                    reason=outcome.message,
                    since=last.since if same and last is not None else utc_now(),
                )
                log.info(
                    "lot not started",
                    lot=pick.lot.id,
                    step=pick.step,
                    tool_id=runner.tool_id,
                    reason=outcome.message,
                )
            return
        for refused in [k for k in self._refused if k[1] == pick.lot.id]:
            del self._refused[refused]  # tracked in: no tool keeps it off any more
        if outcome.lot.state is not LotState.RUNNING:  # held at track-in (a queue time)
            hold = outcome.lot.hold
            log.warning(
                "lot held at track-in",
                lot=pick.lot.id,
                step=pick.step,
                reason=hold.reason if hold else None,
            )
            return
        log.info("lot dispatched", lot=pick.lot.id, step=pick.step, tool_id=runner.tool_id)
        runner.assign(pick.lot.id, outcome.view if isinstance(outcome, TrackedIn) else None)

    def _candidates(self, lots: Sequence[LotHead]) -> list[Candidate]:
        """Each waiting lot with the step it goes to next. The store gives the same head
        object for a lot it has not changed since the last read: its step is then the one
        found last time, not worked out from its flow again."""
        known, self._next = self._next, {}
        found: list[Candidate] = []
        for lot in lots:
            if lot.state is not LotState.WAITING:
                continue
            last = known.get(lot.id)
            if last is not None and last[0] is lot:
                candidate = last[1]
            else:
                candidate = next_step_of(lot, self._lots.next_in_order(lot))
            self._next[lot.id] = (lot, candidate)
            if candidate is not None:
                found.append(candidate)
        return found

    def _is_manual(self, step: str) -> bool:
        info = self._library.step_codes.get(step)
        return info is not None and info.equipment_class == MANUAL

    async def manual_loop(self) -> None:
        """Complete the manual steps lots wait at (``auto_manual_steps``), woken by the
        dispatch passes that find some. Apart from dispatching: each one completed costs two
        transactions, and a batch of new lots must not keep an idle tool waiting."""
        while True:
            await self._manual_wake.wait()
            self._manual_wake.clear()
            try:
                heads = await self._lots.heads([LotState.WAITING, LotState.RUNNING])
                # A manual step tracked in whose track-out failed (the database went away in
                # between, or it answered the COMMIT too late to say so): finish it first.
                await self._track_out_manual(
                    [h for h in heads if h.state is LotState.RUNNING and h.tool is None]
                )
                waiting = self._candidates(heads)
                await self._complete_manual_steps([c for c in waiting if self._is_manual(c.step)])
            except DatabaseUnavailable as exc:
                self._outage.failed("manual steps", exc)

    async def _track_out_manual(self, lots: list[LotHead]) -> None:
        """Track out the lots running a manual step on no tool (one of ours, whose track-out
        failed). A tool's step tracked in on no tool (an operator's or a script's, off the
        line's tools: docs/interlocks.md) is theirs to track out, with its measured values."""
        for lot in lots:
            try:
                running = (await self._lots.get(lot.id)).running
                if running is None or running.tool is not None or not self._is_manual(running.step):
                    continue
                await self._lots.track_out(cmd.TrackOut(lot.id, self._user, step=running.step))
            except LotTrackerError as exc:  # not a manual step of ours: asked every pass
                log.debug("running lot not tracked out", lot=lot.id, reason=exc.message)
                continue
            log.info("manual step completed", lot=lot.id)
            self.lot_waits()

    async def _complete_manual_steps(self, candidates: list[Candidate]) -> None:
        for candidate in candidates:
            lot = candidate.lot
            try:
                await self._lots.track_in(cmd.TrackIn(lot.id, candidate.step, self._user))
                await self._lots.track_out(cmd.TrackOut(lot.id, self._user, step=candidate.step))
            except LotTrackerError as exc:
                log.info(
                    "manual step not completed", lot=lot.id, step=candidate.step, reason=exc.message
                )
                continue
            log.info("manual step completed", lot=lot.id, step=candidate.step)
            self.lot_waits()
