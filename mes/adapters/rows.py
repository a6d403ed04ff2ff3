"""Rows of the lot tables to domain values and back, with nothing of SQLAlchemy: the SQL
store's statements (:mod:`mes.adapters.sql_rows`, :mod:`mes.adapters.sql_plans`) and the
standard-library reader of SQLite (:mod:`mes.adapters.sqlite_reads`) share them. A row here
is its columns' values with their types applied (timestamps aware, JSON decoded)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from mes.domain.model import (
    Carrier,
    HistoryEntry,
    Hold,
    HoldSource,
    JobRecord,
    JobStatus,
    Lot,
    LotState,
    Operation,
    RunningStep,
    SiteReject,
)
from mes.domain.signature_records import Signature, SignatureMethod
from mes.domain.tool_state import ToolSnapshot


def iso(value: datetime) -> str:
    return value.isoformat()


def running_json(r: RunningStep | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "step": r.step,
        "tool": r.tool,
        "values": dict(r.values),
        "since": iso(r.since),
        "user": r.user,
    } | ({"by_hand": True} if r.by_hand else {})


def hold_json(h: Hold | None) -> dict[str, Any] | None:
    if h is None:
        return None
    out = {"reason": h.reason, "user": h.user, "since": iso(h.since), "source": h.source.value}
    return out | ({"code": h.code} if h.code is not None else {})


def lot_values(lot: Lot) -> dict[str, Any]:
    return {
        "flow": lot.flow,
        "flow_version": lot.flow_version,
        "state": lot.state.value,
        "priority": lot.priority,
        "params": dict(lot.params),
        "site_rows": lot.site_rows,
        "site_cols": lot.site_cols,
        "total_sites": lot.total_sites,
        "good_sites": lot.good_sites,
        "units": lot.units,
        "path": list(lot.path),
        "recorded": dict(lot.recorded),
        "running": running_json(lot.running),
        "hold": hold_json(lot.hold),
        "rework_counts": dict(lot.rework_counts),
        "pending_rework": lot.pending_rework,
        "parent_id": lot.parent_id,
        "created_at": lot.created_at,
        "updated_at": lot.updated_at,
        "created_by": lot.created_by,
        "version": lot.version,
        "history_head": lot.history_head,
    }


def lot_from_row(m: Mapping[str, Any], carrier_ids: tuple[str, ...]) -> Lot:
    running = m["running"]
    hold = m["hold"]
    return Lot(
        id=m["id"],
        flow=m["flow"],
        flow_version=m["flow_version"],
        state=LotState(m["state"]),
        params=m["params"],
        priority=m["priority"],
        site_rows=m["site_rows"],
        site_cols=m["site_cols"],
        carriers=carrier_ids,
        total_sites=m["total_sites"],
        good_sites=m["good_sites"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        created_by=m["created_by"],
        path=tuple(m["path"]),
        running=None
        if running is None
        else RunningStep(
            step=running["step"],
            tool=running["tool"],
            values=running["values"],
            since=datetime.fromisoformat(running["since"]),
            user=running["user"],
            by_hand=running.get("by_hand", False),
        ),
        hold=None
        if hold is None
        else Hold(
            reason=hold["reason"],
            user=hold["user"],
            since=datetime.fromisoformat(hold["since"]),
            source=HoldSource(hold["source"]),
            code=hold.get("code"),
        ),
        recorded=m["recorded"],
        rework_counts=m["rework_counts"],
        pending_rework=m["pending_rework"],
        units=m["units"],
        parent_id=m["parent_id"],
        version=m["version"],
        history_head=m["history_head"],
    )


def entry_from_row(m: Mapping[str, Any]) -> HistoryEntry:
    """A history entry as stored (its row's values, SQLAlchemy's types applied)."""
    return HistoryEntry(
        lot_id=m["lot_id"],
        operation=Operation(m["operation"]),
        user=m["user"],
        at=m["at"],
        state_before=LotState(m["state_before"]) if m["state_before"] else None,
        state_after=LotState(m["state_after"]),
        step=m["step"],
        tool=m["tool"],
        reason=m["reason"],
        data=m["data"],
        seq=m["seq"],
        by=m["by"],
        auth=m["auth"],
        prev_hash=m["prev_hash"],
        hash=m["hash"],
    )


def job_values(job: JobRecord) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "lot_id": job.lot_id,
        "tool_id": job.tool_id,
        "step": job.step,
        "path_index": job.path_index,
        "carrier_id": job.carrier_id,
        "status": job.status.value,
        "started_at": job.started_at,
        "recorded_at": job.recorded_at,
        "measured": dict(job.measured),
        "rejects": [
            {"carrier_id": r.carrier_id, "row": r.row, "col": r.col, "code": r.code}
            for r in job.rejects
        ],
        "tool_data": dict(job.tool_data),
    }


def job_from_row(m: Mapping[str, Any]) -> JobRecord:
    return JobRecord(
        job_id=m["job_id"],
        lot_id=m["lot_id"],
        tool_id=m["tool_id"],
        step=m["step"],
        path_index=m["path_index"],
        carrier_id=m["carrier_id"],
        status=JobStatus(m["status"]),
        started_at=m["started_at"],
        recorded_at=m["recorded_at"],
        measured=m["measured"],
        rejects=tuple(
            SiteReject(r["carrier_id"], r["row"], r["col"], r["code"], m["step"], m["path_index"])
            for r in m["rejects"]
        ),
        tool_data=m["tool_data"],
    )


def group_lots(rows: Sequence[Mapping[str, Any]]) -> dict[str, Lot]:
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["id"], []).append(row)
    return {
        lot_id: lot_from_row(
            group[0], tuple(r["carrier_id"] for r in group if r["carrier_id"] is not None)
        )
        for lot_id, group in grouped.items()
    }


def history_values(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "lot_id": entry.lot_id,
        "at": entry.at,
        "user": entry.user,
        "operation": entry.operation.value,
        "state_before": entry.state_before.value if entry.state_before else None,
        "state_after": entry.state_after.value,
        "step": entry.step,
        "tool": entry.tool,
        "reason": entry.reason,
        "data": dict(entry.data),
        "by": entry.by,
        "auth": entry.auth,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def carrier_from_row(m: Mapping[str, Any]) -> Carrier:
    return Carrier(m["id"], m["lot_id"], m["position"], m["rows"], m["cols"])


def reject_from_row(m: Mapping[str, Any]) -> SiteReject:
    return SiteReject(m["carrier_id"], m["row"], m["col"], m["code"], m["step"], m["path_index"])


def signature_from_row(m: Mapping[str, Any]) -> Signature:
    return Signature(
        lot_id=m["lot_id"],
        signer=m["signer"],
        printed_name=m["printed_name"],
        meaning=m["meaning"],
        at=m["at"],
        method=SignatureMethod(m["method"]),
        entry_hash=m["entry_hash"],
        seq=m["seq"],
    )


def tool_snapshot_from_row(m: Mapping[str, Any]) -> ToolSnapshot:
    """What is known of a tool now, from its row in ``tools``."""
    return ToolSnapshot(
        connected=bool(m["connected"]),
        e10=m["e10"],
        process_state=m["process_state"],
        mode=m["mode"],
        alarm=m["alarm"],
        job_id=m["job_id"],
        lot_id=m["lot_id"],
        sites_done=m["sites_done"],
        sites_total=m["sites_total"],
        reason=m["reason"],
    )
