"""The lot state machine as a graph: one start, every state reachable, nothing leaves a final
state, and every (state, operation) pair is either allowed or refused with what is allowed."""

from __future__ import annotations

import itertools

import pytest

from mes.domain.errors import OperationNotAllowed
from mes.domain.lifecycle import (
    INITIAL_STATE,
    LOT_OPERATIONS,
    TRANSITIONS,
    allowed_operations,
    require,
)
from mes.domain.model import FINAL_STATES, LotState, Operation


def test_every_state_is_reachable_from_the_start() -> None:
    reached = {INITIAL_STATE}
    frontier = [INITIAL_STATE]
    while frontier:
        state = frontier.pop()
        for (source, _), targets in TRANSITIONS.items():
            if source is state:
                for target in targets - reached:
                    reached.add(target)
                    frontier.append(target)
    assert reached == set(LotState)


def test_nothing_leaves_a_final_state() -> None:
    assert {LotState.COMPLETED, LotState.SCRAPPED, LotState.MERGED} == FINAL_STATES
    assert not [pair for pair in TRANSITIONS if pair[0] in FINAL_STATES]


def test_every_non_final_state_has_a_way_out() -> None:
    for state in set(LotState) - FINAL_STATES:
        assert any(targets - {state} for (s, _), targets in TRANSITIONS.items() if s is state)


def test_a_final_state_is_reachable_from_every_state() -> None:
    for start in LotState:
        reached, frontier = {start}, [start]
        while frontier:
            state = frontier.pop()
            for (source, _), targets in TRANSITIONS.items():
                if source is state:
                    for target in targets - reached:
                        reached.add(target)
                        frontier.append(target)
        assert reached & FINAL_STATES, start


@pytest.mark.parametrize(
    ("state", "operation"), list(itertools.product(LotState, sorted(LOT_OPERATIONS)))
)
def test_every_state_operation_pair_is_allowed_or_refused_with_the_allowed_ones(
    state: LotState, operation: Operation
) -> None:
    if (state, operation) in TRANSITIONS:
        assert require(state, operation, "L1") == TRANSITIONS[(state, operation)]
        return
    with pytest.raises(OperationNotAllowed) as refused:
        require(state, operation, "L1")
    assert refused.value.allowed == tuple(op.value for op in allowed_operations(state))
    assert "L1" in refused.value.message
    assert state.value in refused.value.message


def test_a_held_lot_cannot_be_moved() -> None:
    for operation in (Operation.TRACK_IN, Operation.TRACK_OUT, Operation.COMPLETE, Operation.MERGE):
        with pytest.raises(OperationNotAllowed):
            require(LotState.HOLD, operation, "L1")
