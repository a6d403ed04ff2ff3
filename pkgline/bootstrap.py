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
from mes.adapters.database import (
    DEFAULT_TIMEOUTS,
    DatabaseTimeouts,
    async_url,
    create_engine,
    default_database_url,
)
from mes.adapters.health import DatabaseHealth
from mes.adapters.schema import require_current_schema
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain.authority import NotAuthorized, Principal
from mes.equipment import EquipmentService
from mes.flowversions import FlowVersionService, VersionedFlows
from mes.identity import IdentityService
from mes.interlocks import QualificationService
from mes.service import LotService, utc_now


@cache
def flow_library() -> FlowLibrary:
    """The packaged flows, loaded and validated once per process."""
    return load_library()


def resolve_url(url: str | None) -> str:
    return url or default_database_url()


MIGRATION_TIMEOUTS = DatabaseTimeouts(statement_s=600.0)
"""Schema migrations may rewrite a large table in one statement: they get minutes for it
(the connect timeout stays the same)."""


@asynccontextmanager
async def open_engine(
    url: str | None, *, pool_size: int = 5, timeouts: DatabaseTimeouts = DEFAULT_TIMEOUTS
) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(resolve_url(url), pool_size=pool_size, timeouts=timeouts)
    try:
        yield engine
    finally:
        await engine.dispose()


@asynccontextmanager
async def open_lot_service(
    url: str | None,
    *,
    check_schema: bool = True,
    pool_size: int = 5,
    principal: Principal | None = None,
) -> AsyncIterator[LotService]:
    """A lot service on the database at ``url`` (default: ``$PKGLINE_DB`` or the user's
    SQLite file), acting for ``principal`` (default: direct mode, :func:`direct_mode`).
    Refuses a database whose schema is not this code's."""
    async with open_engine(url, pool_size=pool_size) as engine:
        if check_schema:
            await require_current_schema(engine)
        services = services_for(engine, principal or direct_mode())
        if check_schema:
            await load_versions(services)
        yield services.lots


@dataclass(frozen=True, slots=True)
class Services:
    """The lot tracker and equipment tracking on one database."""

    lots: LotService
    equipment: EquipmentService
    qualifications: QualificationService
    flow_versions: FlowVersionService


@asynccontextmanager
async def open_services(
    url: str | None,
    *,
    check_schema: bool = True,
    pool_size: int = 5,
    principal: Principal | None = None,
) -> AsyncIterator[Services]:
    """Lots and equipment on the database at ``url``, sharing one engine (the operator's view
    of the line reads both)."""
    async with open_engine(url, pool_size=pool_size) as engine:
        if check_schema:
            await require_current_schema(engine)
        services = services_for(engine, principal or direct_mode())
        if check_schema:
            await load_versions(services)
        yield services


async def load_versions(services: Services) -> None:
    """Read the published flow versions, so that each lot is checked against its own."""
    if services.lots.versions is not None:
        await services.lots.versions.load()


async def seed_flow_versions(engine: AsyncEngine) -> list[str]:
    """Publish and approve the packaged flow files as version 1 (author: the system) of
    every flow that has no version yet (``db upgrade``): the flows seeded."""
    from mes.adapters.sql_flows import SqlFlowVersionStore

    versions = FlowVersionService(SqlFlowVersionStore(engine), utc_now)
    return await versions.seed(list(flow_library().flows))


def services_for(
    engine: AsyncEngine, principal: Principal, *, health: DatabaseHealth | None = None
) -> Services:
    """Lots and equipment on ``engine``, acting for ``principal`` (each call may name
    another), refusals recorded in the database's security log; ``health`` is told the end
    of every unit of work (the line controller's STATUS)."""
    from mes.adapters.sql_flows import SqlFlowVersionStore
    from mes.adapters.sql_identity import SqlSecurityLog

    factory = SqlUnitOfWorkFactory(engine, health=health)
    log = SqlSecurityLog(engine)
    store = SqlFlowVersionStore(engine)
    return Services(
        LotService(
            factory,
            flow_library(),
            principal=principal,
            security=log,
            versions=VersionedFlows(store),
        ),
        EquipmentService(factory, principal=principal, security=log),
        QualificationService(factory, flow_library(), utc_now),
        FlowVersionService(store, utc_now, principal=principal, security=log),
    )


def os_account() -> str:
    """The name of the OS account running this process."""
    import getpass
    import os

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or str(os.getuid())


def direct_mode() -> Principal:
    """Direct database mode for lot and tool commands: the OS account, holding every role
    (recorded as such). Not yet limited to the database file's owner: today's installation
    lets the operators of group pkgline write the file (deploy/install.sh) until the server
    (issue 14) takes the database for itself; then direct mode is the owner's alone, as for
    ``pkgline user`` (:func:`direct_principal`)."""
    return Principal.file_owner(os_account())


def direct_principal(url: str | None) -> Principal:
    """Direct database mode: the OS account, holding every role, for a database the account
    may write anyway (docs/security.md). A SQLite file that belongs to another account is
    refused: that database is its owner's (or its server's) to change."""
    import os
    from pathlib import Path

    target = async_url(resolve_url(url))
    account = os_account()
    if target.get_backend_name() == "sqlite" and target.database:
        path = Path(target.database).expanduser()
        if path.exists() and path.stat().st_uid != os.getuid():
            raise NotAuthorized(
                f"direct mode: the database file {path} is not yours ({account}); it belongs "
                "to another account, whose server or owner changes it",
                needed=(),
            )
    return Principal.file_owner(account)


@asynccontextmanager
async def open_identity(url: str | None) -> AsyncIterator[IdentityService]:
    """The identity service (users, logins, API keys) on the database at ``url``."""
    from mes.adapters.passwords import Argon2Passwords  # argon2: only where passwords are
    from mes.adapters.sql_identity import SqlIdentityStore

    async with open_engine(url) as engine:
        await require_current_schema(engine)
        yield IdentityService(SqlIdentityStore(engine), Argon2Passwords())
