"""The figures of ``bench/line_scale.py --serve`` (bench/line_scale_serve.py), from what it
wrote down: the changes of state on the simulated tools (wall times, in the simulators'
process), the reads of the tools' rows in the database, and the jobs the controller started.
Pure: no process, socket or database here."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from drivers.model import ToolStatus

State = tuple[str, str | None]
"""A tool's process state (its name) and job, as equipment tracking writes them."""
Change = tuple[str, float, State]
"""(tool id, wall time, the state it changed to) of one change on a simulated tool."""
Read = tuple[float, float, State]
"""(read at, observed at, the state observed) of a tool's row, whenever the observation moved."""


def state_key(status: ToolStatus) -> State:
    """What makes a change of state here: the process state and the job, which the controller
    reports at once (progress alone it reports at most once a second: not a change here)."""
    return (status.state.name, status.job_id)


def changed(before: State | None, now: State) -> bool:
    return before is not None and before != now


@dataclass
class Notices:
    """Notice delays: change -> recorded (an upper bound by one read) and change -> observed."""

    recorded_s: list[float] = field(default_factory=list)
    observed_s: list[float] = field(default_factory=list)
    unrecorded: int = 0


def notice_delays(
    changes: Iterable[Change],
    reads: dict[str, Sequence[Read]],
    window: tuple[float, float],
) -> Notices:
    """For each change in ``window`` (wall times): the first read of its tool that shows the
    state it changed to, or the state of a later change, observed at or after the change and
    after that later change (a state the tool left before the controller looked is recorded
    when what followed it is). ``reads``: by tool, in the order read. A change no read shows
    is counted as unrecorded."""
    found = Notices()
    t0, t1 = window
    by_tool: dict[str, list[tuple[float, State]]] = defaultdict(list)
    for tool_id, at, state in changes:
        by_tool[tool_id].append((at, state))
    for tool_id, timeline in by_tool.items():
        timeline.sort(key=lambda change: change[0])
        tool_reads = reads.get(tool_id, ())
        for i, (at, _) in enumerate(timeline):
            if not t0 <= at < t1:
                continue
            hit = next(
                (
                    (read_at, observed)
                    for read_at, observed, seen in tool_reads
                    if observed >= at and any(s == seen and a <= observed for a, s in timeline[i:])
                ),
                None,
            )
            if hit is None:
                found.unrecorded += 1
                continue
            found.recorded_s.append(hit[0] - at)
            found.observed_s.append(hit[1] - at)
    return found


@dataclass(frozen=True)
class JobRow:
    job_id: str
    tool_id: str
    lot_id: str
    step: str
    path_index: int
    started_at: float


@dataclass
class Steps:
    carrier_s: list[float] = field(default_factory=list)
    """Completion observed -> the next carrier of the same lot and step started: the goal."""
    other_s: list[float] = field(default_factory=list)
    """Completion observed -> another lot's job started (or the same lot's next step)."""
    unfinished: int = 0
    """Completions in the window with no later job on the tool."""


def step_times(
    jobs: Iterable[JobRow],
    completions: dict[str, Sequence[float]],
    window: tuple[float, float],
) -> Steps:
    """Per tool, each job whose completion (the first ``completions`` time of its tool after
    its start and before the next job's start) falls in ``window``, to the next job's start."""
    found = Steps()
    t0, t1 = window
    by_tool: dict[str, list[JobRow]] = defaultdict(list)
    for job in jobs:
        by_tool[job.tool_id].append(job)
    for tool_id, rows in by_tool.items():
        rows.sort(key=lambda j: j.started_at)
        done_at = sorted(completions.get(tool_id, ()))
        for k, job in enumerate(rows):
            after = rows[k + 1] if k + 1 < len(rows) else None
            until = after.started_at if after else float("inf")
            done = next((c for c in done_at if job.started_at < c <= until), None)
            if done is None or not t0 <= done < t1:
                continue
            if after is None:
                found.unfinished += 1
                continue
            same = (after.lot_id, after.step, after.path_index) == (
                job.lot_id,
                job.step,
                job.path_index,
            )
            (found.carrier_s if same else found.other_s).append(after.started_at - done)
    return found
