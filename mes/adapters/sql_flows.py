"""Published flow versions and their approvals on SQLite and PostgreSQL (SQLAlchemy Core).

Rare writes, off every hot path: plain SQLAlchemy async transactions, one per call (as
:mod:`mes.adapters.sql_identity`). A version row is written once; only its state moves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from sqlalchemy import RowMapping, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mes.adapters.database import READONLY
from mes.adapters.errors import classified
from mes.adapters.sql_security import add_event
from mes.adapters.tables import flow_approvals, flow_versions
from mes.domain.flowversions import FIRST_VERSION, Approval, FlowVersion, VersionState
from mes.domain.identity import SecurityEvent


def _approval(m: RowMapping) -> Approval:
    return Approval(
        flow=m["flow"],
        version=m["version"],
        content_hash=m["content_hash"],
        signer=m["signer"],
        printed_name=m["printed_name"],
        meaning=m["meaning"],
        at=m["at"],
        method=m["method"],
    )


def _version(m: RowMapping, approvals: tuple[Approval, ...], with_files: bool) -> FlowVersion:
    return FlowVersion(
        flow=m["flow"],
        version=m["version"],
        content_hash=m["content_hash"],
        author=m["author"],
        published_at=m["published_at"],
        note=m["note"],
        state=VersionState(m["state"]),
        files=dict(m["files"]) if with_files else {},
        approvals=approvals,
        retired_at=m["retired_at"],
        retired_by=m["retired_by"],
    )


class SqlFlowVersionStore:
    def __init__(self, engine: AsyncEngine):
        self._engine = engine

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        with classified():  # a database that fails is the store's error, not SQLAlchemy's
            async with self._engine.begin() as conn:  # BEGIN IMMEDIATE on SQLite
                yield conn

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        # Reads only: a plain BEGIN on SQLite, which a writer holding the lock does not hold up.
        with classified():
            async with self._engine.connect() as plain:
                yield await plain.execution_options(**{READONLY: True})

    async def versions(
        self, flow: str | None = None, *, with_files: bool = True
    ) -> list[FlowVersion]:
        """Every version (of one flow), oldest first, with its approvals."""
        query = select(flow_versions).order_by(flow_versions.c.flow, flow_versions.c.version)
        approvals_query = select(flow_approvals).order_by(flow_approvals.c.seq)
        if flow is not None:
            query = query.where(flow_versions.c.flow == flow)
            approvals_query = approvals_query.where(flow_approvals.c.flow == flow)
        async with self._connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
            approvals: dict[tuple[str, int], list[Approval]] = {}
            for a in (await conn.execute(approvals_query)).mappings().all():
                approvals.setdefault((a["flow"], a["version"]), []).append(_approval(a))
        return [
            _version(r, tuple(approvals.get((r["flow"], r["version"]), ())), with_files)
            for r in rows
        ]

    async def publish(
        self,
        flow: str,
        make: Callable[[int], FlowVersion],
        content_hash: str,
        change: Callable[[FlowVersion], SecurityEvent] | None = None,
    ) -> tuple[FlowVersion, bool]:
        """Write the version ``make(next number)`` unless a version of ``flow`` holds the
        same content already: (the version, True if it is new); with the security event
        ``change`` makes of a new one, in the same transaction."""
        async with self._begin() as conn:
            found = (
                await conn.execute(
                    select(flow_versions.c.version).where(
                        flow_versions.c.flow == flow, flow_versions.c.content_hash == content_hash
                    )
                )
            ).first()
            if found is not None:
                same = int(found[0])
            else:
                newest = (
                    await conn.execute(
                        select(func.max(flow_versions.c.version)).where(
                            flow_versions.c.flow == flow
                        )
                    )
                ).scalar()
                version = make(FIRST_VERSION if newest is None else int(newest) + 1)
                await conn.execute(insert(flow_versions).values(**_values(version)))
                for a in version.approvals:
                    await conn.execute(insert(flow_approvals).values(**_approval_values(a)))
                if change is not None:
                    await add_event(conn, change(version))
                return version, True
        existing = [v for v in await self.versions(flow) if v.version == same]
        return existing[0], False

    async def approve(
        self,
        version: FlowVersion,
        decide: Callable[[FlowVersion], tuple[Sequence[Approval], VersionState]],
        change: Callable[[FlowVersion, FlowVersion], SecurityEvent] | None = None,
    ) -> None:
        """Record the approvals ``decide`` makes of the version as it is in the database now
        (its state and the approvals it has) and put it in the state it says, with the
        security event ``change`` makes of it before and after, in one transaction; nothing
        is written when ``decide`` refuses."""
        async with self._begin() as conn:
            row = await self._row(conn, version.flow, version.version)
            had = (
                (
                    await conn.execute(
                        select(flow_approvals)
                        .where(
                            flow_approvals.c.flow == version.flow,
                            flow_approvals.c.version == version.version,
                        )
                        .order_by(flow_approvals.c.seq)
                    )
                )
                .mappings()
                .all()
            )
            current = _version(row, tuple(_approval(a) for a in had), False)
            approvals, state = decide(current)
            if change is not None:
                after = replace(current, approvals=(*current.approvals, *approvals), state=state)
                await add_event(conn, change(current, after))
            for approval in approvals:
                await conn.execute(insert(flow_approvals).values(**_approval_values(approval)))
            if state.value != row["state"]:
                await conn.execute(
                    update(flow_versions)
                    .where(
                        flow_versions.c.flow == version.flow,
                        flow_versions.c.version == version.version,
                    )
                    .values(state=state.value)
                )

    async def retire(
        self,
        version: FlowVersion,
        by: str,
        at: Any,
        check: Callable[[FlowVersion], None],
        change: Callable[[FlowVersion], SecurityEvent] | None = None,
    ) -> None:
        async with self._begin() as conn:
            row = await self._row(conn, version.flow, version.version)
            current = _version(row, (), False)
            check(current)
            if change is not None:
                await add_event(conn, change(current))
            await conn.execute(
                update(flow_versions)
                .where(
                    flow_versions.c.flow == version.flow,
                    flow_versions.c.version == version.version,
                )
                .values(state=VersionState.RETIRED.value, retired_at=at, retired_by=by)
            )

    @staticmethod
    async def _row(conn: AsyncConnection, flow: str, version: int) -> RowMapping:
        row = (
            (
                await conn.execute(
                    select(flow_versions).where(
                        flow_versions.c.flow == flow, flow_versions.c.version == version
                    )
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            raise LookupError(f"flow {flow} has no version {version}")
        return row


def _values(v: FlowVersion) -> dict[str, Any]:
    return {
        "flow": v.flow,
        "version": v.version,
        "content_hash": v.content_hash,
        "files": dict(v.files),
        "author": v.author,
        "published_at": v.published_at,
        "note": v.note,
        "state": v.state.value,
        "retired_at": v.retired_at,
        "retired_by": v.retired_by,
    }


def _approval_values(a: Approval) -> dict[str, Any]:
    return {
        "flow": a.flow,
        "version": a.version,
        "content_hash": a.content_hash,
        "signer": a.signer,
        "printed_name": a.printed_name,
        "meaning": a.meaning,
        "at": a.at,
        "method": a.method,
    }
