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

from collections.abc import Mapping

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


def require(state: LotState, operation: Operation, lot_id: str) -> frozenset[LotState]:
    """The states ``operation`` may lead to from ``state``; refuse it if there are none."""
    targets = TRANSITIONS.get((state, operation))
    if targets is not None:
        return targets
    allowed = [op.value for op in allowed_operations(state)]
    if state in FINAL_STATES:
        why = f"lot {lot_id} is {state.value}: nothing more can be done to it"
    else:
        why = (
            f"{operation.value} is not allowed while lot {lot_id} is {state.value}; "
            f"allowed: {', '.join(allowed)}"
        )
    raise OperationNotAllowed(why, lot_id=lot_id, allowed=allowed)
