"""The results check at the edge of a tool's runner (translate.check_results), pure: results
that fit give what the lot tracker records; each way of not fitting is refused with what was
received and what was expected. And the class catalogue's physical ranges."""

from __future__ import annotations

from dataclasses import replace

import pytest

from drivers.catalogue import class_spec, load_catalogue
from drivers.model import EquipmentClass, JobResults, SiteMap
from mes.domain.model import Carrier
from pkgline.bootstrap import flow_library
from pkgline.controller.translate import (
    ExpectedResults,
    ResultsRefused,
    check_results,
    sites_done,
)

SPEC = class_spec(EquipmentClass.COATER)
FLOW = flow_library().get("fo-metal")
CARRIER = Carrier("P1-01", "P1", 1, 2, 3)
INCOMING = SiteMap(2, 3, (0, 0, 1, 0, 0, 0))
EXPECTED = ExpectedResults("J1", "P1", "DIELECTRIC_COAT", CARRIER, INCOMING)
GOOD = JobResults(
    job_id="J1",
    lot_id="P1",
    step="DIELECTRIC_COAT",
    carrier_id="P1-01",
    measured={"film_thickness_um": 5.1, "cure_temperature_c": 349.0},
    site_map=SiteMap(2, 3, (0, 2, 1, 0, 0, 3)),
)


def test_results_that_fit_give_the_flows_values_and_the_rejects() -> None:
    checked = check_results(GOOD, EXPECTED, FLOW, SPEC)
    assert checked.results is GOOD
    assert checked.measured  # under the flow's names
    assert [(r.row, r.col, r.code) for r in checked.rejects] == [
        (1, 2, "FILM_DEFECT"),
        (2, 3, "THICKNESS"),
    ]


def test_a_tool_that_leaves_step_and_carrier_empty_is_taken_at_its_word_for_the_job() -> None:
    check_results(replace(GOOD, step="", carrier_id=""), EXPECTED, FLOW, SPEC)


@pytest.mark.parametrize(
    ("results", "what", "received"),
    [
        (None, "results", None),
        (replace(GOOD, job_id="J2"), "job id", "J2"),
        (replace(GOOD, lot_id="P2"), "lot", "P2"),
        (replace(GOOD, step="DIELDCTRIC_COAT"), "step", "DIELDCTRIC_COAT"),
        (replace(GOOD, step="PASSIVATION"), "step", "PASSIVATION"),
        (replace(GOOD, carrier_id="P1-02"), "carrier", "P1-02"),
        (replace(GOOD, site_map=SiteMap.all_good(3, 2)), "site map", "3x2"),
        (replace(GOOD, site_map=SiteMap(2, 3, (0, 0, 1, 0, 0, 9))), "site code at 2:3", 9),
        (replace(GOOD, measured={"bond_force_n": 1.0}), "measured value", "bond_force_n"),
        (
            replace(GOOD, measured={"film_thickness_um": "thick"}),
            "measured value film_thickness_um",
            "thick",
        ),
        (
            replace(GOOD, measured={"film_thickness_um": -3.0}),
            "measured value film_thickness_um",
            -3.0,
        ),
        (
            replace(GOOD, measured={"cure_temperature_c": 6000.0}),
            "measured value cure_temperature_c",
            6000.0,
        ),
    ],
    ids=[
        "none",
        "other-job",
        "other-lot",
        "corrupted-step",
        "other-step",
        "other-carrier",
        "map-shape",
        "unknown-site-code",
        "unknown-measured-value",
        "wrong-type",
        "below-physical-range",
        "above-physical-range",
    ],
)
def test_results_that_do_not_fit_are_refused_with_what_was_received_and_expected(
    results: JobResults | None, what: str, received: object
) -> None:
    with pytest.raises(ResultsRefused) as refused:
        check_results(results, EXPECTED, FLOW, SPEC)
    assert refused.value.what == what
    assert refused.value.received == received
    assert refused.value.expected
    assert refused.value.data()["what"] == what


def test_a_corrupted_step_says_the_step_expected_and_that_the_flow_has_no_such_step() -> None:
    with pytest.raises(ResultsRefused) as refused:
        check_results(replace(GOOD, step="DIELDCTRIC_COAT"), EXPECTED, FLOW, SPEC)
    assert "expected DIELECTRIC_COAT, a step of flow fo-metal" in str(refused.value)


def test_every_measured_number_of_every_class_has_a_physical_range() -> None:
    for spec in load_catalogue().values():
        for value in spec.measured.values():
            if value.type != "enum":
                assert value.range is not None, f"{spec.equipment_class}: {value.name}"
                assert value.range[0] <= value.range[1]


def test_a_value_within_its_physical_range_passes_and_one_outside_is_refused_saying_the_range() -> (
    None
):
    thickness = SPEC.measured["film_thickness_um"]
    assert thickness.check_physical(5) == 5.0
    with pytest.raises(ValueError, match=r"expected 0\.\.200 um \(physical range\), got 250\.0"):
        thickness.check_physical(250.0)


def test_the_sites_done_are_the_first_good_sites_row_major() -> None:
    assert sites_done(INCOMING, 3) == [(1, 1), (1, 2), (2, 1)]
    assert sites_done(INCOMING, 0) == []
    assert sites_done(INCOMING, 99) == [(1, 1), (1, 2), (2, 1), (2, 2), (2, 3)]
