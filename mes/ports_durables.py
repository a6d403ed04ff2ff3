"""The durables' seams (part of :mod:`mes.ports`): what the service layer reads and writes of
durables and their history, as requests a transaction's :data:`mes.ports.Work` yields."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from mes.domain.durables import Changed, Durable, DurableEvent, Mounted


@dataclass(frozen=True, slots=True)
class GetDurables:
    """Read durables: those of ``durable_ids``, or those mounted on ``tool_id``, or those
    mounted on any tool (``mounted``), or those mounted on the tool lot ``running_lot`` runs
    on (as its record says: none for a lot not running on a tool), or (none of these given)
    all of them (answer: ``list[Durable]``, by id). One statement whatever the number (a
    track-in reads its tool's in one query; a track-out its lot's tool's with the lot)."""

    durable_ids: tuple[str, ...] | None = None
    tool_id: str | None = None
    mounted: bool = False
    running_lot: str | None = None


@dataclass(frozen=True, slots=True)
class GetMounted:
    """Read the durables mounted on a tool with the tool's jobs not yet recorded, in one
    statement (answer: :class:`~mes.domain.durables.Mounted`; no durables, no jobs read)."""

    tool_id: str


@dataclass(frozen=True, slots=True)
class SaveDurables:
    """Write durables and the events that changed them: an ``added`` one is inserted, a
    ``used`` one has its count raised by the event's amount (in SQL, so two jobs counted at
    once both count), any other is written as it is (answer: None)."""

    changed: tuple[Changed, ...]


@dataclass(frozen=True, slots=True)
class GetDurableEvents:
    """Read the history of a durable, or the events that name a lot, oldest first (answer:
    ``list[DurableEvent]``)."""

    durable_id: str | None = None
    lot_id: str | None = None


@dataclass(frozen=True, slots=True)
class DurableQuery:
    """Which durables a list shows, and which page of them: ordered by id, from the durable
    after ``after`` (an id, the last of the page before) on, at most ``limit`` of them. The
    filters are applied by the store (in SQL), none after."""

    tool_id: str | None = None
    """Only those mounted on this tool."""
    mounted: bool = False
    """Only those mounted on a tool (not the shelf's)."""
    after: str | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class DurablePage:
    """One page of a durable list: the durables, how many match the filters in all, and
    whether more follow the page (ask again with ``after`` = the last one's id)."""

    durables: list[Durable]
    total: int
    more: bool


@dataclass(frozen=True, slots=True)
class GetDurablePage:
    """Read one page of durables (answer: :class:`DurablePage`; two statements, the page and
    its count)."""

    query: DurableQuery


DurableRequest: TypeAlias = (
    GetDurables | GetDurablePage | GetMounted | SaveDurables | GetDurableEvents
)


def get_durables(
    durable_ids: Sequence[str] | None = None,
    *,
    tool_id: str | None = None,
    mounted: bool = False,
    running_lot: str | None = None,
) -> Generator[DurableRequest, Any, list[Durable]]:
    ids = None if durable_ids is None else tuple(durable_ids)
    found: list[Durable] = yield GetDurables(ids, tool_id, mounted, running_lot)
    return found


def get_durable_page(query: DurableQuery) -> Generator[DurableRequest, Any, DurablePage]:
    found: DurablePage = yield GetDurablePage(query)
    return found


def get_mounted(tool_id: str) -> Generator[DurableRequest, Any, Mounted]:
    found: Mounted = yield GetMounted(tool_id)
    return found


def save_durables(changed: Sequence[Changed]) -> Generator[DurableRequest, Any, None]:
    if changed:
        yield SaveDurables(tuple(changed))


def get_durable_events(
    *, durable_id: str | None = None, lot_id: str | None = None
) -> Generator[DurableRequest, Any, list[DurableEvent]]:
    found: list[DurableEvent] = yield GetDurableEvents(durable_id, lot_id)
    return found
