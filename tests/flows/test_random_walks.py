"""Property: a random walk through a flow is accepted exactly when it matches the claimed order.

Walks are random step sequences biased toward valid ones: mostly a step the specification
allows next, now and then any step code (out of order, repeated, extra or foreign) or a stop;
past the end or off the order, a walk stops or adds random steps. The oracle (tests/flows/oracle.py)
reads the notation of flows.md verbatim and decides with Python regular expressions; the
automaton under test must agree on acceptance, the first refused step, what is allowed there,
completeness and the next steps.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows import FlowLibrary, PathError
from tests.flows import oracle


@st.composite
def walks(draw: st.DrawFn) -> tuple[str, int, list[str]]:
    flow = draw(st.sampled_from(sorted(oracle.SPEC_FLOWS)))
    layers = draw(st.integers(1, 8)) if flow in oracle.LAYERED else 1
    path: list[str] = []
    valid = True
    for _ in range(60):
        allowed = sorted(oracle.next_steps(flow, layers, path)) if valid else []
        move = draw(st.integers(0, 99))
        if allowed:
            # Mostly a step the flow allows; now and then a stop or a step off the order.
            if move == 0:
                break
            if move > 3:
                path.append(draw(st.sampled_from(allowed)))
                continue
        elif move < 50:
            break
        path.append(draw(st.sampled_from(oracle.STEP_CODES)))
        valid = valid and oracle.viable(flow, layers, path)
    return flow, layers, path


@settings(max_examples=250, deadline=None)
@given(walks())
def test_a_random_walk_is_accepted_exactly_when_it_matches_the_flow(
    library: FlowLibrary, walk: tuple[str, int, list[str]]
) -> None:
    flow_name, layers, path = walk
    flow = library.get(flow_name)
    params = {"layers": layers}
    if oracle.viable(flow_name, layers, path):
        position = flow.position(path, params)
        assert position.complete == oracle.complete(flow_name, layers, path)
        assert position.next_steps == oracle.next_steps(flow_name, layers, path)
        if flow_name in oracle.LAYERED:
            assert position.layers == layers
    else:
        first_bad = next(
            i for i in range(len(path)) if not oracle.viable(flow_name, layers, path[: i + 1])
        )
        with pytest.raises(PathError) as refused:
            flow.position(path, params)
        error = refused.value
        assert error.index == first_bad
        assert error.step == path[first_bad]
        assert error.allowed == oracle.next_steps(flow_name, layers, path[:first_bad])


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(oracle.LAYERED)),
    st.integers(1, 8),
    st.data(),
)
def test_a_complete_claimed_walk_is_complete(
    library: FlowLibrary, flow_name: str, layers: int, data: st.DataObject
) -> None:
    """Walk only through allowed steps to the end: the flow must say complete exactly there."""
    flow = library.get(flow_name)
    path: list[str] = []
    while True:
        allowed = oracle.next_steps(flow_name, layers, path)
        position = flow.position(path, {"layers": layers})
        assert position.next_steps == allowed
        assert position.complete == oracle.complete(flow_name, layers, path)
        if not allowed:
            break
        path.append(data.draw(st.sampled_from(sorted(allowed))))
    assert position.complete
