"""Queue-time limits in the flow files: loaded with their origin; a limit naming a step the
flow does not have, running from a step to itself or to one that never comes after it, or
warning after its maximum is a FlowError at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows import FlowLibrary
from tests.flows.test_loader import defs, edit, load_error

__all__ = ["defs"]  # the fixture, imported for these tests

LIMIT = (
    "  - {from: DIELECTRIC_COAT, to: VIA_PATTERN, warn_minutes: 180, max_minutes: 240, "
    'origin: "line practice: dielectric moisture uptake before exposure"}'
)


def test_fo_organic_limits_dielectric_coat_to_via_pattern(library: FlowLibrary) -> None:
    (limit,) = library.get("fo-organic").queue_times
    assert (limit.from_step, limit.to_step, limit.warn_minutes, limit.max_minutes) == (
        "DIELECTRIC_COAT",
        "VIA_PATTERN",
        180.0,
        240.0,
    )
    assert limit.origin.startswith("line practice")
    assert library.get("stiffener-bga").queue_times == ()


@pytest.mark.parametrize(
    ("limit", "says"),
    [
        (LIMIT.replace("to: VIA_PATTERN", "to: WIRE_BOND"), "WIRE_BOND is not a step of flow"),
        (LIMIT.replace("to: VIA_PATTERN", "to: DIELECTRIC_COAT"), "not DIELECTRIC_COAT to itself"),
        # a limit that would never run (found by the probe: published without a word)
        (LIMIT.replace("to: VIA_PATTERN", "to: DIE_ATTACH"),
         "DIE_ATTACH never comes after DIELECTRIC_COAT in flow fo-organic"),
        (LIMIT.replace("warn_minutes: 180", "warn_minutes: 300"), "must come before max_minutes"),
        (LIMIT.replace(', origin: "line practice: dielectric moisture uptake before exposure"', ""),
         "origin"),
    ],
)  # fmt: skip
def test_a_malformed_queue_time_is_refused_at_its_line(defs: Path, limit: str, says: str) -> None:
    flow = defs / "fo-organic.yaml"
    edit(flow, LIMIT, limit)
    error = load_error(defs)
    assert str(error).startswith(f"{flow}:"), str(error)
    assert says in str(error)
