"""What a refusal of an operation the lot's state does not allow offers instead
(mes.domain.lifecycle.NotInState.for_principal): the operations the state allows that the
caller's roles allow too. A tool's jobs are the line controller's alone: not offered to a
person, a system's API key, nor the database file's owner, who holds every role in direct
mode but runs no tool."""

from __future__ import annotations

import pytest

from mes.domain.authority import CONTROLLER, AuthMethod, Principal, Role
from mes.domain.lifecycle import NotInState, require
from mes.domain.model import LotState, Operation

OPERATOR = Principal("op1", frozenset({Role.OPERATOR}), AuthMethod.API_KEY)
QUALITY = Principal("qa1", frozenset({Role.QUALITY}), AuthMethod.SESSION)
NOBODY = Principal("viewer", frozenset(), AuthMethod.SESSION)


def _refused(state: LotState, operation: Operation) -> NotInState:
    with pytest.raises(NotInState) as refused:
        require(state, operation, "L1")
    return refused.value


@pytest.mark.parametrize(
    ("who", "allowed"),
    [
        (None, ["track_out", "abort", "hold", "job_start", "job_record"]),
        (OPERATOR, ["track_out", "abort", "hold"]),
        (QUALITY, ["hold"]),
        (CONTROLLER, ["track_out", "abort", "hold", "job_start", "job_record"]),
        (Principal.file_owner("root"), ["track_out", "abort", "hold"]),
    ],
)
def test_a_running_lots_refusal_offers_what_the_caller_may_do(
    who: Principal | None, allowed: list[str]
) -> None:
    told = _refused(LotState.RUNNING, Operation.TRACK_IN).for_principal(who)
    assert list(told.allowed) == allowed
    assert told.message == (
        f"track_in is not allowed while lot L1 is RUNNING; allowed: {', '.join(allowed)}"
    )
    assert told.kind == "operation_not_allowed" and told.lot_id == "L1"


def test_a_caller_who_may_do_none_of_it_is_told_so_and_a_final_state_as_before() -> None:
    told = _refused(LotState.HOLD, Operation.TRACK_IN).for_principal(NOBODY)
    assert told.allowed == ()
    assert told.message == (
        "track_in is not allowed while lot L1 is HOLD, and none of what its state allows is "
        "yours to do"
    )
    done = _refused(LotState.COMPLETED, Operation.HOLD).for_principal(OPERATOR)
    assert done.message == "lot L1 is COMPLETED: nothing more can be done to it"
