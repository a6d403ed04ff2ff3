"""What the outbox's retention deletes, and the finished lots whose retained states go with
it: the statements of :meth:`mes.adapters.outbox.RelaySession.prune` and
:meth:`~mes.adapters.outbox.RelaySession.finished`. The relay clears a finished lot's
retained state (an empty retained message) before the lot's last events are deleted
(docs/events.md, "lot-state")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, delete, func, or_, select

from mes.adapters.tables import lot_history, lots, outbox
from mes.domain.model import FINAL_STATES


@dataclass(frozen=True, slots=True)
class Finished:
    """The finished lots whose last events go at the next prune
    (:meth:`mes.adapters.outbox.RelaySession.finished`): the relay clears their retained
    states first, then prunes ``until`` what it cleared."""

    lots: list[str]
    """Their ids, oldest published first, each once."""
    until: tuple[datetime, int] | None
    """None: every lot found, the prune deletes every event published before the cutoff;
    else (published_at, id) of the first event of a finished lot left for the next prune, and
    the prune deletes only the events before it."""


_HIGHEST = select(func.max(outbox.c.seq)).scalar_subquery()
_PRUNABLE = (
    outbox.c.published_at.is_not(None),
    outbox.c.published_at < bindparam("before"),
    outbox.c.seq < _HIGHEST,
)
PRUNE = delete(outbox).where(*_PRUNABLE)
PRUNE_UNTIL = delete(outbox).where(
    *_PRUNABLE,
    or_(
        outbox.c.published_at < bindparam("until_at"),
        and_(outbox.c.published_at == bindparam("until_at"), outbox.c.seq < bindparam("until_seq")),
    ),
)
_LAST_ENTRY_AT = (
    select(lot_history.c.at)
    .where(lot_history.c.lot_id == outbox.c.lot_id)
    .order_by(lot_history.c.seq.desc())
    .limit(1)
    .scalar_subquery()
)
FINISHED_LOTS = (
    select(outbox.c.seq, outbox.c.lot_id, outbox.c.published_at)
    .join(lots, lots.c.id == outbox.c.lot_id)
    .where(
        *_PRUNABLE,
        outbox.c.subject == "lot",
        lots.c.state.in_(sorted(s.value for s in FINAL_STATES)),
        # the event of the lot's last history entry (its outbox row has the entry's time;
        # a finished lot gets no entry after it): none of the lot's events is newer
        outbox.c.created_at >= _LAST_ENTRY_AT,
    )
    .order_by(outbox.c.published_at, outbox.c.seq)
    .limit(bindparam("limit"))
)
"""The finished lots whose last event is among those :meth:`mes.adapters.outbox.RelaySession.prune` would delete,
in the order they were published: along the outbox's (published_at, seq) index from its
oldest, each lot by its key and its last history entry by (lot_id, seq), never a scan of the
lots (docs/events.md, "lot-state")."""
