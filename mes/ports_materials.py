"""The material lots' seams (part of :mod:`mes.ports`): what the service layer reads and
writes of material lots, their history and their uses in product lots, as requests a
transaction's :data:`mes.ports.Work` yields."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from mes.domain.materials import Changed, Material, MaterialEvent, Use


@dataclass(frozen=True, slots=True)
class GetMaterials:
    """Read material lots: those of ``material_ids``, or those loaded on ``tool_id``, or
    those loaded on any tool (``loaded``), or (none of these given) all (answer:
    ``list[Material]``, by id; one statement)."""

    material_ids: tuple[str, ...] | None = None
    tool_id: str | None = None
    loaded: bool = False


@dataclass(frozen=True, slots=True)
class MaterialQuery:
    """Which material lots a list shows, and which page of them: ordered by id, from the
    material lot after ``after`` (an id, the last of the page before) on, at most ``limit``
    of them. The filters are applied by the store (in SQL), none after."""

    tool_id: str | None = None
    """Only those loaded on this tool."""
    loaded: bool = False
    """Only those loaded on a tool (not the shelf's)."""
    after: str | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class MaterialPage:
    """One page of a material lot list: the lots, how many match the filters in all, and
    whether more follow the page (ask again with ``after`` = the last one's id)."""

    materials: list[Material]
    total: int
    more: bool


@dataclass(frozen=True, slots=True)
class GetMaterialPage:
    """Read one page of material lots (answer: :class:`MaterialPage`; two statements, the
    page and its count)."""

    query: MaterialQuery


@dataclass(frozen=True, slots=True)
class SaveMaterials:
    """Write material lots and the events that changed them: an ``added`` one is inserted,
    the others updated (answer: None)."""

    changed: tuple[Changed, ...]


@dataclass(frozen=True, slots=True)
class GetMaterialEvents:
    """Read a material lot's history, oldest first (answer: ``list[MaterialEvent]``)."""

    material_id: str


@dataclass(frozen=True, slots=True)
class AddUses:
    """Record material lots gone into product lots (answer: None). Each use only while its
    material lot is not quarantined, checked as it is written: a quarantine committed after
    the track-in read the tool's material lots refuses it (ConcurrentUpdate, nothing
    written), one not committed yet comes after it."""

    uses: tuple[Use, ...]


@dataclass(frozen=True, slots=True)
class GetUses:
    """Read the uses of a material lot, or in some product lots (answer: ``list[Use]``,
    oldest first)."""

    material_id: str | None = None
    lot_ids: tuple[str, ...] | None = None


MaterialRequest: TypeAlias = (
    GetMaterials | GetMaterialPage | SaveMaterials | GetMaterialEvents | AddUses | GetUses
)


def get_materials(
    material_ids: Sequence[str] | None = None,
    *,
    tool_id: str | None = None,
    loaded: bool = False,
) -> Generator[MaterialRequest, Any, list[Material]]:
    ids = None if material_ids is None else tuple(material_ids)
    found: list[Material] = yield GetMaterials(ids, tool_id, loaded)
    return found


def get_material_page(query: MaterialQuery) -> Generator[MaterialRequest, Any, MaterialPage]:
    found: MaterialPage = yield GetMaterialPage(query)
    return found


def save_materials(changed: Sequence[Changed]) -> Generator[MaterialRequest, Any, None]:
    if changed:
        yield SaveMaterials(tuple(changed))


def get_material_events(material_id: str) -> Generator[MaterialRequest, Any, list[MaterialEvent]]:
    found: list[MaterialEvent] = yield GetMaterialEvents(material_id)
    return found


def add_uses(uses: Sequence[Use]) -> Generator[MaterialRequest, Any, None]:
    if uses:
        yield AddUses(tuple(uses))


def get_uses(
    *, material_id: str | None = None, lot_ids: Sequence[str] | None = None
) -> Generator[MaterialRequest, Any, list[Use]]:
    ids = None if lot_ids is None else tuple(lot_ids)
    found: list[Use] = yield GetUses(material_id, ids)
    return found
