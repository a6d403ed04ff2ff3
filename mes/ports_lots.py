"""The reads of one lot that its report is made of: the lot, its carriers, rejected sites,
history, children and signatures (:mod:`mes.lot_reads` builds ``lot show``'s report from
them). Part of the lot tracker's seams (:mod:`mes.ports` re-exports them), kept apart so that
a short-lived reader needs no more than these (:mod:`mes.adapters.sqlite_reads`, the
standard-library reader of the direct-mode CLI).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias, TypeVar

from mes.domain.model import Carrier, HistoryEntry, Lot, SiteRef, SiteReject
from mes.domain.signature_records import Signature
from mes.domain.tool_state import ToolSnapshot, TrackInRefusal

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GetLot:
    """Read a lot (answer: ``Lot | None``)."""

    lot_id: str


@dataclass(frozen=True, slots=True)
class GetCarriers:
    """Read a lot's carriers (answer: ``list[Carrier]``, by position)."""

    lot_id: str


@dataclass(frozen=True, slots=True)
class GetRejects:
    """Read every rejected site of a lot's carriers (answer: ``list[SiteReject]``)."""

    lot_id: str


@dataclass(frozen=True, slots=True)
class GetHistory:
    """Read a lot's history in order, only the entries before ``before_seq`` when given
    (answer: ``list[HistoryEntry]``)."""

    lot_id: str
    before_seq: int | None = None


@dataclass(frozen=True, slots=True)
class GetHistoryAt:
    """Read the entries of a lot's history written at ``at`` (answer: ``list[HistoryEntry]``,
    in order): the entry that placed a hold, by the hold's time, without the rest. Not a
    request of a lot's report (:data:`LotRead`): the lot store answers it, a direct read
    does not (:func:`mes.lot_reads.hold_entries`)."""

    lot_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class GetHoldEntries:
    """Read the entries written at each of ``holds`` (lot id, the hold's time) in one query
    (answer: ``list[HistoryEntry]``, by lot and order): the entries that placed many lots'
    holds, for ``line status``, without a query per lot (:func:`mes.lot_reads.hold_placers`).
    Not a request of a lot's report."""

    holds: tuple[tuple[str, datetime], ...]


@dataclass(frozen=True, slots=True)
class GetChildren:
    """Read the ids of the lots split from a lot (answer: ``list[str]``)."""

    lot_id: str


@dataclass(frozen=True, slots=True)
class GetSignatures:
    """Read the signatures of some lots' history entries, in the order they were written
    (answer: ``list[Signature]``)."""

    lot_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GetToolState:
    """Read what is known of a tool now: connected or not, its E10 and process state, and why
    (answer: ``ToolSnapshot | None``, None: no such tool). For a running lot's tool."""

    tool_id: str


@dataclass(frozen=True, slots=True)
class GetRefusals:
    """Read what the line controllers recorded, at their last heartbeat, of their refused
    track-ins of a lot (answer: ``list[TrackInRefusal]``, by step then tool). For a waiting
    lot: why no controller has started it."""

    lot_id: str


LotRead: TypeAlias = (
    GetLot
    | GetCarriers
    | GetRejects
    | GetHistory
    | GetChildren
    | GetSignatures
    | GetToolState
    | GetRefusals
)
"""The requests of a lot's report, a part of :data:`mes.ports.Request`."""

Read: TypeAlias = Generator[LotRead, Any, T]
"""Work that only reads a lot's report (:data:`mes.ports.Work` that yields these alone)."""


def get_lot(lot_id: str) -> Read[Lot | None]:
    found: Lot | None = yield GetLot(lot_id)
    return found


def get_carriers(lot_id: str) -> Read[list[Carrier]]:
    found: list[Carrier] = yield GetCarriers(lot_id)
    return found


def get_rejects(lot_id: str) -> Read[list[SiteReject]]:
    found: list[SiteReject] = yield GetRejects(lot_id)
    return found


def get_rejects_by_site(lot_id: str) -> Read[dict[SiteRef, SiteReject]]:
    """The lot's rejected sites, by site."""
    return {r.site: r for r in (yield from get_rejects(lot_id))}


def get_history(lot_id: str, *, before_seq: int | None = None) -> Read[list[HistoryEntry]]:
    found: list[HistoryEntry] = yield GetHistory(lot_id, before_seq)
    return found


def get_children(lot_id: str) -> Read[list[str]]:
    found: list[str] = yield GetChildren(lot_id)
    return found


def get_signatures(lot_ids: Sequence[str]) -> Read[list[Signature]]:
    found: list[Signature] = yield GetSignatures(tuple(lot_ids))
    return found


def get_tool_state(tool_id: str) -> Read[ToolSnapshot | None]:
    found: ToolSnapshot | None = yield GetToolState(tool_id)
    return found


def get_refusals(lot_id: str) -> Read[list[TrackInRefusal]]:
    found: list[TrackInRefusal] = yield GetRefusals(lot_id)
    return found


def refusals_of_lot(
    lot_id: str, controllers_refusals: Sequence[Sequence[TrackInRefusal]]
) -> list[TrackInRefusal]:
    """``lot_id``'s refusals among every controller's (:class:`GetRefusals`'s answer)."""
    found = [r for refusals in controllers_refusals for r in refusals if r.lot == lot_id]
    return sorted(found, key=lambda r: (r.step, r.tool))
