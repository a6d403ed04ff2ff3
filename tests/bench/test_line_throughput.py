"""bench/line_throughput.py: a step runs from the completion seen to the next job's start
written (after the tool answered StartJob); the gaps where the tool had no work waiting are
kept, apart, as "starved"; a completion whose next start was never written is left out and
counted."""

from __future__ import annotations

from tests.bench.conftest import bench_module

lt = bench_module("line_throughput")

WINDOW = (100.0, 200.0)


def marks(*given: tuple[str, str, float]) -> list[object]:
    return [lt.Mark(kind, "T1", job, at) for kind, job, at in given]


def steps_of(
    given: list[object],
    job_of: dict[str, tuple[str, int]],
    waits: list[tuple[float, float]] | None = None,
    track_ins: dict[str, list[tuple[float, str]]] | None = None,
    recorded: dict[str, float] | None = None,
) -> object:
    found = lt.ToolSteps()
    logged = lt.ControllerLog(recorded=recorded or {})
    lt.tool_steps(found, "T1", given, WINDOW, 0.0, job_of, waits or [], track_ins or {}, logged)
    return found


def test_a_next_carrier_step_ends_when_the_next_start_is_written() -> None:
    found = steps_of(
        marks(
            ("start", "J1", 99.5),
            ("done", "J1", 110.0),
            ("start", "J2", 110.05),
            ("written", "J2", 110.08),
        ),
        {"J1": ("A", 3), "J2": ("A", 3)},
        recorded={"J1": 110.02},
    )
    (gap,) = found.gaps
    assert (gap.tool_id, gap.kind) == ("T1", "next carrier")
    assert gap.seconds == 110.08 - 110.0
    assert gap.parts == {
        "recorded": 110.02 - 110.0,
        "next sent": 110.05 - 110.02,
        "answered, written": 110.08 - 110.05,
    }
    assert found.seen_after == [110.0 - 99.5]
    assert found.unfinished == 0


def test_a_next_lot_with_a_lot_waiting_is_a_step() -> None:
    found = steps_of(
        marks(("done", "J1", 110.0), ("start", "J2", 110.3), ("written", "J2", 110.4)),
        {"J1": ("A", 3), "J2": ("B", 0)},
        waits=[(105.0, 110.2)],  # B waited for this tool from 105 to its track-in at 110.2
    )
    (gap,) = found.gaps
    assert gap.kind == "next lot"
    assert gap.seconds == 110.4 - 110.0
    assert set(gap.parts) == set(lt.PARTS["next lot"])


def test_a_gap_where_no_lot_waited_is_kept_apart_as_starved() -> None:
    found = steps_of(
        marks(("done", "J1", 110.0), ("start", "J2", 111.5), ("written", "J2", 111.6)),
        {"J1": ("A", 3), "J2": ("B", 0)},
        waits=[(90.0, 100.0), (111.0, 111.4)],  # one before, one that began after the completion
    )
    (gap,) = found.gaps
    assert gap.kind == "starved"
    assert gap.seconds == 111.6 - 110.0
    result = lt.RunResult(
        label="x",
        window_s=100.0,
        gaps=[gap, lt.Gap("T1", "next lot", 0.1)],
        unfinished=0,
        lots_completed=0,
        jobs_started=0,
        cpu_fraction=0.0,
        sim_cpu_fraction=0.0,
        seen_after=[],
        held=0,
        warnings=lt.Counter(),
        per_tool_jobs=lt.Counter(),
    )
    assert [g.kind for g in result.steps] == ["next lot"]
    assert result.starved == [gap]


def test_the_same_lot_on_its_very_next_step_here_is_a_step_but_not_after_a_step_elsewhere() -> None:
    job_of = {"J1": ("A", 3), "J2": ("A", 4)}
    here = steps_of(
        marks(("done", "J1", 110.0), ("start", "J2", 110.3), ("written", "J2", 110.4)),
        job_of,
        track_ins={"A": [(110.2, "T1")]},
    )
    assert [g.kind for g in here.gaps] == ["next lot"]
    elsewhere = steps_of(
        marks(("done", "J1", 110.0), ("start", "J2", 115.3), ("written", "J2", 115.4)),
        job_of,
        track_ins={"A": [(111.0, "T2"), (115.2, "T1")]},
    )
    assert [g.kind for g in elsewhere.gaps] == ["starved"]


def test_a_start_never_written_leaves_the_step_out_and_counts_it() -> None:
    found = steps_of(
        marks(("done", "J1", 110.0), ("start", "J2", 110.3), ("done", "J0", 199.0)),
        {"J1": ("A", 3), "J2": ("A", 3), "J0": ("C", 0)},
    )
    assert found.gaps == []
    assert found.unfinished == 2  # J2's start not written; nothing started after J0


def test_completions_seen_outside_the_window_are_not_counted() -> None:
    found = steps_of(
        marks(
            ("done", "J1", 99.0),
            ("start", "J2", 99.1),
            ("written", "J2", 99.2),
            ("done", "J2", 200.0),
            ("start", "J3", 200.1),
            ("written", "J3", 200.2),
        ),
        {"J1": ("A", 3), "J2": ("A", 3), "J3": ("A", 3)},
    )
    assert found.gaps == []
    assert found.unfinished == 0
