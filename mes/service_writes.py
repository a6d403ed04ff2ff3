"""The lot service's one way to change a lot (:meth:`LotWrites._on_lot`): read it, check who
may (the authority table, a gate that reads more, electronic signatures), decide by the
operation's rule and save the change with its signatures, in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from flows import Flow
from mes.domain import common
from mes.domain.authority import Action, Context, NotAuthorized, Principal, effective_action
from mes.domain.model import (
    Change,
    Lot,
)
from mes.domain.signatures import SignatureGiven, SignatureRequired
from mes.domain.signatures import linked as linked_signatures
from mes.ports import (
    Request,
    Work,
    asked_with,
    get_lot,
    save,
    save_signatures,
    served,
)
from mes.service_core import (
    LotServiceCore,
    Outcome,
)

Rule = Callable[[Lot, Flow], Change | Work[Change]]
"""What an operation on one lot decides: the change, or work that reads more first."""

Gate = Callable[[Lot, Principal], Work[None]]
"""Who may do an operation on the lot as it is, where that depends on more than the lot's
row (a release: the hold's reason code): refuses with NotAuthorized. Checked before any
signature's password (a read of its own), and again in the operation's transaction."""


class LotWrites(LotServiceCore):
    """How every operation on one lot is written (the reads:
    :class:`mes.service_core.LotServiceCore`; the operations: :class:`mes.service.LotService`)."""

    async def _on_lot(
        self,
        lot_id: str,
        rule: Rule,
        *,
        action: Action,
        by: Principal | None,
        primary: str | None = None,
        signatures: Sequence[SignatureGiven] = (),
        reads: Sequence[Request] = (),
        gate: Gate | None = None,
    ) -> Outcome:
        """``reads``: what the rule will ask first, known from the command alone, asked with
        the lot (:func:`mes.ports.asked_with`). ``gate``: who may, from the lot and what it
        reads (:data:`Gate`)."""
        who = self._guard.who(by)
        if signatures:  # a role that may not: 403 before any password is checked
            if gate is not None and who is not None:
                await self._gate_first(lot_id, gate, who, by)
            await self._guard.allow_some(by, action, lot_id)
        signed = await self.signing.verify(who, action, lot_id, signatures)

        def work() -> Work[Outcome]:
            lot, ahead = yield from asked_with(get_lot(lot_id), reads)
            if lot is None:
                raise common.no_lot(lot_id)
            context = Context(lot_id, lot.hold.source if lot.hold else None)
            if gate is not None and who is not None:  # the lot may have changed since
                yield from gate(lot, who)
            self._guard.check(by, action, context)
            self._check_seen(lot)
            flow = self.flow_of(lot)
            try:
                checked = self.signing.check(effective_action(action, context), lot, who, signed)
            except SignatureRequired:
                # unsigned: an operation the lot refuses anyway says so first (a release of a
                # lot not held is 409, not "sign it"); the rule only reads
                refused = rule(lot, flow)
                if not isinstance(refused, Change):
                    yield from refused
                raise
            decided = rule(lot, flow)
            change = decided if isinstance(decided, Change) else (yield from served(decided, ahead))
            change, signed_now = self.signing.sign(common.stamped(change, who), checked)
            entries = yield from save(change)
            if signed_now:  # in the same transaction, linked to the entry by its hash
                yield from save_signatures(linked_signatures(signed_now, entries[0].hash))
            wanted = primary or lot_id
            return Outcome(next(x for x in change.lots if x.id == wanted), entries)

        return await self._write(work, by)

    async def _gate_first(
        self, lot_id: str, gate: Gate, who: Principal, by: Principal | None
    ) -> None:
        """``gate`` on the lot as it is now, in a read of its own, its refusal recorded: before
        a signature's password is checked (a person who may not is told so, not asked for a
        password and counted towards a lockout). An unknown lot: the operation says so."""

        def work() -> Work[None]:
            lot = yield from get_lot(lot_id)
            if lot is not None:
                yield from gate(lot, who)

        try:
            async with self._uow(readonly=True) as uow:
                await uow.run(work(), commit=True)
        except NotAuthorized as refused:
            await self._guard.refused(by, refused)
            raise
