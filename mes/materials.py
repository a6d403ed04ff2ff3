"""Material lots' service side: the floor's and engineering's commands on consumable
material lots (one transaction each), the track-in interlock on the material lots loaded on
a tool and the record of what went into the product lot (both inside the lot's own
transaction), and the genealogy and recall queries through splits and merges.

The rules are pure (:mod:`mes.domain.materials`); docs/interlocks.md, "Material lots", says
where each comes from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from flows import Flow
from mes.domain import material_quarantine as quarantines
from mes.domain import materials as rules
from mes.domain.authority import Action, Principal
from mes.domain.commands import HoldLot, TrackIn
from mes.domain.common import no_lot
from mes.domain.errors import InvalidInput, UnknownMaterial, UnknownTool
from mes.domain.interlocks import MANUAL_CLASS
from mes.domain.material_quarantine import QuarantinedInput
from mes.domain.material_reach import Reached, Source
from mes.domain.materials import Changed, Material, MaterialEvent, Use
from mes.domain.model import Lot
from mes.domain.signatures import (
    SignatureGiven,
    SignaturePolicy,
    SignatureRefused,
    SignatureRequired,
    SignatureStale,
)
from mes.domain.text import blank
from mes.guard import Guard, Guarded, SecurityLog
from mes.known_tools import naming_the_tools
from mes.material_recall import (
    Quarantined,
    Recall,
    hold_reached,
    lot_sources,
    quarantined_in,
    reached_lots,
)
from mes.ports import (
    UnitOfWorkFactory,
    Work,
    each_together,
    get_lot,
    get_lots_running_on,
    get_tools,
    together,
)
from mes.ports_materials import (
    MaterialPage,
    MaterialQuery,
    add_uses,
    get_material_events,
    get_material_page,
    get_materials,
    get_uses,
    save_materials,
)
from mes.reasons import coded_hold
from mes.signing import SignatureVerifier, Signing

MATERIAL_SIGNED = frozenset({Action.MATERIAL_RELEASE})
"""The calls of this service that take signatures: a release from quarantine."""


def material_interlock(lot: Lot, flow: Flow, cmd: TrackIn, now: datetime) -> Work[list[Use]]:
    """Refuse ``cmd`` (InterlockRefused) if a material lot loaded on the tool it names may not
    be used now (expired, not yet thawed, past its floor life); else the uses to record once
    the track-in is decided (:func:`record_uses`). One query: the tool's material lots."""
    if cmd.tool is None or cmd.step not in flow.steps:
        return []
    if flow.steps[cmd.step].equipment_class == MANUAL_CLASS:
        return []
    loaded = yield from get_materials(tool_id=cmd.tool)
    rules.check_materials(lot.id, cmd.step, cmd.tool, loaded, now)
    return [Use(m.id, lot.id, cmd.step, cmd.tool, now) for m in loaded]


def record_uses(uses: Sequence[Use]) -> Work[None]:
    yield from add_uses(uses)


@dataclass(frozen=True, slots=True)
class MaterialView:
    material: Material
    events: list[MaterialEvent]
    uses: list[Use]


class MaterialService(Guarded):
    """Material lots: added by engineering or quality, thawed, loaded and unloaded on the
    floor; what went into each product lot, and which product lots got each."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Callable[[], datetime],
        *,
        principal: Principal | None = None,
        security: SecurityLog | None = None,
        signatures: SignaturePolicy | None = None,
        verifier: SignatureVerifier | None = None,
    ):
        self._uow = uow
        self._clock = clock
        self._guard = Guard(principal, security, clock)
        self.signing = Signing(signatures or SignaturePolicy(), verifier, security, clock)

    async def authorize(self, action: Action, *, by: Principal | None = None) -> None:
        """Refuse (NotAuthorized, recorded) a principal who may not ``action``: what a form
        checks before its own fields, as the service does before anything."""
        await self._guard.allow(by, action)

    async def _change(
        self, action: Action, work: Callable[[], Work[Changed]], by: Principal | None
    ) -> Material:
        await self._guard.allow(by, action)

        who = self._guard.who(by)

        def write() -> Work[Material]:
            material, event = rules.stamped(rules.bumped((yield from work())), who)
            yield from save_materials([(material, event)])
            return material

        try:
            return await self._uow.write(write())
        except UnknownTool as unknown:  # the tools there are, as the tool commands say them
            raise await naming_the_tools(self._uow, unknown) from None

    async def _read(self, work: Work[object], by: Principal | None) -> object:
        await self._guard.allow(by, Action.READ)
        try:
            async with self._uow(readonly=True) as uow:
                return await uow.run(work, commit=True)
        except UnknownTool as unknown:
            raise await naming_the_tools(self._uow, unknown) from None

    def _one(self, material_id: str) -> Work[Material]:
        found = yield from get_materials([material_id])
        if not found:
            raise UnknownMaterial(f"there is no material lot {material_id}")
        return found[0]

    async def add(
        self,
        material_id: str,
        kind: str,
        expires_at: datetime,
        user: str,
        *,
        thaw_minutes: int | None = None,
        floor_life_minutes: int | None = None,
        part_number: str | None = None,
        by: Principal | None = None,
    ) -> Material:
        def work() -> Work[Changed]:
            found = yield from get_materials([material_id])
            return rules.add(
                material_id,
                kind,
                expires_at,
                user,
                self._clock(),
                existing=found[0] if found else None,
                thaw_minutes=thaw_minutes,
                floor_life_minutes=floor_life_minutes,
                part_number=part_number,
            )

        return await self._change(Action.MATERIALS, work, by)

    async def thaw(self, material_id: str, user: str, *, by: Principal | None = None) -> Material:
        def work() -> Work[Changed]:
            return rules.thaw((yield from self._one(material_id)), user, self._clock())

        return await self._change(Action.MATERIAL_HANDLING, work, by)

    async def load(
        self, material_id: str, tool_id: str, user: str, *, by: Principal | None = None
    ) -> Material:
        def work() -> Work[Changed]:
            material = yield from self._one(material_id)
            tool = (yield from get_tools([tool_id])).get(tool_id)
            if tool is None:
                raise UnknownTool(f"there is no tool {tool_id}", tool_id=tool_id)
            now = self._clock()
            on_tool, running = yield from together(
                get_materials(tool_id=tool_id), get_lots_running_on(tool_id)
            )
            changed = rules.load(material, tool_id, tool.equipment_class, on_tool, user, now)
            if running:  # it goes into the lots running there from now: their uses
                lots = yield from each_together(get_lot(lot_id) for lot_id in running)
                yield from add_uses(rules.uses_mid_run(changed[0], [x for x in lots if x], now))
            return changed

        return await self._change(Action.MATERIAL_HANDLING, work, by)

    async def unload(
        self,
        material_id: str,
        user: str,
        reason: str | None = None,
        *,
        by: Principal | None = None,
    ) -> Material:
        def work() -> Work[Changed]:
            material = yield from self._one(material_id)
            return rules.unload(material, user, self._clock(), reason)

        return await self._change(Action.MATERIAL_HANDLING, work, by)

    async def quarantine(
        self,
        material_id: str,
        code: str,
        reason: str,
        user: str,
        *,
        hold_lots: bool = False,
        by: Principal | None = None,
    ) -> Quarantined:
        """Quarantine a material lot (quality): it cannot be loaded, and no track-in runs on a
        tool where it is loaded, until quality releases it. ``code``: an active hold reason
        code of the catalogue; ``reason``: why (required). With ``hold_lots``, in the same
        transaction, the holds of :meth:`hold_lots`."""
        await self._guard.allow(by, Action.QUARANTINE)
        who = self._guard.who(by)

        def work() -> Work[Quarantined]:
            material = yield from self._one(material_id)
            if blank(reason):
                raise InvalidInput(
                    f"the quarantine of material lot {material_id} needs a reason: expected "
                    "what is wrong with it (--reason)"
                )
            now = self._clock()
            coded = yield from coded_hold(HoldLot(material_id, user, reason, code=code))
            changed = rules.stamped(
                rules.bumped(quarantines.quarantine(material, code, coded.reason, user, now)), who
            )
            yield from save_materials([changed])
            recall = None
            if hold_lots:
                recall = yield from hold_reached(material_id, code, reason, user, who, now)
            return Quarantined(changed[0], recall)

        return await self._uow.write(work())

    async def release(
        self,
        material_id: str,
        reason: str,
        user: str,
        *,
        by: Principal | None = None,
        signatures: Sequence[SignatureGiven] = (),
    ) -> Material:
        """Lift a material lot's quarantine (quality), saying why, electronically signed as a
        hold's release is (:mod:`mes.signing`; the row ``material_release``): each signature
        names the material lot's version its signer saw, so a replay is refused. The lots a
        recall held stay held: each is released as a hold is (``pkgline lot release``)."""
        await self._guard.allow(by, Action.QUARANTINE)  # 403 before any password is checked
        who = self._guard.who(by)
        row = Action.MATERIAL_RELEASE
        # passwords first (argon2id takes its time), outside the transaction
        signed = await self.signing.verify(
            who, row, material_id, signatures, requests=MATERIAL_SIGNED
        )

        def work() -> Work[Material]:
            material = yield from self._one(material_id)
            now = self._clock()
            try:
                checked = self.signing.check(row, material, who, signed)
            except SignatureRequired:
                quarantines.release(material, user, now, reason)  # not quarantined: says so
                raise
            changed = rules.bumped(quarantines.release(material, user, now, reason))
            changed = rules.stamped(rules.signed_event(changed, checked), who)
            yield from save_materials([changed])
            return changed[0]

        try:
            return await self._uow.write(work())
        except (SignatureRefused, SignatureStale, SignatureRequired) as refused:
            await self.signing.refused(who, refused)  # after the rollback, as a lot's
            raise

    async def hold_lots(
        self,
        material_id: str,
        code: str,
        reason: str | None,
        user: str,
        *,
        by: Principal | None = None,
    ) -> Recall:
        """Hold every product lot still on the line that got the material lot (quality; as
        far as :meth:`where_used` reaches), in one transaction: each a hold with ``code`` (an
        active hold reason code) and a text naming the material lot. Lots on hold already,
        or off the line, are reported and not touched: run twice, it holds nothing twice."""
        await self._guard.allow(by, Action.QUARANTINE)
        who = self._guard.who(by)

        def work() -> Work[Recall]:
            yield from self._one(material_id)
            return (yield from hold_reached(material_id, code, reason, user, who, self._clock()))

        return await self._uow.write(work())

    async def show(self, material_id: str, *, by: Principal | None = None) -> MaterialView:
        def work() -> Work[MaterialView]:
            material = yield from self._one(material_id)
            return MaterialView(
                material,
                (yield from get_material_events(material_id)),
                (yield from get_uses(material_id=material_id)),
            )

        found = await self._read(work(), by)
        assert isinstance(found, MaterialView)
        return found

    async def find(
        self, *, tool_id: str | None = None, loaded: bool = False, by: Principal | None = None
    ) -> list[Material]:
        """Every material lot, or those loaded on ``tool_id``, or on any tool (``loaded``)."""

        def work() -> Work[list[Material]]:
            if tool_id is not None and not (yield from get_tools([tool_id])):
                raise UnknownTool(f"there is no tool {tool_id}", tool_id=tool_id)
            return (yield from get_materials(tool_id=tool_id, loaded=loaded))

        found = await self._read(work(), by)
        assert isinstance(found, list)
        return found

    async def page(self, query: MaterialQuery, *, by: Principal | None = None) -> MaterialPage:
        """One page of a material lot list (:class:`mes.ports_materials.MaterialQuery`): by
        id, filtered in the store, with how many match and whether more follow. Refused for
        a tool or a cursor that names nothing, and a limit below 1."""

        def work() -> Work[MaterialPage]:
            if query.limit < 1:
                raise InvalidInput(f"a page holds 1 material lot or more, not {query.limit}")
            if query.tool_id is not None and not (yield from get_tools([query.tool_id])):
                raise UnknownTool(f"there is no tool {query.tool_id}", tool_id=query.tool_id)
            if query.after is not None and not (yield from get_materials([query.after])):
                raise UnknownMaterial(
                    f"there is no material lot {query.after} to list the material lots after: "
                    "expected the last id of the page before"
                )
            return (yield from get_material_page(query))

        found = await self._read(work(), by)
        assert isinstance(found, MaterialPage)
        return found

    async def where_used(self, material_id: str, *, by: Principal | None = None) -> list[Reached]:
        """Every product lot that got the material lot (a recall): those it was used in, and
        through splits and merges after the use, those its product went on in."""

        def work() -> Work[list[Reached]]:
            yield from self._one(material_id)
            return [r for r, _ in (yield from reached_lots(material_id))]

        found = await self._read(work(), by)
        assert isinstance(found, list)
        return found

    async def quarantined_in(
        self, lot_ids: Sequence[str], *, by: Principal | None = None
    ) -> dict[str, list[QuarantinedInput]]:
        """For each of ``lot_ids`` that got some, the material lots quarantined now that went
        into it (its genealogy): while they are, its release and rework are for the roles
        their quarantines' codes name (the holds page)."""

        def work() -> Work[dict[str, list[QuarantinedInput]]]:
            found: dict[str, list[QuarantinedInput]] = {}
            for lot in lot_ids:  # one after the other: each walks its genealogy side by side
                q = yield from quarantined_in(lot)
                if q:
                    found[lot] = q
            return found

        answer = await self._read(work(), by)
        assert isinstance(answer, dict)
        return answer

    async def genealogy(self, lot_id: str, *, by: Principal | None = None) -> list[Source]:
        """Every material lot that went into the product lot: its own, its parent's before
        it was split off, and those of the lots merged into it before they were."""

        def work() -> Work[list[Source]]:
            if (yield from get_lot(lot_id)) is None:
                raise no_lot(lot_id)
            return (yield from lot_sources(lot_id))

        found = await self._read(work(), by)
        assert isinstance(found, list)
        return found
