"""The lot repository and unit of work on SQLAlchemy Core (async), for SQLite and PostgreSQL.

Lots are read with their carriers in one query and written with an optimistic version check:
``UPDATE lots ... WHERE id = :id AND version = :expected``. When another transaction moved the
lot first, no row matches and the change is refused with ConcurrentUpdate. Every history entry
is mirrored by an outbox row in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mes.adapters.database import READONLY
from mes.adapters.tables import carriers, lot_history, lots, outbox, site_rejects
from mes.domain.errors import ConcurrentUpdate, LotExists
from mes.domain.model import (
    Carrier,
    Change,
    HistoryEntry,
    Hold,
    HoldSource,
    Lot,
    LotState,
    Operation,
    RunningStep,
    SiteReject,
)
from mes.domain.report import history_dict

# -- rows <-> values -------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    return value.isoformat()


def _running_json(r: RunningStep | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "step": r.step,
        "tool": r.tool,
        "values": dict(r.values),
        "since": _iso(r.since),
        "user": r.user,
    }


def _hold_json(h: Hold | None) -> dict[str, Any] | None:
    if h is None:
        return None
    return {"reason": h.reason, "user": h.user, "since": _iso(h.since), "source": h.source.value}


def _lot_values(lot: Lot) -> dict[str, Any]:
    return {
        "flow": lot.flow,
        "flow_version": lot.flow_version,
        "state": lot.state.value,
        "priority": lot.priority,
        "params": dict(lot.params),
        "site_rows": lot.site_rows,
        "site_cols": lot.site_cols,
        "total_sites": lot.total_sites,
        "good_sites": lot.good_sites,
        "units": lot.units,
        "path": list(lot.path),
        "recorded": dict(lot.recorded),
        "running": _running_json(lot.running),
        "hold": _hold_json(lot.hold),
        "rework_counts": dict(lot.rework_counts),
        "pending_rework": lot.pending_rework,
        "parent_id": lot.parent_id,
        "created_at": lot.created_at,
        "updated_at": lot.updated_at,
        "created_by": lot.created_by,
        "version": lot.version,
    }


def _lot_from_row(row: Row[Any], carrier_ids: tuple[str, ...]) -> Lot:
    m = row._mapping
    running = m["running"]
    hold = m["hold"]
    return Lot(
        id=m["id"],
        flow=m["flow"],
        flow_version=m["flow_version"],
        state=LotState(m["state"]),
        params=m["params"],
        priority=m["priority"],
        site_rows=m["site_rows"],
        site_cols=m["site_cols"],
        carriers=carrier_ids,
        total_sites=m["total_sites"],
        good_sites=m["good_sites"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        created_by=m["created_by"],
        path=tuple(m["path"]),
        running=None
        if running is None
        else RunningStep(
            step=running["step"],
            tool=running["tool"],
            values=running["values"],
            since=datetime.fromisoformat(running["since"]),
            user=running["user"],
        ),
        hold=None
        if hold is None
        else Hold(
            reason=hold["reason"],
            user=hold["user"],
            since=datetime.fromisoformat(hold["since"]),
            source=HoldSource(hold["source"]),
        ),
        recorded=m["recorded"],
        rework_counts=m["rework_counts"],
        pending_rework=m["pending_rework"],
        units=m["units"],
        parent_id=m["parent_id"],
        version=m["version"],
    )


def _entry_from_row(row: Row[Any]) -> HistoryEntry:
    m = row._mapping
    return HistoryEntry(
        lot_id=m["lot_id"],
        operation=Operation(m["operation"]),
        user=m["user"],
        at=m["at"],
        state_before=LotState(m["state_before"]) if m["state_before"] else None,
        state_after=LotState(m["state_after"]),
        step=m["step"],
        tool=m["tool"],
        reason=m["reason"],
        data=m["data"],
        seq=m["seq"],
    )


_LOT_COLUMNS = (*lots.c, carriers.c.id.label("carrier_id"))


class SqlLotRepository:
    """:class:`mes.ports.LotRepository` on one open connection (inside a transaction)."""

    def __init__(self, conn: AsyncConnection):
        self._conn = conn

    async def get(self, lot_id: str) -> Lot | None:
        query = (
            select(*_LOT_COLUMNS)
            .select_from(lots.outerjoin(carriers, carriers.c.lot_id == lots.c.id))
            .where(lots.c.id == lot_id)
            .order_by(carriers.c.position)
        )
        rows = (await self._conn.execute(query)).all()
        if not rows:
            return None
        ids = tuple(r.carrier_id for r in rows if r.carrier_id is not None)
        return _lot_from_row(rows[0], ids)

    async def carriers(self, lot_id: str) -> list[Carrier]:
        query = select(carriers).where(carriers.c.lot_id == lot_id).order_by(carriers.c.position)
        return [
            Carrier(r.id, r.lot_id, r.position, r.rows, r.cols)
            for r in (await self._conn.execute(query)).all()
        ]

    async def rejects(self, lot_id: str) -> list[SiteReject]:
        query = (
            select(site_rejects)
            .join(carriers, carriers.c.id == site_rejects.c.carrier_id)
            .where(carriers.c.lot_id == lot_id)
            .order_by(site_rejects.c.id)
        )
        return [
            SiteReject(r.carrier_id, r.row, r.col, r.code, r.step, r.path_index)
            for r in (await self._conn.execute(query)).all()
        ]

    async def history(self, lot_id: str, *, before_seq: int | None = None) -> list[HistoryEntry]:
        query = select(lot_history).where(lot_history.c.lot_id == lot_id)
        if before_seq is not None:
            query = query.where(lot_history.c.seq < before_seq)
        rows = (await self._conn.execute(query.order_by(lot_history.c.seq))).all()
        return [_entry_from_row(r) for r in rows]

    async def children(self, lot_id: str) -> list[str]:
        query = select(lots.c.id).where(lots.c.parent_id == lot_id).order_by(lots.c.created_at)
        return list((await self._conn.execute(query)).scalars())

    async def find(
        self, *, states: Sequence[LotState] = (), flow: str | None = None, limit: int = 1000
    ) -> list[Lot]:
        page = select(lots.c.id)
        if states:
            page = page.where(lots.c.state.in_([s.value for s in states]))
        if flow is not None:
            page = page.where(lots.c.flow == flow)
        page = page.order_by(lots.c.priority, lots.c.created_at, lots.c.id).limit(limit)
        ids = list((await self._conn.execute(page)).scalars())
        if not ids:
            return []
        query = (
            select(*_LOT_COLUMNS)
            .select_from(lots.outerjoin(carriers, carriers.c.lot_id == lots.c.id))
            .where(lots.c.id.in_(ids))
            .order_by(lots.c.id, carriers.c.position)
        )
        grouped: dict[str, list[Row[Any]]] = {}
        for row in (await self._conn.execute(query)).all():
            grouped.setdefault(row.id, []).append(row)
        return [
            _lot_from_row(
                grouped[i][0], tuple(r.carrier_id for r in grouped[i] if r.carrier_id is not None)
            )
            for i in ids
        ]

    async def save(self, change: Change) -> tuple[HistoryEntry, ...]:
        conn = self._conn
        for lot in change.lots:
            expected = change.expected_versions[lot.id]
            if expected is None:
                try:
                    await conn.execute(insert(lots).values(id=lot.id, **_lot_values(lot)))
                except IntegrityError:  # the transaction is rolled back by the unit of work
                    raise LotExists(f"lot {lot.id} already exists", lot_id=lot.id) from None
            else:
                result = await conn.execute(
                    update(lots)
                    .where(lots.c.id == lot.id, lots.c.version == expected)
                    .values(**_lot_values(lot))
                )
                if result.rowcount != 1:
                    raise ConcurrentUpdate(
                        f"lot {lot.id} was changed by someone else while this command ran "
                        f"(it is no longer at version {expected}); nothing was changed: "
                        "look at it again (lot show) and retry",
                        lot_id=lot.id,
                    )
        if change.new_carriers:
            await conn.execute(
                insert(carriers),
                [
                    {
                        "id": c.id,
                        "lot_id": c.lot_id,
                        "position": c.position,
                        "rows": c.rows,
                        "cols": c.cols,
                    }
                    for c in change.new_carriers
                ],
            )
        await self._move_carriers(change.moved_carriers)
        if change.rejects:
            await conn.execute(
                insert(site_rejects),
                [
                    {
                        "carrier_id": r.carrier_id,
                        "row": r.row,
                        "col": r.col,
                        "code": r.code,
                        "step": r.step,
                        "path_index": r.path_index,
                    }
                    for r in change.rejects
                ],
            )
        written: list[HistoryEntry] = []
        for entry in change.entries:
            seq = (
                await conn.execute(
                    insert(lot_history)
                    .values(
                        lot_id=entry.lot_id,
                        at=entry.at,
                        user=entry.user,
                        operation=entry.operation.value,
                        state_before=entry.state_before.value if entry.state_before else None,
                        state_after=entry.state_after.value,
                        step=entry.step,
                        tool=entry.tool,
                        reason=entry.reason,
                        data=dict(entry.data),
                    )
                    .returning(lot_history.c.seq)
                )
            ).scalar_one()
            stored = _with_seq(entry, seq)
            written.append(stored)
            await conn.execute(
                insert(outbox).values(
                    lot_id=entry.lot_id,
                    kind=entry.event_kind,
                    payload=history_dict(stored),
                    created_at=entry.at,
                )
            )
        return tuple(written)

    async def _move_carriers(self, moved: Mapping[str, tuple[str, int]]) -> None:
        for carrier_id, (lot_id, position) in moved.items():
            await self._conn.execute(
                update(carriers)
                .where(carriers.c.id == carrier_id)
                .values(lot_id=lot_id, position=position)
            )


def _with_seq(entry: HistoryEntry, seq: int) -> HistoryEntry:
    return HistoryEntry(
        lot_id=entry.lot_id,
        operation=entry.operation,
        user=entry.user,
        at=entry.at,
        state_before=entry.state_before,
        state_after=entry.state_after,
        step=entry.step,
        tool=entry.tool,
        reason=entry.reason,
        data=entry.data,
        seq=seq,
    )


class SqlUnitOfWork:
    """One transaction on a pooled connection. Rolls back unless committed."""

    lots: SqlLotRepository

    def __init__(self, engine: AsyncEngine, *, readonly: bool = False):
        self._engine = engine
        self._readonly = readonly
        self._conn: AsyncConnection | None = None
        self._committed = False

    async def __aenter__(self) -> SqlUnitOfWork:
        conn = await self._engine.connect()
        if self._readonly:
            conn = await conn.execution_options(**{READONLY: True})
        try:
            await conn.begin()
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self.lots = SqlLotRepository(conn)
        return self

    async def commit(self) -> None:
        assert self._conn is not None
        await self._conn.commit()
        self._committed = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if not self._committed:
                await conn.rollback()
        finally:
            await conn.close()


class SqlUnitOfWorkFactory:
    """Makes units of work on one engine (the :class:`mes.ports.UnitOfWorkFactory`)."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    def __call__(self, *, readonly: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, readonly=readonly)
