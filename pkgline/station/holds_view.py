"""What the holds page shows, read from the service layer for the person looking: one page
of the held lots, in the lot list's order (most urgent first: priority, then the oldest, then
the id; :class:`mes.ports.LotQuery`, paged by the store in SQL after a cursor), how many are
held in all and whether more follow, each lot with what its row says (why, who placed it, the
material lots quarantined in it, who may release it). Plain values for the template; no rule
is decided here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from mes.domain.authority import Action, Context, Principal, effective_action
from mes.domain.errors import LotTrackerError
from mes.domain.material_quarantine import QuarantinedInput
from mes.domain.model import LOT_ID_PATTERN, Lot, LotState
from mes.domain.report import next_after_release
from mes.ports import LotQuery
from pkgline.bootstrap import Services
from pkgline.hold_views import placed_by
from pkgline.station.holds_paging import HOLDS_PAGE
from pkgline.station.line_view import now
from pkgline.station.offers import may_release, needs


@dataclass(frozen=True, slots=True)
class HeldLot:
    lot: Lot
    step: str
    held_for: timedelta
    signers: int
    """How many people sign its release (two where ``[signatures] two_signers`` asks)."""
    ruled: bool
    """Placed by the rules (a claimed limit, an alarm, the controller, SPC): releasing it is
    the row ``release_ruled`` of the authority table."""
    releasable: bool = False
    """The person looking may release it (:func:`pkgline.station.offers.may_release`): its
    row offers the release dialog."""
    needs: str = ""
    """The roles that may release it, in words (``engineer or quality``)."""
    next_after_release: tuple[str, ...] = ()
    """The steps it may take once released (:func:`mes.domain.report.next_after_release`)."""
    quarantined: tuple[QuarantinedInput, ...] = ()
    """The material lots quarantined now that went into it: while they are, its release is
    for the roles their quarantines' codes name."""
    placed_by: str = ""
    """Who placed the hold, in words (:func:`pkgline.hold_views.placed_by`): a person, the
    line controller, or a system's API key."""


@dataclass(frozen=True, slots=True)
class HoldsView:
    held: tuple[HeldLot, ...]
    """The page's held lots, most urgent first (the lot list's order)."""
    total: int
    """How many lots are held in all (``total_exact`` false: more than that many)."""
    total_exact: bool
    more: bool
    """More held lots follow the page: the next is the same with ``after`` = ``next_after``."""
    next_after: str | None
    reopened: HeldLot | None = None
    """The lot whose release dialog opens again (a release refused, or sent after the
    session ended), when it is still held but not on this page (its priority changed since,
    or the page moved on): shown above the page's lots, so that its dialog opens."""


async def holds_view(
    services: Services,
    who: Principal,
    *,
    after: str | None = None,
    limit: int = HOLDS_PAGE,
    reopen: str = "",
) -> HoldsView:
    """The page of held lots after the lot ``after`` (the first page: None), at most
    ``limit``; with the lot ``reopen`` when it is held and not among them. A cursor naming no
    lot is refused (UnknownLot) by the store."""
    lots = services.lots.acting_as(who)
    page = await lots.page(LotQuery(states=(LotState.HOLD,), after=after, limit=limit))
    found = list(page.lots)
    extra: Lot | None = None
    if reopen and LOT_ID_PATTERN.fullmatch(reopen) and all(x.id != reopen for x in found):
        try:
            extra = await lots.get(reopen)
        except LotTrackerError:  # released, scrapped or gone since: no dialog to open again
            extra = None
        if extra is not None and extra.state is not LotState.HOLD:
            extra = None
    rows = await held_rows(services, who, [*found, *([extra] if extra else [])])
    return HoldsView(
        held=rows[: len(found)],
        total=page.total,
        total_exact=page.total_exact,
        more=page.more,
        next_after=found[-1].id if page.more and found else None,
        reopened=rows[-1] if extra is not None else None,
    )


async def held_rows(
    services: Services, who: Principal, found: Sequence[Lot]
) -> tuple[HeldLot, ...]:
    """Each of the held lots ``found`` as its row says it, in their order: what the rows need
    beyond the lots (their hold reason codes, the material lots quarantined in them, the
    history entries that placed their holds) is read for these lots only, each in one read."""
    if not found:
        return ()
    lots = services.lots.acting_as(who)
    wanted = {x.hold.code for x in found if x.hold is not None and x.hold.code}
    codes = (
        {r.code: r for r in await services.reasons.find(retired=True, by=who) if r.code in wanted}
        if wanted
        else {}
    )
    stopped = await services.materials.acting_as(who).quarantined_in([x.id for x in found])
    placed = await lots.hold_entries(found)
    at = now()
    policy = lots.signing.policy
    out = []
    for lot in found:
        assert lot.hold is not None
        context = Context(lot.id, lot.hold.source)
        row = effective_action(Action.RELEASE, context)
        code = codes.get(lot.hold.code) if lot.hold.code else None
        quarantined = tuple(stopped.get(lot.id, ()))
        entry = placed.get(lot.id)
        out.append(
            HeldLot(
                lot,
                lot.step or "-",
                at - lot.hold.since,
                policy.signers(row),
                row is Action.RELEASE_RULED,
                may_release(who, lot.id, lot.hold.source, code, quarantined),
                needs(Action.RELEASE, context, code, quarantined),
                next_after_release(lot, lots.flow_of(lot)),
                quarantined,
                placed_by(
                    lot.hold.user, entry.by if entry else None, entry.auth if entry else None
                ),
            )
        )
    return tuple(out)
