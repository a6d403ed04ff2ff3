"""The in-memory store's answers to the track-in interlocks' requests (tool qualifications,
durables, material lots, reason codes, SPC charts) and to the security log's (an engineering
change's event): the same contract as their SQL stores
(:mod:`mes.adapters.sql_interlocks` and its neighbours), on a :class:`MemoryStore`'s
tables. :class:`mes.adapters.memory.MemoryUnitOfWork` runs them on its working copy."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mes.adapters.outbox import subject_row
from mes.domain import durables, materials
from mes.domain.durables import DurableEventKind, Mounted, PendingJob
from mes.domain.identity import SecurityEvent
from mes.domain.material_quarantine import quarantined_meanwhile
from mes.domain.model import JobStatus, LotState
from mes.domain.security_chain import event_hash
from mes.ports import GetLotsRunningOn, GetQualifications, InterlockRequest, SaveQualifications
from mes.ports_durables import (
    DurablePage,
    DurableRequest,
    GetDurableEvents,
    GetDurablePage,
    GetDurables,
    GetMounted,
    SaveDurables,
)
from mes.ports_materials import (
    AddUses,
    GetMaterialEvents,
    GetMaterialPage,
    GetMaterials,
    GetUses,
    MaterialPage,
    MaterialRequest,
    SaveMaterials,
)
from mes.ports_reasons import GetReasonCodes, ReasonRequest, SaveReasonCode
from mes.ports_security import AppendSecurityEvent, SecurityRequest
from mes.ports_spc import (
    AddPoints,
    CountPoints,
    GetCharts,
    GetPoints,
    SaveChart,
    SpcRequest,
)

if TYPE_CHECKING:
    from mes.adapters.memory import MemoryStore


def answer_interlock(store: MemoryStore, request: InterlockRequest) -> Any:
    """What a store answers to an interlock request (:data:`mes.ports.Work`)."""
    if isinstance(request, GetQualifications):
        return [
            q
            for _, q in sorted(store.qualifications.items())
            if request.step in (None, q.step) and request.tool_id in (None, q.tool_id)
        ]
    if isinstance(request, SaveQualifications):
        for q in request.qualifications:
            store.qualifications[(q.tool_id, q.step)] = q
        return None
    if isinstance(request, GetLotsRunningOn):
        return sorted(
            lot.id
            for lot in store.lots.values()
            if lot.state is LotState.RUNNING
            and lot.running is not None
            and lot.running.tool == request.tool_id
        )
    raise TypeError(f"not an interlock store request: {request!r}")


def _running(store: MemoryStore, lot_id: str) -> tuple[str | None, str | None]:
    """The tool lot ``lot_id`` runs on and the step it runs (None, None: not running)."""
    lot = store.lots.get(lot_id)
    running = lot.running if lot is not None else None
    return (running.tool, running.step) if running is not None else (None, None)


def answer_durables(store: MemoryStore, request: DurableRequest) -> Any:
    """What a store answers to a durables request (:data:`mes.ports.Work`)."""
    if isinstance(request, GetDurables) and request.running_lot is not None:
        tool, _ = _running(store, request.running_lot)
        return [d for _, d in sorted(store.durables.items()) if tool and d.tool_id == tool]
    if isinstance(request, GetDurables):
        ids = request.durable_ids
        return [
            d
            for _, d in sorted(store.durables.items())
            if (request.tool_id is None or d.tool_id == request.tool_id)
            and (request.tool_id is not None or ids is None or d.id in ids)
            and (not request.mounted or d.tool_id is not None)
        ]
    if isinstance(request, GetDurablePage):
        q = request.query
        found = answer_durables(store, GetDurables(tool_id=q.tool_id, mounted=q.mounted))
        page = [d for d in found if q.after is None or d.id > q.after][: q.limit + 1]
        return DurablePage(page[: q.limit], len(found), len(page) > q.limit)
    if isinstance(request, GetMounted):
        mounted = [d for _, d in sorted(store.durables.items()) if d.tool_id == request.tool_id]
        pending = [
            PendingJob(j.job_id, store.lots[j.lot_id].site_rows, store.lots[j.lot_id].site_cols)
            for j in sorted(store.jobs.values(), key=lambda j: j.job_id)
            if mounted and j.tool_id == request.tool_id and j.status is JobStatus.STARTED
        ]
        return Mounted(mounted, pending)
    if isinstance(request, SaveDurables):
        for durable, event in request.changed:
            if event.event is DurableEventKind.USED:
                stored = store.durables[durable.id]
                durable = replace(stored, count=stored.count + event.amount)
            store.durables[durable.id] = durable
            store.durable_events.append(replace(event, seq=len(store.durable_events) + 1))
            store.outbox.append(
                subject_row(
                    "durable",
                    event.durable_id,
                    durables.event_kind(event),
                    durables.event_dict((durable, event)),
                    event.at,
                )
            )
        return None
    if isinstance(request, GetDurableEvents):
        return [
            e
            for e in store.durable_events
            if request.durable_id in (None, e.durable_id) and request.lot_id in (None, e.lot_id)
        ]
    raise TypeError(f"not a durables store request: {request!r}")


def answer_materials(store: MemoryStore, request: MaterialRequest) -> Any:
    """What a store answers to a material lots request (:data:`mes.ports.Work`)."""
    if isinstance(request, GetMaterials):
        ids = request.material_ids
        return [
            m
            for _, m in sorted(store.materials.items())
            if (request.tool_id is None or m.tool_id == request.tool_id)
            and (request.tool_id is not None or ids is None or m.id in ids)
            and (not request.loaded or m.tool_id is not None)
        ]
    if isinstance(request, GetMaterialPage):
        q = request.query
        found = answer_materials(store, GetMaterials(tool_id=q.tool_id, loaded=q.loaded))
        page = [m for m in found if q.after is None or m.id > q.after][: q.limit + 1]
        return MaterialPage(page[: q.limit], len(found), len(page) > q.limit)
    if isinstance(request, SaveMaterials):
        for material, event in request.changed:
            store.materials[material.id] = material
            store.material_events.append(replace(event, seq=len(store.material_events) + 1))
            store.outbox.append(
                subject_row(
                    "material",
                    event.material_id,
                    materials.event_kind(event),
                    materials.event_dict((material, event)),
                    event.at,
                )
            )
        return None
    if isinstance(request, GetMaterialEvents):
        return [e for e in store.material_events if e.material_id == request.material_id]
    if isinstance(request, AddUses):
        for use in request.uses:  # as the SQL store: only of a lot not quarantined
            found = store.materials.get(use.material_id)
            if found is not None and found.quarantine is not None:
                raise quarantined_meanwhile(use.material_id)
        store.material_uses.extend(request.uses)
        return None
    if isinstance(request, GetUses):
        return [
            u
            for u in store.material_uses
            if request.material_id in (None, u.material_id)
            and (request.lot_ids is None or u.lot_id in request.lot_ids)
        ]
    raise TypeError(f"not a material store request: {request!r}")


def answer_reasons(store: MemoryStore, request: ReasonRequest) -> Any:
    """What a store answers to a reason-code request (:data:`mes.ports.Work`)."""
    if isinstance(request, GetReasonCodes):
        return [
            r
            for code, r in sorted(store.reason_codes.items())
            if request.codes is None or code in request.codes
        ]
    if isinstance(request, SaveReasonCode):
        store.reason_codes[request.code.code] = request.code
        return None
    raise TypeError(f"not a reason-code store request: {request!r}")


def answer_spc(store: MemoryStore, request: SpcRequest) -> Any:
    """What a store answers to an SPC request (:data:`mes.ports.Work`)."""
    if isinstance(request, GetCharts) and request.running_lot is not None:
        tool, on = _running(store, request.running_lot)
        return [
            c for (s, _, t), c in sorted(store.spc_charts.items()) if tool and (s, t) == (on, tool)
        ]
    if isinstance(request, GetCharts):
        return [
            c
            for (step, value, tool), c in sorted(store.spc_charts.items())
            if request.step in (None, step)
            and request.tool_id in (None, tool)
            and request.value in (None, value)
        ]
    if isinstance(request, SaveChart):
        ch = request.chart
        store.spc_charts[(ch.step, ch.value, ch.tool_id)] = ch
        return None
    if isinstance(request, GetPoints):
        mine = [
            p
            for p in store.spc_points
            if (p.step, p.value, p.tool_id) == (request.step, request.value, request.tool_id)
        ]
        return mine if request.last is None else mine[-request.last :]
    if isinstance(request, CountPoints):
        key = (request.step, request.value, request.tool_id)
        return sum(1 for p in store.spc_points if (p.step, p.value, p.tool_id) == key)
    if isinstance(request, AddPoints):
        store.spc_points.extend(request.points)
        return None
    raise TypeError(f"not an SPC store request: {request!r}")


def answer_security(store: MemoryStore, request: SecurityRequest) -> Any:
    if isinstance(request, AppendSecurityEvent):
        append_event(store, request.event)
        return None
    raise TypeError(f"not a security log request: {request!r}")


def append_event(store: MemoryStore, event: SecurityEvent) -> None:
    """Append ``event`` to the store's security log, chained as the SQL stores chain it
    (the request's origin is the service's to add: the memory store serves no requests)."""
    event = replace(event, seq=len(store.security_events) + 1)
    store.security_head = event_hash(event, store.security_head)
    store.security_events.append(event)
