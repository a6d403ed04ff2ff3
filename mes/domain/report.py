"""What ``lot show`` tells: a lot's state and position, its carriers' site maps, yields per
step, and the path reconstructed from its history. Pure functions over loaded values.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flows import Flow, Value
from mes.domain.common import position_of
from mes.domain.model import (
    SCRAP_STEP,
    Carrier,
    HistoryEntry,
    Lot,
    LotState,
    Operation,
    SiteReject,
)
from mes.domain.signature_records import Signature
from mes.domain.tool_state import ToolSnapshot, TrackInRefusal

if TYPE_CHECKING:
    from mes.domain.material_quarantine import QuarantinedInput


@dataclass(frozen=True, slots=True)
class StepYield:
    path_index: int
    step: str
    sites_in: int
    rejected: int

    @property
    def yield_pct(self) -> float | None:
        if self.sites_in == 0:
            return None
        return 100.0 * (self.sites_in - self.rejected) / self.sites_in


@dataclass(frozen=True, slots=True)
class CarrierMap:
    carrier: Carrier
    rejects: tuple[SiteReject, ...]
    scrapped: bool = False
    """The lot was scrapped whole: its carriers stay on record, none of their sites is good."""

    @property
    def good_sites(self) -> int:
        if self.scrapped:
            return 0
        return self.carrier.rows * self.carrier.cols - len(self.rejects)

    def grid(self) -> list[list[str | None]]:
        """Rows of sites (1-based positions map to [row-1][col-1]): None good, else the code."""
        cells: list[list[str | None]] = [
            [None] * self.carrier.cols for _ in range(self.carrier.rows)
        ]
        for r in self.rejects:
            cells[r.row - 1][r.col - 1] = r.code
        return cells


@dataclass(frozen=True, slots=True)
class PathStep:
    """A step the lot completed, as its history tells it."""

    path_index: int
    step: str
    tool: str | None
    user: str
    at: str
    measured: Mapping[str, Value]
    rejects: int


@dataclass(frozen=True, slots=True)
class LotReport:
    lot: Lot
    next_steps: tuple[str, ...]
    """The steps the lot may take now (a waiting lot's; empty in any other state)."""
    may_complete: bool
    layer: int | None
    layers: int | None
    carriers: tuple[CarrierMap, ...]
    yields: tuple[StepYield, ...]
    path: tuple[PathStep, ...]
    history: tuple[HistoryEntry, ...]
    children: tuple[str, ...]
    signatures: tuple[Signature, ...] = ()
    """The electronic signatures of the history's entries, oldest first."""
    tool_state: ToolSnapshot | None = None
    """What is known now of the tool the lot runs on (None: not running on a tool, or no
    such tool): whether its controller is connected to it, and its state."""
    refused: tuple[TrackInRefusal, ...] = ()
    """A waiting lot: the line controllers' refused track-ins of it at its next steps, as
    recorded at their last heartbeat (by step, then tool): why no controller started it."""
    next_after_release: tuple[str, ...] = ()
    """A held lot: the steps it may take once released (:func:`offered_steps`); empty when
    it is not held."""
    quarantined: tuple[QuarantinedInput, ...] = ()
    """The material lots it got (its genealogy) that are quarantined now: while they are,
    its release and rework are for the roles their quarantines' codes name."""

    def signed_entry(self, signature: Signature) -> HistoryEntry | None:
        """The history entry a signature signs (None: not in this history)."""
        return next((e for e in self.history if e.hash == signature.entry_hash), None)


def step_yields(lot: Lot, rejects: Sequence[SiteReject]) -> tuple[StepYield, ...]:
    """Yield of every step in the lot's path: sites that came in good, and how many it rejected.

    Sites scrapped by hand between two steps count against neither step: they simply do not
    come in to the next one."""
    rejected_at: Counter[int] = Counter()
    scrapped_before: Counter[int] = Counter()
    for r in rejects:
        if r.step == SCRAP_STEP:
            scrapped_before[r.path_index] += 1
        else:
            rejected_at[r.path_index] += 1
    out: list[StepYield] = []
    gone = 0
    for index, step in enumerate(lot.path):
        gone += scrapped_before[index]
        sites_in = lot.total_sites - gone
        out.append(StepYield(index, step, sites_in, rejected_at[index]))
        gone += rejected_at[index]
    return tuple(out)


def reconstruct_path(history: Sequence[HistoryEntry]) -> tuple[PathStep, ...]:
    """Replay history: every track-out adds a step; a rework cuts the path back."""
    path: list[PathStep] = []
    for entry in history:
        if entry.operation is Operation.TRACK_OUT and entry.step is not None:
            data = entry.data
            index = int(data.get("path_index", len(path)))
            del path[index:]
            path.append(
                PathStep(
                    path_index=index,
                    step=entry.step,
                    tool=entry.tool,
                    user=entry.user,
                    at=entry.at.isoformat(),
                    measured=dict(data.get("measured", {})),
                    rejects=len(data.get("rejects", [])),
                )
            )
        elif entry.operation is Operation.REWORK:
            del path[int(entry.data.get("path_index", len(path))) :]
    return tuple(path)


def hold_entry(lot: Lot, history: Sequence[HistoryEntry]) -> HistoryEntry | None:
    """The history entry that put ``lot`` on its current hold: its ``by`` and ``auth`` say who
    placed it and how they were known (a person, the line controller, a system's API key),
    where the hold keeps only the name the command was given. The last entry that took a lot
    into HOLD at the hold's time (an ancestor's, for a lot split off while held: ``history``
    as ``lot show`` reads it); None when it is not held or ``history`` has none."""
    if lot.hold is None:
        return None
    since = lot.hold.since
    return next(
        (
            e
            for e in reversed(history)
            if e.at == since
            and e.state_after is LotState.HOLD
            and e.state_before is not e.state_after
        ),
        None,
    )


def offered_steps(lot: Lot, following: frozenset[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(next steps, next steps once released) of a lot whose position offers ``following``
    (:func:`mes.domain.common.position_of`), each sorted: a waiting lot may take them now, a
    held lot once released (a release leaves it where it was: the reworked step it must run,
    or the step its hold interrupted, for the carriers not done there). Empty otherwise, and
    for a held lot at the end of its flow, which a release completes."""
    steps = tuple(sorted(following))
    if lot.state is LotState.WAITING:
        return steps, ()
    if lot.state is LotState.HOLD:
        return (), steps
    return (), ()


def next_after_release(lot: Lot, flow: Flow) -> tuple[str, ...]:
    """The steps a held lot may take once released, sorted (:func:`offered_steps`); empty
    when it is not held."""
    return offered_steps(lot, position_of(lot, flow)[0])[1]


def build_report(
    lot: Lot,
    flow: Flow,
    carriers: Sequence[Carrier],
    rejects: Sequence[SiteReject],
    history: Sequence[HistoryEntry],
    children: Sequence[str] = (),
    signatures: Sequence[Signature] = (),
    tool_state: ToolSnapshot | None = None,
    refused: Sequence[TrackInRefusal] = (),
) -> LotReport:
    by_carrier: dict[str, list[SiteReject]] = defaultdict(list)
    for r in rejects:
        by_carrier[r.carrier_id].append(r)
    following, may_end, layer, layers = position_of(lot, flow)
    hashes = {e.hash for e in history}
    waiting = lot.state is LotState.WAITING
    next_now, once_released = offered_steps(lot, following)
    return LotReport(
        lot=lot,
        next_steps=next_now,
        may_complete=waiting and may_end,
        layer=layer,
        layers=layers,
        carriers=tuple(
            CarrierMap(
                c,
                tuple(sorted(by_carrier[c.id], key=lambda r: (r.row, r.col))),
                scrapped=lot.state is LotState.SCRAPPED,
            )
            for c in sorted(carriers, key=lambda c: c.position)
        ),
        yields=step_yields(lot, rejects),
        path=reconstruct_path(history),
        history=tuple(history),
        children=tuple(children),
        signatures=tuple(s for s in signatures if s.entry_hash in hashes),
        tool_state=tool_state,
        # a refusal at a step the lot is no longer offered (it moved on since) is not why
        refused=tuple(r for r in refused if r.step in following) if waiting else (),
        next_after_release=once_released,
    )


def _tool_state_dict(state: ToolSnapshot | None) -> dict[str, Any] | None:
    """The running lot's tool as its controller last knew it: ``connected`` false means what
    it reported last is on record, not what it does now."""
    if state is None:
        return None
    return {
        "connected": state.connected,
        "e10": state.e10,
        "process_state": state.process_state,
        "reason": state.reason,
    }


def report_dict(report: LotReport) -> dict[str, Any]:
    """The JSON form of ``lot show`` (a contract: scripts read it)."""
    lot = report.lot
    return {
        "id": lot.id,
        "flow": lot.flow,
        "flow_version": lot.flow_version,
        "state": lot.state.value,
        "step": lot.step,
        "next_steps": list(report.next_steps),
        "next_after_release": list(report.next_after_release),
        "may_complete": report.may_complete,
        "layer": report.layer,
        "layers": report.layers,
        "priority": lot.priority,
        "params": dict(lot.params),
        "units": lot.units,
        "good_sites": lot.good_sites,
        "total_sites": lot.total_sites,
        "yield_pct": round(100.0 * lot.good_sites / lot.total_sites, 2)
        if lot.total_sites
        else None,
        "running": None
        if lot.running is None
        else {
            "step": lot.running.step,
            "tool": lot.running.tool,
            "since": lot.running.since.isoformat(),
            "user": lot.running.user,
            "values": dict(lot.running.values),
            "by_hand": lot.running.by_hand,
            "tool_state": _tool_state_dict(report.tool_state),
        },
        "hold": None
        if lot.hold is None
        else {
            "reason": lot.hold.reason,
            "user": lot.hold.user,
            "since": lot.hold.since.isoformat(),
            "source": lot.hold.source.value,
            "code": lot.hold.code,
            **_placed_by(lot, report.history),
        },
        "quarantined_materials": [q.to_dict() for q in report.quarantined],
        "pending_rework": lot.pending_rework,
        "rework_counts": dict(lot.rework_counts),
        "parent": lot.parent_id,
        "children": list(report.children),
        "created_at": lot.created_at.isoformat(),
        "updated_at": lot.updated_at.isoformat(),
        "version": lot.version,
        "carriers": [
            {
                "id": m.carrier.id,
                "position": m.carrier.position,
                "rows": m.carrier.rows,
                "cols": m.carrier.cols,
                "good_sites": m.good_sites,
                "rejects": [
                    {"row": r.row, "col": r.col, "code": r.code, "step": r.step} for r in m.rejects
                ],
            }
            for m in report.carriers
        ],
        "yields": [
            {
                "path_index": y.path_index,
                "step": y.step,
                "sites_in": y.sites_in,
                "rejected": y.rejected,
                "yield_pct": None if y.yield_pct is None else round(y.yield_pct, 2),
            }
            for y in report.yields
        ],
        "path": [
            {
                "path_index": p.path_index,
                "step": p.step,
                "tool": p.tool,
                "user": p.user,
                "at": p.at,
                "measured": dict(p.measured),
                "rejects": p.rejects,
            }
            for p in report.path
        ],
        "history": [history_dict(e) for e in report.history],
        "signatures": [signature_dict(s, report.signed_entry(s)) for s in report.signatures],
        "refused": [r.to_dict() for r in report.refused],
    }


def _placed_by(lot: Lot, history: Sequence[HistoryEntry]) -> dict[str, str | None]:
    """Who placed the lot's hold (``by``, ``auth``: :func:`hold_entry`), null where not
    known (the history entry from before revision 0004, or the lot tracker embedded)."""
    entry = hold_entry(lot, history)
    return {"by": entry.by if entry else None, "auth": entry.auth if entry else None}


def signature_dict(s: Signature, entry: HistoryEntry | None) -> dict[str, Any]:
    """A signature with the entry it signs (``lot show --json``, the API)."""
    return {
        "printed_name": s.printed_name,
        "signer": s.signer,
        "meaning": s.meaning,
        "at": s.at.isoformat(),
        "method": s.method.value,
        "lot": s.lot_id,
        "entry_hash": s.entry_hash,
        "entry_seq": entry.seq if entry else None,
        "operation": entry.operation.value if entry else None,
    }


def history_dict(e: HistoryEntry) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "lot": e.lot_id,
        "at": e.at.isoformat(),
        "user": e.user,
        "operation": e.operation.value,
        "event": e.event_kind,
        "state_before": e.state_before.value if e.state_before else None,
        "state_after": e.state_after.value,
        "step": e.step,
        "tool": e.tool,
        "reason": e.reason,
        "data": dict(e.data),
        "by": e.by,
        "auth": e.auth,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }


def summary_dict(lot: Lot, flow: Flow) -> dict[str, Any]:
    """A lot in one line of JSON: what ``lot list`` and every lot command print."""
    following, may_end, layer, layers = position_of(lot, flow)
    waiting = lot.state is LotState.WAITING
    next_now, once_released = offered_steps(lot, following)
    return {
        "id": lot.id,
        "flow": lot.flow,
        "flow_version": lot.flow_version,
        "state": lot.state.value,
        "step": lot.step,
        "next_steps": list(next_now),
        "next_after_release": list(once_released),
        "may_complete": waiting and may_end,
        "layer": layer,
        "layers": layers,
        "priority": lot.priority,
        "units": lot.units,
        "good_sites": lot.good_sites,
        "total_sites": lot.total_sites,
        "tool": lot.running.tool if lot.running else None,
        "hold_reason": lot.hold.reason if lot.hold else None,
        "pending_rework": lot.pending_rework,
        "parent": lot.parent_id,
        "updated_at": lot.updated_at.isoformat(),
        "version": lot.version,
    }


def outcome_dict(lot: Lot, entries: Sequence[HistoryEntry], flow: Flow) -> dict[str, Any]:
    """What every lot operation answers (``--json`` and the API): the lot as it now is and
    the history entries the operation wrote."""
    return {**summary_dict(lot, flow), "recorded": [history_dict(e) for e in entries]}
