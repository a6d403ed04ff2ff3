"""Durables: the tool parts that wear out and are counted (capillaries, saw blades, mold
chases, stencils and ball-mount nozzles). Pure rules, no I/O.

A durable is added with its life (a count in its kind's unit) and the fraction of it at
which it warns; it is mounted on a tool of its kind's equipment class, one of a kind per
tool; each job the tool records adds to its count (:func:`job_count`); a track-in on a tool
with a durable at or past its life is refused (:func:`check_durables`), and so is one whose
lot would take a durable past its life at the step (each carrier still to run there counted
as a whole job, :class:`LotNeed`: a mold chase 2 shots from its life takes no 3-carrier
lot); one at or past its warning fraction is accepted with a warning. Every change is a
:class:`DurableEvent`, so a durable's history says which lots it served.

The count per job (docs/interlocks.md, "Durables"): the simulated tools, like many real
ones, report no life counter of their own, so it is derived from what a job's results say
(the carrier's site grid and the sites it processed):

- capillary (wire bonder): 2 touchdowns per site processed (one ball bond and one stitch bond;
  the tools report no wire count, so one wire per site is counted);
- saw blade (dicer): one cut per street of the carrier's grid, both directions, edges
  included: rows + 1 + cols + 1;
- mold chase (molder): one shot per carrier (a carrier is molded in one shot); renewed
  (count back to 0) by a cleaning;
- stencil and nozzle (ball mounter): one print per carrier.

A site processed is one that did not come in bad (rejected at an earlier step: skipped).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from mes.domain.errors import InterlockRefused, InvalidInput, OperationNotAllowed, RecordExists
from mes.domain.model import JobRecord, JobStatus, Lot
from mes.domain.text import counted, one_line, optional_line

if TYPE_CHECKING:
    from mes.domain.authority import Principal


class DurableKind(StrEnum):
    CAPILLARY = "capillary"
    SAW_BLADE = "saw_blade"
    MOLD_CHASE = "mold_chase"
    STENCIL = "stencil"
    NOZZLE = "nozzle"


class CountBasis(StrEnum):
    """What a job adds to a durable's count (:func:`job_count`)."""

    TWO_PER_SITE = "two_per_site"
    STREETS = "streets"
    ONE_PER_CARRIER = "one_per_carrier"


@dataclass(frozen=True, slots=True)
class KindSpec:
    """What a kind of durable is mounted on, what it counts and how."""

    equipment_class: str
    unit: str
    """The word of its count: touchdowns, cuts, shots, prints."""
    basis: CountBasis
    renewable: bool = False
    """A cleaning sets its count back to 0 (a mold chase); others are replaced."""


KINDS: dict[DurableKind, KindSpec] = {
    DurableKind.CAPILLARY: KindSpec("wire_bonder", "touchdowns", CountBasis.TWO_PER_SITE),
    DurableKind.SAW_BLADE: KindSpec("dicer", "cuts", CountBasis.STREETS),
    DurableKind.MOLD_CHASE: KindSpec("molder", "shots", CountBasis.ONE_PER_CARRIER, True),
    DurableKind.STENCIL: KindSpec("ball_mounter", "prints", CountBasis.ONE_PER_CARRIER),
    DurableKind.NOZZLE: KindSpec("ball_mounter", "prints", CountBasis.ONE_PER_CARRIER),
}
"""The one table of durable kinds (the module docstring gives the rules)."""

DEFAULT_WARN_FRACTION = 0.9
MAX_LIFE = 10**12
"""The longest life a durable may be given: far past any capillary's or blade's (millions of
touchdowns, thousands of cuts), and within what the stores keep and JSON carries exactly."""
"""Line practice: warn when 90 % of a durable's life is used."""

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")


class DurableEventKind(StrEnum):
    ADDED = "added"
    MOUNTED = "mounted"
    UNMOUNTED = "unmounted"
    USED = "used"
    """A job on its tool: ``amount`` added to its count, for a lot at a step."""
    RENEWED = "renewed"
    """Cleaned: its count set back to 0."""


@dataclass(frozen=True, slots=True)
class Durable:
    id: str
    kind: DurableKind
    life: int
    """Its life in its kind's unit (:data:`KINDS`)."""
    warn_fraction: float
    """Kept to a thousandth (0.9: warn at 90 % of its life)."""
    count: int
    added_by: str
    added_at: datetime
    tool_id: str | None = None
    """The tool it is mounted on; None while it is off the tools."""
    mounted_at: datetime | None = None
    description: str | None = None

    @property
    def unit(self) -> str:
        return KINDS[self.kind].unit

    @property
    def spent(self) -> bool:
        """At or past its life: a track-in on its tool is refused."""
        return self.count >= self.life

    @property
    def warned(self) -> bool:
        return self.count >= self.warn_at

    @property
    def warn_at(self) -> int:
        """The count from which it warns: the life times the fraction (kept in thousandths),
        rounded up, in whole numbers (in floats 10,000 x 0.81 is 8,100.000000000001, which
        would warn one count late)."""
        permille = round(self.warn_fraction * 1000)
        return -(-self.life * permille // 1000)

    def text(self) -> str:
        """``capillary CAP-1 at 9,500 of 10,000 touchdowns (95 %)``"""
        share = 100.0 * self.count / self.life
        return (
            f"{self.kind.value} {self.id} at {self.count:,} of {self.life:,} {self.unit} "
            f"({share:.0f} %)"
        )


@dataclass(frozen=True, slots=True)
class DurableEvent:
    """One line of a durable's history."""

    durable_id: str
    event: DurableEventKind
    at: datetime
    by: str
    count_after: int
    tool_id: str | None = None
    lot_id: str | None = None
    step: str | None = None
    job_id: str | None = None
    amount: int = 0
    reason: str | None = None
    seq: int | None = None
    """Set by the store when it is written."""
    principal: str | None = None
    """Who acted (the principal's name; ``by`` is the user the command named, free text) and
    how they were known (``auth``): kept for the event feed only, as a material lot's
    (None: not recorded)."""
    auth: str | None = None


Changed = tuple[Durable, DurableEvent]


def stamped(changed: Sequence[Changed], who: Principal | None) -> list[Changed]:
    """The changes with their events saying who made them and how they were known (as a
    lot's history entries: :func:`mes.domain.common.stamped`; a job's count on the durables
    of its tool: whoever recorded the job, tracked the step out, held or aborted it)."""
    if who is None:
        return list(changed)
    return [
        (durable, replace(event, principal=who.name, auth=who.method.value))
        for durable, event in changed
    ]


def event_kind(event: DurableEvent) -> str:
    """The fact an event of a durable's history is, for the event feed (``DurableMounted``)."""
    return f"Durable{event.event.value.capitalize()}"


def event_dict(changed: Changed) -> dict[str, object]:
    """A durable's history event as the outbox keeps it for the feed (docs/events.md,
    ``durable-event``), with what the durable is: its kind, life and unit."""
    durable, event = changed
    return {
        "durable": event.durable_id,
        "durable_kind": durable.kind.value,
        "event": event.event.value,
        "at": event.at.isoformat(),
        "user": event.by,
        "by": event.principal,
        "auth": event.auth,
        "count_after": event.count_after,
        "amount": event.amount,
        "life": durable.life,
        "warn_at": durable.warn_at,
        "unit": durable.unit,
        "tool": event.tool_id,
        "mounted_on": durable.tool_id,
        "lot": event.lot_id,
        "step": event.step,
        "job": event.job_id,
        "reason": event.reason,
    }


@dataclass(frozen=True, slots=True)
class PendingJob:
    """A job a tool took whose results are not recorded yet: the line controller may track
    the tool's next lot in meanwhile, so a track-in counts it as already done (as if every
    site of its carrier was processed: the most it can add)."""

    job_id: str
    rows: int
    cols: int


@dataclass(frozen=True, slots=True)
class Mounted:
    """What a tool has mounted, read in one statement with its jobs not yet recorded (so
    that the two agree: a job is either counted or pending, never neither)."""

    durables: list[Durable]
    pending: list[PendingJob]


def add(
    durable_id: str,
    kind: str,
    life: int,
    warn_fraction: float,
    by: str,
    now: datetime,
    *,
    existing: Durable | None = None,
    description: str | None = None,
) -> Changed:
    """A new durable, off the tools, with a count of 0. Refused (InvalidInput, saying what is
    expected) for a taken id, an unknown kind, a life below 1 or a warning fraction outside
    (0, 1]."""
    if not _ID.fullmatch(durable_id):
        raise InvalidInput(
            f"durable id {durable_id!r} is not valid: expected 1 to 32 ASCII letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    if existing is not None:
        raise RecordExists(f"durable {durable_id} exists already ({existing.text()})")
    try:
        known = DurableKind(kind)
    except ValueError:
        raise InvalidInput(
            f"{kind!r} is not a kind of durable; expected one of {', '.join(KINDS)}",
            allowed=list(KINDS),
        ) from None
    if not 1 <= life <= MAX_LIFE:
        raise InvalidInput(
            f"the life of durable {durable_id} must be a count of 1 to {MAX_LIFE:,} "
            f"{KINDS[known].unit}, not {life}"
        )
    if not (0.001 <= warn_fraction <= 1.0) or math.isnan(warn_fraction):
        raise InvalidInput(
            f"the warning fraction of durable {durable_id} must be from 0.001 to 1 "
            f"(0.9: warn at 90 % of its life), not {warn_fraction}"
        )
    kept = round(warn_fraction, 3)
    description = optional_line(description, "the description")
    durable = Durable(durable_id, known, life, kept, 0, by, now, description=description)
    return durable, DurableEvent(durable_id, DurableEventKind.ADDED, now, by, 0)


def _idle(durable: Durable, doing: str, tool_id: str, running: Sequence[str]) -> None:
    """Refuse a mount or unmount on a tool a lot runs on: the step's use of the tool's
    durables is counted when it ends (or is abandoned), on those mounted then, so a durable
    swapped meanwhile would be credited with what the other one did."""
    if running:
        lots = ", ".join(running)
        raise OperationNotAllowed(
            f"{durable.kind.value} {durable.id} cannot be {doing} {tool_id} while lot {lots} "
            f"runs on it: its use is counted on the durables mounted when the step ends; "
            f"expected the step tracked out first (or the lot held or the step aborted, which "
            f"counts it on the durables mounted now)"
        )


def mount(
    durable: Durable,
    tool_id: str,
    tool_class: str,
    on_tool: Sequence[Durable],
    by: str,
    now: datetime,
    running: Sequence[str] = (),
) -> Changed:
    """Mount ``durable`` on ``tool_id`` (of ``tool_class``), where ``on_tool`` are mounted
    and the lots ``running`` run. Refused if it is mounted already, is not for a tool of
    that class, the tool has one of its kind already or runs a lot, or it is spent."""
    spec = KINDS[durable.kind]
    if durable.tool_id is not None:
        raise OperationNotAllowed(
            f"durable {durable.id} is mounted on {durable.tool_id} already; expected it "
            f"unmounted first (pkgline durable unmount {durable.id})"
        )
    if tool_class != spec.equipment_class:
        raise InvalidInput(
            f"a {durable.kind.value} is mounted on a {spec.equipment_class}; {tool_id} is a "
            f"{tool_class}",
        )
    _idle(durable, "mounted on", tool_id, running)
    same = [d for d in on_tool if d.kind is durable.kind and d.id != durable.id]
    if same:
        raise OperationNotAllowed(
            f"{tool_id} has {durable.kind.value} {same[0].id} mounted; expected it unmounted "
            f"first (pkgline durable unmount {same[0].id})"
        )
    if durable.spent:
        raise OperationNotAllowed(
            f"durable {durable.id} is spent ({durable.text()}); expected one under its life"
        )
    mounted = replace(durable, tool_id=tool_id, mounted_at=now)
    return mounted, DurableEvent(
        durable.id, DurableEventKind.MOUNTED, now, by, durable.count, tool_id=tool_id
    )


def unmount(
    durable: Durable,
    by: str,
    now: datetime,
    reason: str | None = None,
    running: Sequence[str] = (),
) -> Changed:
    """Take ``durable`` off its tool, where the lots ``running`` run (refused if any)."""
    if durable.tool_id is None:
        raise OperationNotAllowed(f"durable {durable.id} is not mounted on any tool")
    _idle(durable, "unmounted from", durable.tool_id, running)
    off = replace(durable, tool_id=None, mounted_at=None)
    return off, DurableEvent(
        durable.id,
        DurableEventKind.UNMOUNTED,
        now,
        by,
        durable.count,
        tool_id=durable.tool_id,
        reason=optional_line(reason, "the reason"),
    )


def renew(
    durable: Durable, by: str, now: datetime, reason: str, running: Sequence[str] = ()
) -> Changed:
    """A cleaning sets a renewable durable's count back to 0 (a mold chase's shots since
    cleaning); others are replaced, not renewed. Not while a lot runs on its tool (the
    ``running`` lots): the step's shots, counted when it ends, would land after the cleaning."""
    if not KINDS[durable.kind].renewable:
        renewable = [k.value for k, s in KINDS.items() if s.renewable]
        raise OperationNotAllowed(
            f"a {durable.kind.value} is replaced, not renewed; expected a durable of kind "
            f"{', '.join(renewable)}",
            allowed=renewable,
        )
    if durable.tool_id is not None:
        _idle(durable, "renewed on", durable.tool_id, running)
    return replace(durable, count=0), DurableEvent(
        durable.id,
        DurableEventKind.RENEWED,
        now,
        by,
        0,
        tool_id=durable.tool_id,
        amount=-durable.count,
        reason=one_line(reason, "the reason"),
    )


def job_count(kind: DurableKind, rows: int, cols: int, processed_sites: int) -> int:
    """What one job (one carrier of ``rows`` x ``cols`` sites, ``processed_sites`` of them
    not skipped) adds to a durable of ``kind`` (the module docstring gives the rules)."""
    basis = KINDS[kind].basis
    if basis is CountBasis.TWO_PER_SITE:
        return 2 * processed_sites
    if basis is CountBasis.STREETS:
        return rows + 1 + cols + 1
    return 1


def use(
    on_tool: Sequence[Durable],
    *,
    lot_id: str,
    step: str,
    job_id: str | None,
    rows: int,
    cols: int,
    processed_sites: int,
    by: str,
    now: datetime,
) -> list[Changed]:
    """One job on the tool: each durable mounted on it counts it."""
    used: list[Changed] = []
    for d in on_tool:
        amount = job_count(d.kind, rows, cols, processed_sites)
        after = replace(d, count=d.count + amount)
        event = DurableEvent(
            d.id,
            DurableEventKind.USED,
            now,
            by,
            after.count,
            tool_id=d.tool_id,
            lot_id=lot_id,
            step=step,
            job_id=job_id,
            amount=amount,
        )
        used.append((after, event))
    return used


@dataclass(frozen=True, slots=True)
class LotNeed:
    """What a lot tracked in will run at the step: one job per carrier still to run there,
    of ``rows`` x ``cols`` sites (``done``: its carriers recorded done there already, when it
    resumes a step a hold or an abort stopped)."""

    carriers: int
    rows: int
    cols: int
    done: int = 0

    def per_carrier(self, kind: DurableKind) -> int:
        """The most one of its jobs can add to a durable of ``kind`` (as a PendingJob)."""
        return job_count(kind, self.rows, self.cols, self.rows * self.cols)


def lot_need(lot: Lot, step: str, step_jobs: Sequence[JobRecord] = ()) -> LotNeed:
    """What ``lot`` will run at ``step``: its carriers but those whose jobs there are recorded
    (``step_jobs``: read only when it resumes a step a hold or an abort stopped,
    :func:`mes.domain.operations.unfinished`)."""
    done = {j.carrier_id for j in step_jobs if j.step == step and j.status is JobStatus.RECORDED}
    left = [c for c in lot.carriers if c not in done]
    return LotNeed(len(left), lot.site_rows, lot.site_cols, len(lot.carriers) - len(left))


def replacement_expected(d: Durable, lot_id: str = "", need: LotNeed | None = None) -> str:
    """What a track-in refused for a spent durable expects; for one that lot ``lot_id``'s
    ``need`` would run past its life, one with enough left, or the lot split (if a carrier fits)."""
    swap = "unmount it and mount a new one" + (
        " or renew it after cleaning" if KINDS[d.kind].renewable else ""
    )
    if need is None:
        life = f"its life of {d.life:,} {d.unit} (count {d.count:,})"
        return f"{d.kind.value} {d.id} under {life}: {swap}"
    left, one = d.life - d.count, need.per_carrier(d.kind)
    split = (
        f", or split lot {lot_id} to at most {counted(left // one, 'carrier')}"
        if left >= one
        else ""
    )
    return f"{d.kind.value} {d.id} with {_amount(d, need.carriers * one)} left: {swap}{split}"


def _amount(d: Durable, amount: int) -> str:
    """``1 shot``, ``128 touchdowns``: an amount in the durable's unit."""
    return counted(amount, d.unit.removesuffix("s"), d.unit)


def check_durables(
    lot_id: str,
    step: str,
    tool_id: str,
    on_tool: Sequence[Durable],
    pending: Sequence[PendingJob] = (),
    need: LotNeed | None = None,
) -> list[str]:
    """Refuse a track-in of ``lot_id`` at ``step`` on ``tool_id`` (InterlockRefused
    ``durable_life``) if a durable mounted on it is spent, counting the tool's ``pending``
    jobs as done, or if what the lot will run there (``need``, each carrier a whole job)
    would take it past its life (to its life exactly is allowed); else the warnings of
    those past their warning fraction, and of those the lot may take to it (recorded with the
    track-in: the replacement is due during this lot, not after it)."""
    with_pending = [
        replace(
            d,
            count=d.count
            + sum(job_count(d.kind, j.rows, j.cols, j.rows * j.cols) for j in pending),
        )
        for d in on_tool
    ]
    waiting = (
        f" (with {counted(len(pending), 'job')} of {tool_id} not yet recorded: "
        f"{', '.join(j.job_id for j in pending)})"
        if pending
        else ""
    )
    refused = f"track-in of lot {lot_id} at {step} on {tool_id} refused: "
    for d in with_pending:  # a spent one first, in the words it always had
        if d.spent:
            expected = replacement_expected(d)
            message = f"{d.text()}{waiting}, at or past its life; expected {expected}"
            raise InterlockRefused(
                refused + message, interlock="durable_life", expected=expected, lot_id=lot_id
            )
    if need is not None:
        for d in with_pending:
            adds = need.carriers * need.per_carrier(d.kind)
            if d.count + adds > d.life:
                expected = replacement_expected(d, lot_id, need)
                done = f", {need.done:,} done already" if need.done else ""
                message = (
                    f"{d.text()}{waiting}; lot {lot_id} needs up to {_amount(d, adds)} at {step} "
                    f"({counted(need.carriers, 'carrier')}{done}), {d.life - d.count:,} left; "
                    f"expected {expected}"
                )
                raise InterlockRefused(
                    refused + message, interlock="durable_life", expected=expected, lot_id=lot_id
                )
    warnings = []
    for d in with_pending:
        at = f"its warning at {d.warn_fraction * 100:g}% of life"
        adds = need.carriers * need.per_carrier(d.kind) if need is not None else 0
        if d.warned:
            warnings.append(f"{d.text()}: past {at}")
        elif adds and d.count + adds >= d.warn_at:
            warnings.append(
                f"{d.text()}: lot {lot_id} may take it to {at} ({d.warn_at:,}), needing up to "
                f"{_amount(d, adds)} at {step}"
            )
    return warnings
