"""What `lot show` and the station's lot page say under a hold of the work done before it,
and of what the tool did after it (a job the hold abandoned that the tool completed all the
same: its results are recorded late, mes.domain.jobs.record_job)."""

from __future__ import annotations

from pkgline.hold_views import hold_record

HOLD = {"abandoned_step": "MOLD", "carriers_done": ["H-01"], "jobs_open": [{"job": "J2"}]}


def test_the_carriers_done_at_the_step_the_hold_stopped() -> None:
    assert hold_record(HOLD) == [("done at step", "MOLD: carriers H-01 done")]
    assert hold_record({**HOLD, "carriers_done": []}) == [("done at step", "MOLD: no carrier done")]


def test_a_carrier_the_tool_completed_after_the_hold_and_the_step_done_then() -> None:
    later = [
        ("job_record", "MOLD", {"job": "J2", "carrier": "H-02"}),
        ("track_out", "MOLD", {"path_index": 4}),
    ]
    assert hold_record(HOLD, later) == [
        (
            "done at step",
            "MOLD: carriers H-01 done; then H-02 by the tool after the hold (its results "
            "recorded late); MOLD is done",
        )
    ]


def test_what_happened_at_other_steps_after_the_hold_is_not_this_holds() -> None:
    later = [("release", "STIFFENER_ATTACH", {}), ("job_record", "BALL_MOUNT", {"carrier": "X"})]
    assert hold_record(HOLD, later) == [("done at step", "MOLD: carriers H-01 done")]
