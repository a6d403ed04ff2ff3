"""Consumable material lots and their clocks: mold compound, die attach film and adhesive,
solder balls, wire. Pure rules, no I/O.

A material lot is added with its expiry; the frozen kinds (mold compound, die attach film,
adhesive) also with the time they need to thaw once out of the freezer and their floor life
after that (line practice, defaults in :data:`KINDS`, set per lot with ``add``). It is thawed
(taken out of the freezer: ``thaw``), loaded on a tool of its kind's class (one of a kind per
tool) and unloaded. Quality may quarantine it (:mod:`mes.domain.material_quarantine`). A
track-in on a tool with a material loaded that is quarantined, expired, not yet thawed, or
past its floor life is refused (:func:`check_materials`); an accepted track-in
records the material lots loaded on the tool as gone into the product lot (:class:`Use`),
which genealogy and the recall query (:mod:`mes.domain.material_reach`) read through
splits and merges.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from mes.domain.errors import InterlockRefused, InvalidInput, OperationNotAllowed, RecordExists
from mes.domain.model import Lot
from mes.domain.signature_records import Signature
from mes.domain.text import optional_line, utc_stamp

if TYPE_CHECKING:
    from mes.domain.authority import Principal


class MaterialKind(StrEnum):
    MOLD_COMPOUND = "mold_compound"
    DIE_ATTACH_FILM = "die_attach_film"
    ADHESIVE = "adhesive"
    SOLDER_BALLS = "solder_balls"
    WIRE = "wire"


@dataclass(frozen=True, slots=True)
class MaterialSpec:
    equipment_class: str
    frozen: bool
    """Kept in a freezer: thawed before use, with a floor life after."""
    thaw: timedelta = timedelta()
    """Default: the least time out of the freezer before it may be used."""
    floor_life: timedelta | None = None
    """Default: how long it may be used once out of the freezer."""


KINDS: dict[MaterialKind, MaterialSpec] = {
    MaterialKind.MOLD_COMPOUND: MaterialSpec(
        "molder", True, timedelta(hours=4), timedelta(hours=72)
    ),
    MaterialKind.DIE_ATTACH_FILM: MaterialSpec(
        "die_bonder", True, timedelta(hours=1), timedelta(hours=168)
    ),
    MaterialKind.ADHESIVE: MaterialSpec(
        "die_bonder", True, timedelta(hours=1), timedelta(hours=48)
    ),
    MaterialKind.SOLDER_BALLS: MaterialSpec("ball_mounter", False),
    MaterialKind.WIRE: MaterialSpec("wire_bonder", False),
}
"""The kinds of material lots (line practice: the defaults are typical supplier data; a
material lot's own are given when it is added)."""

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
MAX_CLOCK_MINUTES = 1_000_000
PART_NUMBER_MAX = 64
"""What the store keeps of a part number (``material_lots.part_number``, String(64))."""
"""The longest thaw time or floor life a material lot may be given (about 694 days; the
API's bound too)."""


class MaterialEventKind(StrEnum):
    ADDED = "added"
    THAWED = "thawed"
    LOADED = "loaded"
    UNLOADED = "unloaded"
    QUARANTINED = "quarantined"
    RELEASED = "released"
    """Out of quarantine (:mod:`mes.domain.material_quarantine`)."""


@dataclass(frozen=True, slots=True)
class Quarantine:
    """A material lot quality stopped (a recall): with which hold reason code, why, by whom,
    since when (:mod:`mes.domain.material_quarantine`)."""

    code: str
    reason: str
    by: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Material:
    id: str
    kind: MaterialKind
    expires_at: datetime
    added_by: str
    added_at: datetime
    thaw_minutes: int = 0
    floor_life_minutes: int | None = None
    thawed_at: datetime | None = None
    """Out of the freezer at (frozen kinds)."""
    tool_id: str | None = None
    loaded_at: datetime | None = None
    part_number: str | None = None
    quarantine: Quarantine | None = None
    """Quarantined by quality: not loaded, no track-in with it on the tool."""
    version: int = 1
    """How many events its history has: every change bumps it (:func:`bumped`); a signed
    release names the version its signers saw (a replay is refused)."""

    @property
    def frozen(self) -> bool:
        return KINDS[self.kind].frozen

    @property
    def usable_from(self) -> datetime | None:
        """Thawed enough from (frozen kinds, once out of the freezer)."""
        if self.thawed_at is None:
            return None
        return self.thawed_at + timedelta(minutes=self.thaw_minutes)

    @property
    def floor_life_ends(self) -> datetime | None:
        if self.thawed_at is None or self.floor_life_minutes is None:
            return None
        return self.thawed_at + timedelta(minutes=self.floor_life_minutes)

    def problem(self, now: datetime) -> tuple[str, str, str] | None:
        """Why it may not be used at ``now``: (interlock, what is wrong, what is expected);
        None when it may."""
        if self.quarantine is not None:
            q = self.quarantine
            return (
                "material_quarantined",
                f"{self.kind.value} {self.id} is quarantined by {q.by} since "
                f"{utc_stamp(q.at)}: {q.reason}",
                f"{self.kind.value} {self.id} unloaded and replaced (pkgline material unload "
                f"{self.id}), or released by quality (pkgline material release {self.id})",
            )
        if now >= self.expires_at:
            return (
                "material_expired",
                f"{self.kind.value} {self.id} expired at {utc_stamp(self.expires_at)}",
                f"{self.kind.value} {self.id} replaced by a lot within its expiry",
            )
        if self.frozen and self.thawed_at is None:
            return (
                "material_not_thawed",
                f"{self.kind.value} {self.id} is still frozen (not thawed)",
                f"{self.id} out of the freezer at least {_hours(self.thaw_minutes)} before use "
                f"(pkgline material thaw {self.id})",
            )
        start, end = self.usable_from, self.floor_life_ends
        if start is not None and self.thawed_at is not None and now < start:
            return (
                "material_not_thawed",
                f"{self.kind.value} {self.id} is thawing since {utc_stamp(self.thawed_at)}, "
                f"usable from {utc_stamp(start)}",
                f"{self.id} thawed for {_hours(self.thaw_minutes)} (from {utc_stamp(start)})",
            )
        if end is not None and now >= end:
            return (
                "material_floor_life",
                f"{self.kind.value} {self.id} is past its floor life of "
                f"{_hours(self.floor_life_minutes or 0)} after thaw (ended {utc_stamp(end)})",
                f"{self.kind.value} {self.id} replaced by a lot within its floor life",
            )
        return None


def _hours(minutes: int) -> str:
    return f"{minutes / 60:g} h"


@dataclass(frozen=True, slots=True)
class MaterialEvent:
    material_id: str
    event: MaterialEventKind
    at: datetime
    by: str
    tool_id: str | None = None
    reason: str | None = None
    seq: int | None = None
    version: int | None = None
    """The material lot's version this event made it (None: written before revision 0029)."""
    signatures: tuple[Signature, ...] = ()
    """The electronic signatures of a release from quarantine (docs/security.md)."""
    principal: str | None = None
    """Who acted (the principal's name; ``by`` is the user the command named, free text) and
    how they were known (``auth``): kept for the event feed only (None: not recorded)."""
    auth: str | None = None


@dataclass(frozen=True, slots=True)
class Use:
    """A material lot gone into a product lot at a step (recorded at the track-in)."""

    material_id: str
    lot_id: str
    step: str
    tool_id: str
    at: datetime


Changed = tuple[Material, MaterialEvent]


def bumped(changed: Changed) -> Changed:
    """The change with the material lot's next version, on the lot and its event (an added
    lot is at version 1)."""
    material, event = changed
    version = 1 if event.event is MaterialEventKind.ADDED else material.version + 1
    return replace(material, version=version), replace(event, version=version)


def stamped(changed: Changed, who: Principal | None) -> Changed:
    """The change with its event saying who made it and how they were known (as a lot's
    history entries: :func:`mes.domain.common.stamped`)."""
    if who is None:
        return changed
    material, event = changed
    return material, replace(event, principal=who.name, auth=who.method.value)


def signed_event(changed: Changed, signatures: Sequence[Signature]) -> Changed:
    """The change with its event carrying ``signatures``, timed as the event is (one moment
    for the release and its signatures)."""
    material, event = changed
    timed = tuple(replace(s, at=event.at) for s in signatures)
    return material, replace(event, signatures=timed)


def event_kind(event: MaterialEvent) -> str:
    """The fact an event of a material lot's history is, for the event feed
    (``MaterialLoaded``)."""
    return f"Material{event.event.value.capitalize()}"


def event_dict(changed: Changed) -> dict[str, object]:
    """A material lot's history event as the outbox keeps it for the feed (docs/events.md,
    ``material-event``), with the material lot's clocks and quarantine as they stand after
    it, the version it made the material lot, and a release's signatures."""

    def iso(at: datetime | None) -> str | None:
        return at.isoformat() if at is not None else None

    material, event = changed
    q = material.quarantine
    return {
        "material": event.material_id,
        "material_kind": material.kind.value,
        "part_number": material.part_number,
        "event": event.event.value,
        "at": event.at.isoformat(),
        "user": event.by,
        "by": event.principal,
        "auth": event.auth,
        "tool": event.tool_id,
        "loaded_on": material.tool_id,
        "reason": event.reason,
        "expires_at": material.expires_at.isoformat(),
        "thawed_at": iso(material.thawed_at),
        "usable_from": iso(material.usable_from),
        "floor_life_ends": iso(material.floor_life_ends),
        "quarantine": None
        if q is None
        else {"code": q.code, "reason": q.reason, "by": q.by, "at": q.at.isoformat()},
        "version": event.version,
        "signatures": [s.manifest() for s in event.signatures],
    }


def add(
    material_id: str,
    kind: str,
    expires_at: datetime,
    by: str,
    now: datetime,
    *,
    existing: Material | None = None,
    thaw_minutes: int | None = None,
    floor_life_minutes: int | None = None,
    part_number: str | None = None,
) -> Changed:
    """A new material lot, frozen (frozen kinds) and on no tool. Refused, saying what is
    expected, for a bad or taken id, an unknown kind, an expiry already past, a thaw time or
    floor life below 0 (or 1 minute), or clocks given to a kind that has none."""
    if not _ID.fullmatch(material_id):
        raise InvalidInput(
            f"material lot id {material_id!r} is not valid: expected 1 to 32 ASCII letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    if existing is not None:
        raise RecordExists(f"material lot {material_id} exists already ({existing.kind.value})")
    try:
        known = MaterialKind(kind)
    except ValueError:
        raise InvalidInput(
            f"{kind!r} is not a kind of material; expected one of {', '.join(KINDS)}",
            allowed=list(KINDS),
        ) from None
    if expires_at.tzinfo is None:
        raise InvalidInput("the expiry must carry a time zone (for example 2027-01-31T00:00Z)")
    if expires_at <= now:
        raise InvalidInput(
            f"material lot {material_id} expired at {utc_stamp(expires_at)}; expected an "
            "expiry after now"
        )
    part_number = optional_line(part_number, "the part number")
    if part_number is not None and len(part_number) > PART_NUMBER_MAX:
        raise InvalidInput(
            f"the part number is at most {PART_NUMBER_MAX} characters (got "
            f"{len(part_number)}); expected the supplier's part number"
        )
    spec = KINDS[known]
    if not spec.frozen:
        if thaw_minutes or floor_life_minutes is not None:
            raise InvalidInput(
                f"{known.value} is not kept frozen: it has an expiry only, no thaw time or "
                "floor life"
            )
        material = Material(material_id, known, expires_at, by, now, part_number=part_number)
        return material, MaterialEvent(material_id, MaterialEventKind.ADDED, now, by)
    thaw = int(spec.thaw.total_seconds() // 60) if thaw_minutes is None else thaw_minutes
    floor = spec.floor_life
    floor_minutes = (
        int(floor.total_seconds() // 60)
        if floor_life_minutes is None and floor
        else floor_life_minutes
    )
    if not 0 <= thaw <= MAX_CLOCK_MINUTES:
        raise InvalidInput(
            f"the thaw time of {material_id} must be 0 to {MAX_CLOCK_MINUTES:,} min, not {thaw} min"
        )
    if floor_minutes is None or not 1 <= floor_minutes <= MAX_CLOCK_MINUTES:
        raise InvalidInput(
            f"the floor life of {material_id} must be at least 1 minute and at most "
            f"{MAX_CLOCK_MINUTES:,} min, not {floor_minutes} min"
        )
    if thaw >= floor_minutes:
        raise InvalidInput(
            f"material lot {material_id} would never be usable: its floor life "
            f"({_hours(floor_minutes)} after thaw) ends before its thaw time "
            f"({_hours(thaw)}) does; expected a floor life longer than the thaw time"
        )
    material = Material(
        material_id,
        known,
        expires_at,
        by,
        now,
        thaw_minutes=thaw,
        floor_life_minutes=floor_minutes,
        part_number=part_number,
    )
    return material, MaterialEvent(material_id, MaterialEventKind.ADDED, now, by)


def thaw(material: Material, by: str, now: datetime) -> Changed:
    """Out of the freezer now: its thaw time and floor life start."""
    if not material.frozen:
        raise OperationNotAllowed(
            f"{material.kind.value} {material.id} is not kept frozen; nothing to thaw"
        )
    if material.thawed_at is not None:
        raise OperationNotAllowed(
            f"material lot {material.id} was thawed at {utc_stamp(material.thawed_at)} "
            "already (a thawed lot is not frozen again)"
        )
    if now >= material.expires_at:
        raise OperationNotAllowed(
            f"material lot {material.id} expired at {utc_stamp(material.expires_at)}: an "
            "expired lot is not thawed (no track-in would take it); expected a lot within its "
            "expiry"
        )
    if now + timedelta(minutes=material.thaw_minutes) >= material.expires_at:
        raise OperationNotAllowed(
            f"material lot {material.id} expires at {utc_stamp(material.expires_at)}, "
            f"before its thaw time ({_hours(material.thaw_minutes)}) would end: a lot that "
            "would expire before it is usable is not thawed (no track-in would take it); "
            "expected a lot whose expiry is past its thaw time"
        )
    return replace(material, thawed_at=now), MaterialEvent(
        material.id, MaterialEventKind.THAWED, now, by, tool_id=material.tool_id
    )


def load(
    material: Material,
    tool_id: str,
    tool_class: str,
    on_tool: Sequence[Material],
    by: str,
    now: datetime,
) -> Changed:
    """Load it on a tool of its kind's class, where ``on_tool`` are loaded. Refused when it
    is loaded already, the class is not its kind's, the tool has one of its kind, or it is
    expired or past its floor life (one still thawing may be loaded: the track-in waits)."""
    spec = KINDS[material.kind]
    if material.tool_id is not None:
        raise OperationNotAllowed(
            f"material lot {material.id} is loaded on {material.tool_id} already; expected it "
            f"unloaded first (pkgline material unload {material.id})"
        )
    if tool_class != spec.equipment_class:
        raise InvalidInput(
            f"material lot {material.id} is {material.kind.value}, loaded on a "
            f"{spec.equipment_class}; {tool_id} is a {tool_class}"
        )
    same = [m for m in on_tool if m.kind is material.kind]
    if same:
        raise OperationNotAllowed(
            f"{tool_id} has {material.kind.value} {same[0].id} loaded; expected it unloaded "
            f"first (pkgline material unload {same[0].id})"
        )
    found = material.problem(now)
    if found is not None and found[0] != "material_not_thawed":
        raise OperationNotAllowed(f"{found[1]}; expected {found[2]}")
    loaded = replace(material, tool_id=tool_id, loaded_at=now)
    return loaded, MaterialEvent(material.id, MaterialEventKind.LOADED, now, by, tool_id=tool_id)


def uses_mid_run(loaded: Material, running: Sequence[Lot], now: datetime) -> list[Use]:
    """A material lot loaded on a tool while ``running`` lots run on it goes into them from
    now (a wire spool changed mid-lot): their uses, for genealogy and the recall query. It
    must be usable now, as a track-in would ask (no track-in checks it for these lots): one
    still thawing is refused while a lot runs on the tool."""
    tool_id = loaded.tool_id
    on_tool = [lot for lot in running if lot.running is not None and lot.running.tool == tool_id]
    if tool_id is None or not on_tool:
        return []
    found = loaded.problem(now)
    if found is not None:
        names = ", ".join(lot.id for lot in on_tool)
        raise OperationNotAllowed(
            f"lot {names} is running on {tool_id}, and material lot {loaded.id} loaded now "
            f"would go into it: {found[1]}; expected {found[2]}, or the lot tracked out first"
        )
    return [
        Use(loaded.id, lot.id, lot.running.step, tool_id, now) for lot in on_tool if lot.running
    ]


def unload(material: Material, by: str, now: datetime, reason: str | None = None) -> Changed:
    if material.tool_id is None:
        raise OperationNotAllowed(f"material lot {material.id} is not loaded on any tool")
    return replace(material, tool_id=None, loaded_at=None), MaterialEvent(
        material.id,
        MaterialEventKind.UNLOADED,
        now,
        by,
        tool_id=material.tool_id,
        reason=optional_line(reason, "the reason"),
    )


def check_materials(
    lot_id: str, step: str, tool_id: str, on_tool: Sequence[Material], now: datetime
) -> None:
    """Refuse a track-in of ``lot_id`` at ``step`` on ``tool_id`` (InterlockRefused
    ``material_quarantined``, ``material_expired``, ``material_not_thawed`` or
    ``material_floor_life``) if a material lot loaded on it may not be used now."""
    for material in on_tool:
        found = material.problem(now)
        if found is None:
            continue
        interlock, wrong, expected = found
        raise InterlockRefused(
            f"track-in of lot {lot_id} at {step} on {tool_id} refused: {wrong}; "
            f"expected {expected}",
            interlock=interlock,
            expected=expected,
            lot_id=lot_id,
        )
