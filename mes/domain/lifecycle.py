"""The lot state machine as data: which operation is allowed in which state, and where it
can lead. Guards that depend on the flow (step order, limits) live in
:mod:`mes.domain.operations`; this table is the outer gate every operation passes first.

::

          start                 track-in
    (new) ------> WAITING ------------------> RUNNING
                  |  ^  ^ <--- track-out ----- |  |
                  |  |  +----- abort --------- +  |
                  |  |                            | hold (the running step is not done)
             hold |  | release / rework           v
                  +--+------------------------> HOLD --- scrap ---> SCRAPPED
                  |                  track-out (value outside a limit) ^
                  +-- complete / last track-out --> COMPLETED          |
                  +-- merge into another lot -----> MERGED    WAITING -+ scrap

A job the tool completed after a hold or an abort took its lot off the tool is still recorded
(job_record in HOLD or WAITING, :func:`mes.domain.jobs.record_job`): the last carrier's record
tracks the step out, and a held lot stays held.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mes.domain.authority import Principal, may_operate
from mes.domain.errors import OperationNotAllowed
from mes.domain.model import FINAL_STATES, LotState, Operation

W, R, H = LotState.WAITING, LotState.RUNNING, LotState.HOLD
C, S, M = LotState.COMPLETED, LotState.SCRAPPED, LotState.MERGED

INITIAL_STATE = LotState.WAITING
"""Where ``start`` puts a new lot."""

TRANSITIONS: Mapping[tuple[LotState, Operation], frozenset[LotState]] = {
    (W, Operation.TRACK_IN): frozenset({R}),
    (W, Operation.HOLD): frozenset({H}),
    (W, Operation.SCRAP): frozenset({S}),
    (W, Operation.SCRAP_SITES): frozenset({W, H}),
    (W, Operation.SPLIT): frozenset({W}),
    (W, Operation.MERGE): frozenset({W}),
    (W, Operation.MERGE_INTO): frozenset({M}),
    (W, Operation.COMPLETE): frozenset({C}),
    (R, Operation.TRACK_OUT): frozenset({W, H, C}),
    (R, Operation.ABORT): frozenset({W}),
    (R, Operation.HOLD): frozenset({H}),
    (R, Operation.JOB_START): frozenset({R}),
    (R, Operation.JOB_RECORD): frozenset({R, W, H, C}),
    (H, Operation.JOB_RECORD): frozenset({H}),
    (W, Operation.JOB_RECORD): frozenset({W, H, C}),
    (H, Operation.RELEASE): frozenset({W, C}),
    (H, Operation.REWORK): frozenset({W}),
    (H, Operation.SCRAP): frozenset({S}),
    (H, Operation.SCRAP_SITES): frozenset({H}),
    (W, Operation.MIGRATE): frozenset({W}),
    (H, Operation.MIGRATE): frozenset({H}),
    (H, Operation.SPLIT): frozenset({H}),
}
"""(state, operation) -> the states the operation may lead to. Absent pairs are refused."""

LOT_OPERATIONS = frozenset(op for _, op in TRANSITIONS)
"""Operations on an existing lot (``start`` and ``split_from`` create one instead)."""


def allowed_operations(state: LotState) -> tuple[Operation, ...]:
    return tuple(op for (s, op) in TRANSITIONS if s is state)


class NotInState(OperationNotAllowed):
    """An operation the lot's state does not allow (:func:`require`), with the operations it
    does allow in ``allowed``. It keeps the state and the operation, so that the service
    layer, which knows who asked, makes the list the caller's own (:meth:`for_principal`)."""

    def __init__(
        self,
        state: LotState,
        operation: Operation,
        lot_id: str,
        allowed: Sequence[Operation],
        *,
        narrowed: bool = False,
    ):
        self.state, self.operation = state, operation
        names = [op.value for op in allowed]
        if state in FINAL_STATES:
            why = f"lot {lot_id} is {state.value}: nothing more can be done to it"
        elif names:
            why = (
                f"{operation.value} is not allowed while lot {lot_id} is {state.value}; "
                f"allowed: {', '.join(names)}"
            )
        else:  # the state allows some, none of them the caller's
            why = (
                f"{operation.value} is not allowed while lot {lot_id} is {state.value}, and "
                "none of what its state allows is yours to do"
            )
        super().__init__(why, lot_id=lot_id, allowed=names)
        self.narrowed = narrowed

    def for_principal(self, who: Principal | None) -> NotInState:
        """The refusal as ``who`` is told it: ``allowed`` only the operations the state
        allows that ``who``'s roles allow too (not a tool's jobs, the line controller's, to an
        operator or an API key). Unchanged without a principal (the lot tracker embedded)."""
        if who is None or self.narrowed or self.lot_id is None:
            return self
        yours = [op for op in allowed_operations(self.state) if may_operate(who, op)]
        return NotInState(self.state, self.operation, self.lot_id, yours, narrowed=True)


def require(state: LotState, operation: Operation, lot_id: str) -> frozenset[LotState]:
    """The states ``operation`` may lead to from ``state``; refuse it if there are none
    (:class:`NotInState`: ``allowed`` all the state allows, which the service layer narrows
    to what the caller may do)."""
    targets = TRANSITIONS.get((state, operation))
    if targets is not None:
        return targets
    raise NotInState(state, operation, lot_id, allowed_operations(state))
