"""A material lot's reach through splits and merges: genealogy (what went into a product
lot) and the recall query (which product lots got a material lot). Pure rules, no I/O; the
uses they read are recorded at track-ins (:mod:`mes.domain.materials`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from mes.domain.materials import Use
from mes.domain.model import HistoryEntry, LotState, Operation


@dataclass(frozen=True, slots=True)
class Link:
    """A lot's edge to another in its history: ``split_from`` (its parent, at the split),
    ``split`` (a child split off it), ``merged`` (a lot merged into it), ``merged_into``."""

    kind: str
    other: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Source:
    """A material lot that went into a product lot: how (``via``: the lots it came through,
    from the one it was used in to the lot asked about)."""

    use: Use
    via: tuple[str, ...]


_LINKS = {
    Operation.SPLIT_FROM: ("split_from", "parent"),
    Operation.SPLIT: ("split", "child"),
    Operation.MERGE: ("merged", "merged"),
    Operation.MERGE_INTO: ("merged_into", "into"),
}


def links_of(history: Sequence[HistoryEntry]) -> list[Link]:
    """A lot's splits and merges, from its history."""
    found: list[Link] = []
    for entry in history:
        known = _LINKS.get(entry.operation)
        if known is not None and entry.data.get(known[1]):
            found.append(Link(known[0], str(entry.data[known[1]]), entry.at))
    return found


UPSTREAM = frozenset({"split_from", "merged"})
DOWNSTREAM = frozenset({"split", "merged_into"})


def genealogy(
    lot_id: str, links: Mapping[str, Sequence[Link]], uses: Mapping[str, Sequence[Use]]
) -> list[Source]:
    """Every material lot that went into ``lot_id``: its own uses, its parent's before it
    was split off, and those of the lots merged into it before they were (recursively).
    ``links`` and ``uses`` hold each lot reached (through :data:`UPSTREAM` links)."""
    found: dict[Use, Source] = {}
    seen: set[tuple[str, datetime | None]] = set()

    def walk(lot: str, until: datetime | None, via: tuple[str, ...]) -> None:
        if (lot, until) in seen:
            return
        seen.add((lot, until))
        for use in uses.get(lot, ()):
            known = found.get(use)
            if (until is None or use.at <= until) and (known is None or len(via) < len(known.via)):
                found[use] = Source(use, via)  # a lot split off and merged back: once
        for link in links.get(lot, ()):
            if until is not None and link.at > until:
                continue
            if link.kind in UPSTREAM:
                walk(link.other, link.at, (link.other, *via))

    walk(lot_id, None, (lot_id,))
    return sorted(found.values(), key=lambda s: (s.use.at, s.use.material_id, s.use.lot_id))


@dataclass(frozen=True, slots=True)
class Reached:
    """A lot a material lot went into: directly (``via`` is just the lot) or through splits
    and merges from the lot it was used in."""

    lot_id: str
    since: datetime
    via: tuple[str, ...]
    state: LotState | None = None
    """Where the lot is now (filled in by the service, for a recall: which lots are still
    on the line to hold, which have left it)."""
    step: str | None = None


def where_used(
    material_id: str, uses: Sequence[Use], links: Mapping[str, Sequence[Link]]
) -> list[Reached]:
    """Every product lot that got ``material_id``: those it was used in, the lots split off
    them after the use, and those they were merged into after it (recursively). ``links``
    holds each lot reached."""
    reached: dict[str, Reached] = {}

    def walk(lot: str, since: datetime, via: tuple[str, ...]) -> None:
        known = reached.get(lot)
        if known is not None and known.since <= since:
            return
        reached[lot] = Reached(lot, since, via)
        for link in links.get(lot, ()):
            if link.at >= since and link.kind in DOWNSTREAM:
                walk(link.other, link.at, (*via, link.other))

    for use in sorted(uses, key=lambda u: u.at):
        if use.material_id == material_id:
            walk(use.lot_id, use.at, (use.lot_id,))
    return sorted(reached.values(), key=lambda r: (r.since, r.lot_id))
