"""The one place that wires pkgline together: database engine, lot store, flows, service.

Entry points (CLI commands, the daemon, benchmarks) open what they need here, as async
context managers that close everything they opened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache

from sqlalchemy.ext.asyncio import AsyncEngine

from flows import FlowLibrary, load_library
from mes.adapters.database import create_engine, default_database_url
from mes.adapters.schema import require_current_schema
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.equipment import EquipmentService
from mes.interlocks import QualificationService
from mes.service import LotService, utc_now


@cache
def flow_library() -> FlowLibrary:
    """The packaged flows, loaded and validated once per process."""
    return load_library()


def resolve_url(url: str | None) -> str:
    return url or default_database_url()


@asynccontextmanager
async def open_engine(url: str | None, *, pool_size: int = 5) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(resolve_url(url), pool_size=pool_size)
    try:
        yield engine
    finally:
        await engine.dispose()


@asynccontextmanager
async def open_lot_service(
    url: str | None, *, check_schema: bool = True, pool_size: int = 5
) -> AsyncIterator[LotService]:
    """A lot service on the database at ``url`` (default: ``$PKGLINE_DB`` or the user's
    SQLite file). Refuses a database whose schema is not this code's."""
    async with open_engine(url, pool_size=pool_size) as engine:
        if check_schema:
            await require_current_schema(engine)
        yield LotService(SqlUnitOfWorkFactory(engine), flow_library())


@dataclass(frozen=True, slots=True)
class Services:
    """The lot tracker and equipment tracking on one database."""

    lots: LotService
    equipment: EquipmentService
    qualifications: QualificationService


@asynccontextmanager
async def open_services(
    url: str | None, *, check_schema: bool = True, pool_size: int = 5
) -> AsyncIterator[Services]:
    """Lots and equipment on the database at ``url``, sharing one engine (the operator's view
    of the line reads both)."""
    async with open_engine(url, pool_size=pool_size) as engine:
        if check_schema:
            await require_current_schema(engine)
        factory = SqlUnitOfWorkFactory(engine)
        yield Services(
            LotService(factory, flow_library()),
            EquipmentService(factory),
            QualificationService(factory, flow_library(), utc_now),
        )
