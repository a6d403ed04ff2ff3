"""The reason-code catalogues' service side: quality's commands (one transaction each), and
the reads a hold, a scrap and a release make of them inside the lot's own transaction.

The rules are pure (:mod:`mes.domain.reasons`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from mes.domain import reasons as rules
from mes.domain.authority import Action, Context, Principal
from mes.domain.commands import HoldLot, ScrapLot
from mes.domain.errors import UnknownReasonCode
from mes.domain.model import Lot
from mes.domain.reasons import ReasonCode, ReasonKind
from mes.engineering import ChangeRecord, reason_change
from mes.guard import Guard, Guarded, SecurityLog
from mes.ports import UnitOfWorkFactory, Work
from mes.ports_reasons import get_reason_code, get_reason_codes, save_reason_code


def coded_hold(cmd: HoldLot) -> Work[HoldLot]:
    """``cmd`` with its reason from its code's text and its free text (refused unless the
    code is an active hold code); as it is without a code."""
    if cmd.code is None:
        return cmd
    reason = yield from _coded(cmd.code, ReasonKind.HOLD, cmd.reason)
    return replace(cmd, reason=reason)


def coded_scrap(cmd: ScrapLot) -> Work[ScrapLot]:
    if cmd.code is None:
        return cmd
    reason = yield from _coded(cmd.code, ReasonKind.SCRAP, cmd.reason)
    return replace(cmd, reason=reason)


def _coded(code: str, kind: ReasonKind, free: str | None) -> Work[str]:
    """The reason ``code`` gives (:func:`mes.domain.reasons.resolve`); the catalogue is read
    only for a code not in it, to name the closest in the refusal."""
    found = yield from get_reason_code(code)
    catalogue = [] if found is not None else (yield from get_reason_codes())
    return rules.resolve(code, kind, found, free, catalogue)


def release_allowed(lot: Lot, who: Principal | None) -> Work[None]:
    """Refuse (NotAuthorized) the release of the lot's hold by anyone the table (the hold's
    source) or the hold's code (the roles it names) does not let release it; the refusal
    names who may (:func:`mes.domain.reasons.check_release_by`). Nothing for a lot not
    held: the release says why."""
    if who is None or lot.hold is None:
        return
    found = (yield from get_reason_code(lot.hold.code)) if lot.hold.code is not None else None
    rules.check_release_by(who, Context(lot.id, lot.hold.source), found)


class ReasonService(Guarded):
    """Quality's catalogues of hold and scrap reason codes."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Callable[[], datetime],
        *,
        principal: Principal | None = None,
        security: SecurityLog | None = None,
    ):
        self._uow = uow
        self._clock = clock
        self._guard = Guard(principal, security, clock)

    async def add(
        self,
        code: str,
        kind: str,
        text: str,
        user: str,
        *,
        release_roles: Sequence[str] = (),
        by: Principal | None = None,
    ) -> ReasonCode:
        """Add a code to the catalogue; recorded in the security log (``reason_add``), in the
        same transaction."""
        await self._guard.allow(by, Action.REASONS)
        record = ChangeRecord.of(self._guard.who(by), user, "reason_add", self._clock())

        def work() -> Work[ReasonCode]:
            found = yield from get_reason_code(code)
            new = rules.add(code, kind, text, release_roles, user, record.at, found)
            yield from save_reason_code(new, new=True)
            yield from record.write(reason_change(None, new))
            return new

        return await self._uow.write(work())

    async def retire(
        self, code: str, user: str, reason: str, *, by: Principal | None = None
    ) -> ReasonCode:
        """Retire a code: no new hold or scrap takes it. Recorded in the security log
        (``reason_retire``), in the same transaction."""
        await self._guard.allow(by, Action.REASONS)
        record = ChangeRecord.of(self._guard.who(by), user, "reason_retire", self._clock())

        def work() -> Work[ReasonCode]:
            found = yield from get_reason_code(code)
            if found is None:
                raise UnknownReasonCode(f"there is no reason code {code}")
            retired = rules.retire(found, user, record.at, reason)
            yield from save_reason_code(retired, new=False)
            yield from record.write(reason_change(found, retired))
            return retired

        return await self._uow.write(work())

    async def find(
        self,
        *,
        kind: ReasonKind | None = None,
        retired: bool = False,
        by: Principal | None = None,
    ) -> list[ReasonCode]:
        """The catalogue (of one kind), without the retired codes unless ``retired``."""
        await self._guard.allow(by, Action.READ)
        async with self._uow(readonly=True) as uow:
            found = await uow.run(get_reason_codes(), commit=True)
        return [r for r in found if (kind is None or r.kind is kind) and (retired or r.active)]
