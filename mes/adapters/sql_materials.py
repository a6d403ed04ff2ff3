"""The material lots' store (material lots, their history, their uses in product lots) for
SQLite and PostgreSQL, on the same compiled statements and driver sessions as the lot store."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, bindparam, func, insert, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from mes.adapters.driver import (
    CompiledStatement,
    Execute,
    ExecuteMany,
    Fetch,
    IntegrityViolation,
    Plan,
)
from mes.adapters.outbox import SUBJECT_ROW_KEYS, subject_row
from mes.adapters.tables import (
    material_events,
    material_signatures,
    material_uses,
    materials,
    outbox,
)
from mes.domain.errors import ConcurrentUpdate
from mes.domain.material_quarantine import quarantined_meanwhile
from mes.domain.materials import (
    Material,
    MaterialEvent,
    MaterialEventKind,
    MaterialKind,
    Quarantine,
    Use,
    event_dict,
    event_kind,
)
from mes.domain.signature_records import Signature, SignatureMethod
from mes.ports_materials import (
    AddUses,
    GetMaterialEvents,
    GetMaterialPage,
    GetMaterials,
    GetUses,
    MaterialPage,
    MaterialQuery,
    MaterialRequest,
    SaveMaterials,
)

_M = materials.c
_E = material_events.c
_U = material_uses.c
_CHUNK = 200
"""Ids named at most per statement."""


class MaterialStatements:
    """The material lots' statements, compiled once for one dialect."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect

        def c(statement: ClauseElement, keys: list[str] | None = None) -> CompiledStatement:
            return CompiledStatement.compile(statement, dialect, keys)

        everything = select(materials).order_by(_M.id)
        self.all = c(everything)
        self.on_tool = c(everything.where(_M.tool_id == bindparam("tool_id")))
        self.loaded = c(everything.where(_M.tool_id.is_not(None)))
        # a list's pages (by id, after the cursor's id, limit + 1 to tell more) and counts:
        # keyed by (on a tool, loaded, after a cursor)
        self.pages: dict[tuple[bool, bool, bool], CompiledStatement] = {}
        self.counts: dict[tuple[bool, bool], CompiledStatement] = {}
        for tool in (False, True):
            for loaded in (False, True):
                where = [_M.tool_id == bindparam("tool_id")] if tool else []
                where += [_M.tool_id.is_not(None)] if loaded else []
                self.counts[tool, loaded] = c(
                    select(func.count()).select_from(materials).where(*where)
                )
                for after in (False, True):
                    keyed = [*where, _M.id > bindparam("after")] if after else where
                    self.pages[tool, loaded, after] = c(
                        everything.where(*keyed).limit(bindparam("page_limit", type_=Integer()))
                    )
        self.insert = c(insert(materials), [col.name for col in materials.c])
        # a thaw, load or unload writes only over the lot as the command read it (its thaw
        # and its tool): two commands on it at once, one wins, the other changes nothing
        self.write = c(
            update(materials)
            .where(
                _M.id == bindparam("b_id"),
                _M.thawed_at.is_not_distinct_from(
                    bindparam("b_was_thawed_at", type_=_M.thawed_at.type)
                ),
                _M.tool_id.is_not_distinct_from(bindparam("b_was_tool_id", type_=String())),
                # a load does not write over a quarantine it did not see
                _M.quarantined_at.is_not_distinct_from(
                    bindparam("b_was_quarantined_at", type_=_M.quarantined_at.type)
                ),
            )
            .values(
                thawed_at=bindparam("b_thawed_at"),
                tool_id=bindparam("b_tool_id"),
                loaded_at=bindparam("b_loaded_at"),
                version=_M.version + 1,
            )
        )
        # a quarantine writes over a lot not quarantined, a release over a quarantined one:
        # two at once, one wins
        quarantined: dict[str, Any] = {
            "quarantine_code": bindparam("b_code"),
            "quarantine_reason": bindparam("b_reason"),
            "quarantined_by": bindparam("b_by"),
            "quarantined_at": bindparam("b_at"),
            "version": _M.version + 1,
        }
        self.quarantine = c(
            update(materials)
            .where(_M.id == bindparam("b_id"), _M.quarantined_at.is_(None))
            .values(**quarantined)
        )
        # and a release over the version its signatures were checked against
        self.release = c(
            update(materials)
            .where(
                _M.id == bindparam("b_id"),
                _M.quarantined_at.is_not(None),
                _M.version == bindparam("b_was_version", type_=Integer()),
            )
            .values(**quarantined)
        )
        self.insert_signature = c(
            insert(material_signatures),
            [col.name for col in material_signatures.c if col.name != "seq"],
        )
        # a use is written only while its material lot is not quarantined: a write that
        # changes nothing and locks the row, so that a quarantine committed after the
        # track-in read the tool's material lots refuses the track-in (0 rows), and one not
        # committed yet waits for it (and comes after it: the recall then finds the use)
        self.still_usable = c(
            update(materials)
            .where(_M.id == bindparam("b_id"), _M.quarantined_at.is_(None))
            .values(id=_M.id)
        )
        self.insert_event = c(
            insert(material_events), [col.name for col in material_events.c if col.name != "seq"]
        )
        self.events_of = c(
            select(material_events)
            .where(_E.material_id == bindparam("material_id"))
            .order_by(_E.seq)
        )
        self.insert_outbox = c(insert(outbox), SUBJECT_ROW_KEYS)
        self.insert_use = c(
            insert(material_uses), [col.name for col in material_uses.c if col.name != "seq"]
        )
        uses = select(material_uses).order_by(_U.seq)
        self.uses_all = c(uses)
        self.uses_of = c(uses.where(_U.material_id == bindparam("material_id")))

    def by_ids(self, n: int) -> CompiledStatement:
        names: list[Any] = [bindparam(f"i{k}") for k in range(n)]
        return CompiledStatement.compile(
            select(materials).where(_M.id.in_(names)).order_by(_M.id), self.dialect
        )

    def uses_in(self, n: int) -> CompiledStatement:
        names: list[Any] = [bindparam(f"i{k}") for k in range(n)]
        return CompiledStatement.compile(
            select(material_uses).where(_U.lot_id.in_(names)).order_by(_U.seq), self.dialect
        )


def _material(m: Mapping[str, Any]) -> Material:
    return Material(
        id=m["id"],
        kind=MaterialKind(m["kind"]),
        expires_at=m["expires_at"],
        added_by=m["added_by"],
        added_at=m["added_at"],
        thaw_minutes=int(m["thaw_minutes"]),
        floor_life_minutes=m["floor_life_minutes"],
        thawed_at=m["thawed_at"],
        tool_id=m["tool_id"],
        loaded_at=m["loaded_at"],
        part_number=m["part_number"],
        quarantine=None
        if m["quarantined_at"] is None
        else Quarantine(
            m["quarantine_code"], m["quarantine_reason"], m["quarantined_by"], m["quarantined_at"]
        ),
        version=int(m["version"]),
    )


def _quarantine_row(m: Material) -> dict[str, Any]:
    q = m.quarantine
    return {
        "quarantine_code": q.code if q else None,
        "quarantine_reason": q.reason if q else None,
        "quarantined_by": q.by if q else None,
        "quarantined_at": q.at if q else None,
    }


def _row(m: Material) -> dict[str, Any]:
    return {
        "id": m.id,
        "kind": m.kind.value,
        "expires_at": m.expires_at,
        "added_by": m.added_by,
        "added_at": m.added_at,
        "thaw_minutes": m.thaw_minutes,
        "floor_life_minutes": m.floor_life_minutes,
        "thawed_at": m.thawed_at,
        "tool_id": m.tool_id,
        "loaded_at": m.loaded_at,
        "part_number": m.part_number,
        **_quarantine_row(m),
        "version": m.version,
    }


def _use(m: Mapping[str, Any]) -> Use:
    return Use(m["material_id"], m["lot_id"], m["step"], m["tool_id"], m["at"])


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[k : k + _CHUNK] for k in range(0, len(ids), _CHUNK)]


def _page(sql: MaterialStatements, query: MaterialQuery) -> Plan[MaterialPage]:
    tool, loaded, after = query.tool_id is not None, query.loaded, query.after is not None
    values = {"tool_id": query.tool_id, "after": query.after, "page_limit": query.limit + 1}
    rows = yield Fetch(sql.pages[tool, loaded, after], values)
    total = yield Fetch(sql.counts[tool, loaded], values)
    found = [_material(r) for r in rows]
    return MaterialPage(
        found[: query.limit], int(next(iter(total[0].values()))), len(found) > query.limit
    )


_QUARANTINE = frozenset({MaterialEventKind.QUARANTINED, MaterialEventKind.RELEASED})


def _quarantine(sql: MaterialStatements, m: Material, e: MaterialEvent) -> Plan[None]:
    statement = sql.quarantine if e.event is MaterialEventKind.QUARANTINED else sql.release
    q = _quarantine_row(m)
    row: dict[str, Any] = {
        "b_id": m.id,
        "b_code": q["quarantine_code"],
        "b_reason": q["quarantine_reason"],
        "b_by": q["quarantined_by"],
        "b_at": q["quarantined_at"],
    }
    if e.event is MaterialEventKind.RELEASED:
        row["b_was_version"] = m.version - 1
    if not (yield Execute(statement, row)):
        raise ConcurrentUpdate(
            f"material lot {m.id} was quarantined or released by another command while this "
            f"one ran: nothing was changed; see pkgline material show {m.id}"
        )


def signature_row(e: MaterialEvent, s: Signature) -> dict[str, Any]:
    """The ``material_signatures`` row of ``s``, which signs ``e``."""
    if e.version is None:
        raise ValueError(f"a signature of material lot {e.material_id} on an event with no version")
    return {
        "material_id": e.material_id,
        "material_version": e.version,
        "signer": s.signer,
        "printed_name": s.printed_name,
        "meaning": s.meaning,
        "at": s.at,
        "method": s.method.value,
    }


def signatures_of(material_id: str, manifests: Any) -> tuple[Signature, ...]:
    """The signatures an event records (its ``signatures``, a list of manifests, or null)."""
    if not isinstance(manifests, list):
        return ()
    return tuple(
        Signature(
            material_id,
            str(m["signer"]),
            str(m["printed_name"]),
            str(m["meaning"]),
            datetime.fromisoformat(str(m["at"])),
            SignatureMethod(str(m["method"])),
        )
        for m in manifests
        if isinstance(m, Mapping)
    )


def material_plan(sql: MaterialStatements, request: MaterialRequest) -> Plan[Any]:
    """The statements that answer ``request`` (:data:`mes.ports.Work`)."""
    if isinstance(request, GetMaterials):
        if request.tool_id is not None:
            rows = yield Fetch(sql.on_tool, {"tool_id": request.tool_id})
        elif request.loaded:
            rows = yield Fetch(sql.loaded, {})
        elif request.material_ids is None:
            rows = yield Fetch(sql.all, {})
        else:
            rows = []
            for chunk in _chunks(sorted(set(request.material_ids))):
                values = {f"i{k}": v for k, v in enumerate(chunk)}
                rows.extend((yield Fetch(sql.by_ids(len(chunk)), values)))
        return [_material(r) for r in rows]
    if isinstance(request, GetMaterialPage):
        return (yield from _page(sql, request.query))
    if isinstance(request, SaveMaterials):
        added = [m for m, e in request.changed if e.event is MaterialEventKind.ADDED]
        changed = [(m, e) for m, e in request.changed if e.event is not MaterialEventKind.ADDED]
        if added:
            yield ExecuteMany(sql.insert, [_row(m) for m in added])
        for m, e in changed:
            if e.event in _QUARANTINE:
                yield from _quarantine(sql, m, e)
                continue
            row: dict[str, Any] = {
                "b_id": m.id,
                "b_thawed_at": m.thawed_at,
                "b_tool_id": m.tool_id,
                "b_loaded_at": m.loaded_at,
                # as it was read: a thaw found it frozen, a load off the tools
                "b_was_thawed_at": None if e.event is MaterialEventKind.THAWED else m.thawed_at,
                "b_was_tool_id": None if e.event is MaterialEventKind.LOADED else e.tool_id,
                "b_was_quarantined_at": m.quarantine.at if m.quarantine else None,
            }
            try:
                written = yield Execute(sql.write, row)
            except IntegrityViolation:  # ux_materials_tool_kind (revision 0024)
                raise ConcurrentUpdate(
                    f"a {m.kind.value} was loaded on {m.tool_id} by another command while this "
                    f"one loaded {m.id}: nothing was changed; see pkgline material list --tool "
                    f"{m.tool_id}"
                ) from None
            if not written:
                raise ConcurrentUpdate(
                    f"material lot {m.id} changed while this command ran (thawed, loaded or "
                    f"unloaded by another): nothing was changed; see pkgline material show "
                    f"{m.id} and try again"
                )
        yield ExecuteMany(
            sql.insert_event,
            [
                {
                    "material_id": e.material_id,
                    "event": e.event.value,
                    "at": e.at,
                    "by": e.by,
                    "tool_id": e.tool_id,
                    "reason": e.reason,
                    "version": e.version,
                    "signatures": [s.manifest() for s in e.signatures] or None,
                }
                for _, e in request.changed
            ],
        )
        signed = [(e, s) for _, e in request.changed for s in e.signatures]
        if signed:  # in the same transaction, linked to the event by the version it made
            yield ExecuteMany(sql.insert_signature, [signature_row(e, s) for e, s in signed])
        yield ExecuteMany(  # for the event feed, in the same transaction
            sql.insert_outbox,
            [
                subject_row("material", e.material_id, event_kind(e), event_dict((m, e)), e.at)
                for m, e in request.changed
            ],
        )
        return None
    if isinstance(request, GetMaterialEvents):
        rows = yield Fetch(sql.events_of, {"material_id": request.material_id})
        return [
            MaterialEvent(
                r["material_id"],
                MaterialEventKind(r["event"]),
                r["at"],
                r["by"],
                r["tool_id"],
                r["reason"],
                int(r["seq"]),
                r["version"],
                signatures_of(r["material_id"], r["signatures"]),
            )
            for r in rows
        ]
    if isinstance(request, AddUses):
        for material_id in sorted({u.material_id for u in request.uses}):  # in id order
            if not (yield Execute(sql.still_usable, {"b_id": material_id})):
                raise quarantined_meanwhile(material_id)
        yield ExecuteMany(
            sql.insert_use,
            [
                {
                    "material_id": u.material_id,
                    "lot_id": u.lot_id,
                    "step": u.step,
                    "tool_id": u.tool_id,
                    "at": u.at,
                }
                for u in request.uses
            ],
        )
        return None
    if isinstance(request, GetUses):
        if request.material_id is not None:
            rows = yield Fetch(sql.uses_of, {"material_id": request.material_id})
            found = [_use(r) for r in rows]
            if request.lot_ids is not None:
                found = [u for u in found if u.lot_id in request.lot_ids]
            return found
        if request.lot_ids is None:
            return [_use(r) for r in (yield Fetch(sql.uses_all, {}))]
        rows = []
        for chunk in _chunks(sorted(set(request.lot_ids))):
            values = {f"i{k}": v for k, v in enumerate(chunk)}
            rows.extend((yield Fetch(sql.uses_in(len(chunk)), values)))
        return sorted((_use(r) for r in rows), key=lambda u: u.at)
    raise TypeError(f"not a material store request: {request!r}")
