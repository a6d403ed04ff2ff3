"""A unit of work's requests as statement plans: reads answered, changes saved with their
history, outbox rows and optimistic version checks (:mod:`mes.adapters.sql`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from mes.adapters.driver import (
    Execute,
    ExecuteMany,
    Fetch,
    FetchAll,
    IntegrityViolation,
    Plan,
    Step,
)
from mes.adapters.rows import (
    carrier_from_row,
    entry_from_row,
    group_lots,
    history_values,
    job_from_row,
    job_values,
    lot_values,
    reject_from_row,
)
from mes.adapters.sql_durables import durable_plan
from mes.adapters.sql_equipment import equipment_plan
from mes.adapters.sql_interlocks import interlock_plan
from mes.adapters.sql_materials import material_plan
from mes.adapters.sql_reasons import reason_plan
from mes.adapters.sql_security import security_plan
from mes.adapters.sql_signatures import signature_plan
from mes.adapters.sql_spc import spc_plan
from mes.adapters.sql_statements import HeadCache, Statements
from mes.domain import audit
from mes.domain.errors import ConcurrentUpdate, LotExists
from mes.domain.model import Change, HistoryEntry, Lot
from mes.domain.queuetimes import queue_released
from mes.domain.report import history_dict
from mes.ports import (
    EquipmentRequest,
    GetCarriers,
    GetChildren,
    GetHeads,
    GetHistory,
    GetHistoryAt,
    GetHoldEntries,
    GetJob,
    GetJobsOf,
    GetJobWithLot,
    GetLastTrackOuts,
    GetLot,
    GetQueueRelease,
    GetRejects,
    GetToolJobs,
    InterlockRequest,
    Request,
    Save,
    SignatureRequest,
    Together,
    ToolJob,
    Work,
)
from mes.ports_durables import DurableRequest, SaveDurables
from mes.ports_materials import MaterialRequest, SaveMaterials
from mes.ports_reasons import ReasonRequest
from mes.ports_security import SecurityRequest
from mes.ports_spc import SpcRequest

T = TypeVar("T")


def work_plan(
    sql: Statements, heads: HeadCache, work: Work[T], saving: Callable[[], None] | None = None
) -> Plan[T]:
    """``work`` as statements: each of its requests answered by :func:`answer_plan`;
    ``saving`` is called before a save that writes outbox events (a lot's, a durable's or a
    material lot's; maybe on the driver's thread)."""
    answer: Any = None
    try:
        while True:
            try:
                request = work.send(answer)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if saving is not None and _writes_events(request):
                saving()
            answer = yield from answer_plan(sql, heads, request)
    finally:
        work.close()


def _writes_events(request: Request) -> bool:
    if isinstance(request, Together):
        return any(_writes_events(r) for r in request.requests)
    return isinstance(request, Save | SaveDurables | SaveMaterials)


def answer_plan(sql: Statements, heads: HeadCache, request: Request) -> Plan[Any]:
    if isinstance(request, Together):
        return tuple(
            (yield from side_by_side([answer_plan(sql, heads, r) for r in request.requests]))
        )
    if isinstance(request, EquipmentRequest):
        return (yield from equipment_plan(sql.equipment, request))
    if isinstance(request, InterlockRequest):
        return (yield from interlock_plan(sql.interlocks, request))
    if isinstance(request, DurableRequest):
        return (yield from durable_plan(sql.durables, request))
    if isinstance(request, MaterialRequest):
        return (yield from material_plan(sql.materials, request))
    if isinstance(request, ReasonRequest):
        return (yield from reason_plan(sql.reasons, request))
    if isinstance(request, SpcRequest):
        return (yield from spc_plan(sql.spc, request))
    if isinstance(request, SignatureRequest):
        return (yield from signature_plan(sql.signatures, request))
    if isinstance(request, SecurityRequest):
        return (yield from security_plan(sql.security, request))
    if isinstance(request, GetHeads):
        if not request.states or request.tools == ():
            return []
        # as many tools bound as the next power of two (the last repeated): a few statements
        # compiled and kept for every page size, not one per number of tools
        tools = request.tools or ()
        if tools:
            tools = (*tools, *(tools[-1],) * ((1 << (len(tools) - 1).bit_length()) - len(tools)))
        statement = sql.heads(len(request.states), None if request.tools is None else len(tools))
        values: dict[str, Any] = {f"s{i}": s.value for i, s in enumerate(request.states)}
        values.update({f"t{i}": t for i, t in enumerate(tools)})
        raw = yield Fetch(statement, values, raw=True)
        return [heads.get(statement, r) for r in raw]
    if isinstance(request, Save):
        return (yield from save_plan(sql, request.change))
    if isinstance(request, GetLot):
        rows = yield Fetch(sql.get_lot, {"lot_id": request.lot_id})
        return group_lots(rows).get(request.lot_id)
    if isinstance(request, GetJob):
        rows = yield Fetch(sql.job, {"job_id": request.job_id})
        return job_from_row(rows[0]) if rows else None
    if isinstance(request, GetJobWithLot):
        rows = yield Fetch(sql.job_with_lot, {"job_id": request.job_id})
        if not rows:
            return None
        job = job_from_row(
            {k.removeprefix("job_"): v for k, v in rows[0].items() if k.startswith("job_")}
        )
        return job, group_lots(rows)[job.lot_id]
    if isinstance(request, GetJobsOf):
        statement = sql.jobs_from if request.and_later else sql.jobs_at
        rows = yield Fetch(statement, {"lot_id": request.lot_id, "path_index": request.path_index})
        return [job_from_row(r) for r in rows]
    if isinstance(request, GetToolJobs):
        window: dict[str, Any] = {
            "tool_id": request.tool_id,
            "since": request.since,
            "until": request.until,
            "limit": request.limit,
        }
        rows = yield Fetch(sql.tool_jobs, window)
        return [ToolJob(job_from_row(r), int(r["sites_in"])) for r in rows]
    if isinstance(request, GetRejects):
        rows = yield Fetch(sql.rejects, {"lot_id": request.lot_id})
        return [reject_from_row(r) for r in rows]
    if isinstance(request, GetCarriers):
        rows = yield Fetch(sql.carriers, {"lot_id": request.lot_id})
        return [carrier_from_row(r) for r in rows]
    if isinstance(request, GetHistory):
        if request.before_seq is None:
            rows = yield Fetch(sql.history, {"lot_id": request.lot_id})
        else:
            rows = yield Fetch(
                sql.history_before, {"lot_id": request.lot_id, "before_seq": request.before_seq}
            )
        return [entry_from_row(r) for r in rows]
    if isinstance(request, GetHistoryAt):
        rows = yield Fetch(sql.history_at, {"lot_id": request.lot_id, "at": request.at})
        return [entry_from_row(r) for r in rows]
    if isinstance(request, GetHoldEntries):
        return (yield from _hold_entries(sql, request.holds))
    if isinstance(request, GetLastTrackOuts):
        if not request.steps:
            return {}
        outs: dict[str, Any] = {"lot_id": request.lot_id, "until": request.until}
        outs.update({f"p{i}": step for i, step in enumerate(request.steps)})
        statement = sql.last_track_outs(len(request.steps), request.until is not None)
        rows = yield Fetch(statement, outs)
        return {r["step"]: r["at"] for r in rows}  # the last of each step wins
    if isinstance(request, GetQueueRelease):
        rows = yield Fetch(
            sql.releases(request.until is not None),
            {"lot_id": request.lot_id, "until": request.until},
        )
        return queue_released(rows)
    if isinstance(request, GetChildren):
        rows = yield Fetch(sql.children, {"lot_id": request.lot_id})
        return [r["id"] for r in rows]
    raise TypeError(f"not a lot store request: {request!r}")


HOLDS_PER_QUERY = 500
"""Holds read by one query of :class:`GetHoldEntries` (two parameters each: well under
SQLite's and PostgreSQL's limits); more take a query per this many."""


def _hold_entries(sql: Statements, holds: tuple[tuple[str, Any], ...]) -> Plan[list[HistoryEntry]]:
    found: list[HistoryEntry] = []
    for start in range(0, len(holds), HOLDS_PER_QUERY):
        chunk = holds[start : start + HOLDS_PER_QUERY]
        params: dict[str, Any] = {}
        for i, (lot_id, at) in enumerate(chunk):
            params[f"l{i}"], params[f"a{i}"] = lot_id, at
        rows = yield Fetch(sql.hold_entries(len(chunk)), params)
        wanted = set(chunk)
        found += [e for e in map(entry_from_row, rows) if (e.lot_id, e.at) in wanted]
    return found


def side_by_side(plans: list[Plan[Any]]) -> Plan[list[Any]]:
    """Run ``plans`` (each answering one request of a :class:`Together`) in rounds: each
    round, the next statement of every plan still running. A round of reads only goes as one
    :class:`FetchAll` (one round trip on PostgreSQL); a round with a write in it runs its
    statements one at a time, in the plans' order. Returns what each plan returned."""
    results: list[Any] = [None] * len(plans)
    sent: dict[int, tuple[Any, IntegrityViolation | None]] = dict.fromkeys(
        range(len(plans)), (None, None)
    )
    try:
        while sent:
            steps: dict[int, Step] = {}
            for i, (result, failure) in sent.items():
                try:
                    steps[i] = plans[i].send(result) if failure is None else plans[i].throw(failure)
                except StopIteration as done:
                    results[i] = done.value
            sent = {}
            reads = [s for s in steps.values() if isinstance(s, Fetch | FetchAll)]
            if len(reads) == len(steps) and len(steps) > 1:
                flat = [f for s in reads for f in (s.fetches if isinstance(s, FetchAll) else (s,))]
                found = yield FetchAll(tuple(flat))
                at = 0
                for i, step in steps.items():
                    if isinstance(step, FetchAll):
                        sent[i] = (found[at : at + len(step.fetches)], None)
                        at += len(step.fetches)
                    else:
                        sent[i] = (found[at], None)
                        at += 1
                continue
            for i, step in steps.items():
                try:
                    sent[i] = ((yield step), None)
                except IntegrityViolation as exc:
                    sent[i] = (None, exc)
    finally:
        for plan in plans:
            plan.close()
    return results


def save_plan(sql: Statements, change: Change) -> Plan[tuple[HistoryEntry, ...]]:
    """Write ``change``: the statements in order, each lot and job checked against what it
    must still be, each history entry chained to the one before it (:mod:`mes.domain.audit`:
    the lot's head comes with the lot read; a new lot takes its turn on the chain over
    lots)."""
    for lot in change.lots:
        expected = change.expected_versions[lot.id]
        if expected is not None and lot.version <= expected:  # HeadCache relies on it
            raise ValueError(f"lot {lot.id} written without a new version ({lot.version})")
    lots_head: str | None = None
    if any(v is None for v in change.expected_versions.values()):
        rows = yield Fetch(sql.lots_head, {})
        lots_head = rows[0]["head"]
    chained = audit.chain(change, lots_head)
    change = chained.change
    if chained.lots_head != lots_head:
        yield Execute(sql.set_lots_head, {"head": chained.lots_head})
    written: list[HistoryEntry] = []
    lots_left, entries_left = change.lots, change.entries
    if sql.move_in_one is not None and _moves_one_lot(change):
        # the lot and its first entry in one statement, then the rest of the change
        written.append((yield from _move_in_one_plan(sql, change)))
        lots_left, entries_left = (), change.entries[1:]
    for lot in lots_left:
        expected = change.expected_versions[lot.id]
        if expected is None:
            try:
                yield Execute(sql.insert_lot, {"id": lot.id, **lot_values(lot)})
            except IntegrityViolation:  # the unit of work rolls the transaction back
                raise LotExists(f"lot {lot.id} already exists", lot_id=lot.id) from None
            continue
        values = {f"v_{k}": v for k, v in lot_values(lot).items()}
        try:
            updated = yield Fetch(
                sql.update_lot, {"b_id": lot.id, "b_expected": expected, **values}
            )
        except IntegrityViolation as exc:
            raise tool_taken(lot, exc) from None
        if not updated:
            raise conflict(lot.id, expected)
    if change.new_carriers:
        yield ExecuteMany(
            sql.insert_carrier,
            [
                {
                    "id": c.id,
                    "lot_id": c.lot_id,
                    "position": c.position,
                    "rows": c.rows,
                    "cols": c.cols,
                }
                for c in change.new_carriers
            ],
        )
    if change.moved_carriers:
        yield ExecuteMany(
            sql.move_carrier,
            [
                {"b_id": carrier_id, "v_lot_id": lot_id, "v_position": position}
                for carrier_id, (lot_id, position) in change.moved_carriers.items()
            ],
        )
    if change.rejects:
        yield ExecuteMany(
            sql.insert_reject,
            [
                {
                    "carrier_id": r.carrier_id,
                    "row": r.row,
                    "col": r.col,
                    "code": r.code,
                    "step": r.step,
                    "path_index": r.path_index,
                }
                for r in change.rejects
            ],
        )
    for job, expected_status in change.jobs:
        values = job_values(job)
        if expected_status is None:
            try:
                yield Execute(sql.insert_job, values)
            except IntegrityViolation:
                raise ConcurrentUpdate(
                    f"job {job.job_id} exists already", lot_id=job.lot_id
                ) from None
            continue
        changed = yield Fetch(
            sql.update_job,
            {
                "b_job_id": job.job_id,
                "b_expected": expected_status.value,
                **{
                    f"v_{k}": values[k]
                    for k in ("status", "recorded_at", "measured", "rejects", "tool_data")
                },
            },
        )
        if not changed:
            raise ConcurrentUpdate(
                f"job {job.job_id} is no longer {expected_status.value}: another controller "
                "or operator got there first; nothing was changed",
                lot_id=job.lot_id,
            )
    for entry in entries_left:
        if sql.entry_in_one is not None:
            rows = yield Fetch(sql.entry_in_one, _entry_in_one_values(entry))
            written.append(replace(entry, seq=int(rows[0]["seq"])))
            continue
        rows = yield Fetch(sql.insert_history, history_values(entry))
        stored = replace(entry, seq=rows[0]["seq"])
        written.append(stored)
        yield Execute(
            sql.insert_outbox,
            {
                "lot_id": entry.lot_id,
                "kind": entry.event_kind,
                "payload": history_dict(stored),
                "created_at": entry.at,
            },
        )
    return tuple(written)


def _move_in_one_plan(sql: Statements, change: Change) -> Plan[HistoryEntry]:
    """The change's one lot, version-checked, and its first history entry: the entry as
    stored."""
    lot, entry = change.lots[0], change.entries[0]
    expected = change.expected_versions[lot.id]
    assert sql.move_in_one is not None
    assert expected is not None
    values: dict[str, Any] = {f"v_{k}": v for k, v in lot_values(lot).items()}
    values.update(_entry_in_one_values(entry), b_id=lot.id, b_expected=expected)
    try:
        rows = yield Fetch(sql.move_in_one, values)
    except IntegrityViolation as exc:  # the unit of work rolls the transaction back
        raise tool_taken(lot, exc) from None
    if not rows:
        raise conflict(lot.id, expected)
    return replace(entry, seq=int(rows[0]["seq"]))


def _entry_in_one_values(entry: HistoryEntry) -> dict[str, Any]:
    """The values of :func:`entry_in_one_statement` for ``entry``."""
    values: dict[str, Any] = {f"h_{k}": v for k, v in history_values(entry).items()}
    values.update(
        o_lot_id=entry.lot_id,
        o_kind=entry.event_kind,
        o_payload=history_dict(entry),
        o_created_at=entry.at,
    )
    return values


def _moves_one_lot(change: Change) -> bool:
    """One existing lot whose history entry comes first, and no carriers made or moved: every
    move of a lot, job start and record (not a split, merge or new lot)."""
    return (
        len(change.lots) == 1
        and change.expected_versions[change.lots[0].id] is not None
        and bool(change.entries)
        and change.entries[0].lot_id == change.lots[0].id
        and not (change.new_carriers or change.moved_carriers)
    )


def tool_taken(lot: Lot, exc: IntegrityViolation) -> Exception:
    """A lot's write that ux_lots_by_hand_tool refused (revision 0025): another lot was
    tracked in on its tool while this command ran (any other violation as it is)."""
    if "ux_lots_by_hand_tool" not in str(exc):
        return exc
    tool = lot.running.tool if lot.running is not None else None
    return ConcurrentUpdate(
        f"tool {tool} took another lot while this command ran: lot {lot.id} was not tracked "
        f"in on it; nothing was changed: track it in when {tool} is free, or on another tool",
        lot_id=lot.id,
    )


def conflict(lot_id: str, expected: int) -> ConcurrentUpdate:
    return ConcurrentUpdate(
        f"lot {lot_id} was changed by someone else while this command ran "
        f"(it is no longer at version {expected}); nothing was changed: "
        "look at it again (lot show) and retry",
        lot_id=lot_id,
    )
