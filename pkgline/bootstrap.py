"""The one place that wires pkgline together: database engine, lot store, flows, service.

Entry points (CLI commands, the daemon, benchmarks) open what they need here, as async
context managers that close everything they opened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from flows import Flow, FlowLibrary
from mes.adapters.database import (
    DEFAULT_TIMEOUTS,
    DatabaseTimeouts,
    async_url,
    create_engine,
    default_database_url,
)
from mes.adapters.health import DatabaseHealth
from mes.adapters.outbox import OutboxSignal
from mes.adapters.schema import SchemaMismatch, require_current_schema
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain.authority import Action, NotAuthorized, Principal
from mes.domain.signatures import SignaturePolicy, Signer
from mes.durables import DurableService
from mes.equipment import EquipmentService
from mes.flowversions import Builds, FlowVersionService, VersionedFlows
from mes.identity import IdentityService
from mes.interlocks import QualificationService
from mes.materials import MaterialService
from mes.reasons import ReasonService
from mes.service import LotService, utc_now
from mes.spc import SpcService
from pkgline.accounts import account_name
from pkgline.accounts import os_account as os_account
from pkgline.accounts import printed_name as printed_name


@cache
def flow_library() -> FlowLibrary:
    """The packaged flows, loaded and validated once per process (and kept built in the
    user's cache directory for the next process: :mod:`pkgline.flowcache`)."""
    from pkgline.flowcache import cached_library

    return cached_library()


@cache
def flow_builds() -> Builds:
    """The flows of published versions, built once per content hash and kept built in the
    user's cache directory for the next process (:class:`pkgline.flowcache.VersionShelf`)."""
    from pkgline.flowcache import VersionShelf

    return Builds(VersionShelf())


def resolve_url(url: str | None) -> str:
    return url or default_database_url()


MIGRATION_TIMEOUTS = DatabaseTimeouts(statement_s=600.0)
"""Schema migrations may rewrite a large table in one statement: they get minutes for it
(the connect timeout stays the same)."""


def require_database_file(url: str | None) -> None:
    """A SQLite database that is to be read or changed exists: refused (SchemaMismatch, with
    what creates one) when its file does not, before anything is opened. Opening would make
    an empty file there, and a mistyped --db a database of its own."""
    target = async_url(resolve_url(url))
    if target.get_backend_name() != "sqlite" or target.database in (None, "", ":memory:"):
        return
    path = Path(target.database).expanduser()
    if not path.exists():
        raise SchemaMismatch(
            f"there is no database at {path}: 'pkgline db upgrade' with this --db creates one"
        )


@asynccontextmanager
async def open_engine(
    url: str | None,
    *,
    pool_size: int = 5,
    timeouts: DatabaseTimeouts = DEFAULT_TIMEOUTS,
    must_exist: bool = False,
    role: str | None = None,
) -> AsyncIterator[AsyncEngine]:
    """An engine on ``url``; ``must_exist``: refused when it is a SQLite file that does not
    exist (:func:`require_database_file`), where it would be created empty; ``role``
    (PostgreSQL): the role its sessions act as (:func:`mes.adapters.database.create_engine`)."""
    if must_exist:
        require_database_file(url)
    engine = create_engine(resolve_url(url), pool_size=pool_size, timeouts=timeouts, role=role)
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
    signatures: SignaturePolicy | None = None,
) -> AsyncIterator[LotService]:
    """A lot service on the database at ``url`` (default: ``$PKGLINE_DB`` or the user's
    SQLite file), acting for ``principal`` (default: direct mode, :func:`direct_principal`:
    refused on another account's SQLite file),
    asking for the signatures ``signatures`` says (default: one signer each).
    Refuses a database whose schema is not this code's."""
    acting = principal or direct_principal(url)  # refused before the file is opened
    async with open_engine(url, pool_size=pool_size, must_exist=check_schema) as engine:
        if check_schema:
            await require_current_schema(engine)
        services = services_for(engine, acting, signatures=signatures)
        if check_schema:
            await load_versions(services)
        yield services.lots


@dataclass(frozen=True, slots=True)
class Services:
    """The lot tracker and equipment tracking on one database."""

    lots: LotService
    equipment: EquipmentService
    qualifications: QualificationService
    durables: DurableService
    materials: MaterialService
    reasons: ReasonService
    spc: SpcService
    flow_versions: FlowVersionService


@asynccontextmanager
async def open_services(
    url: str | None,
    *,
    check_schema: bool = True,
    pool_size: int = 5,
    principal: Principal | None = None,
    signatures: SignaturePolicy | None = None,
) -> AsyncIterator[Services]:
    """Lots and equipment on the database at ``url``, sharing one engine (the operator's view
    of the line reads both), acting for ``principal`` (default: direct mode,
    :func:`direct_principal`: refused on another account's SQLite file); ``signatures``: how
    many sign each signed operation."""
    acting = principal or direct_principal(url)  # refused before the file is opened
    async with open_engine(url, pool_size=pool_size, must_exist=check_schema) as engine:
        if check_schema:
            await require_current_schema(engine)
        services = services_for(engine, acting, signatures=signatures)
        if check_schema:
            await load_versions(services)
        yield services


async def load_versions(services: Services, *, every: bool = False) -> None:
    """Read the published flow versions (states and hashes: a lot's version is built when
    the lot is read), so that each lot is checked against its own; ``every``: build them
    all now (a long-running process)."""
    if services.lots.versions is not None:
        await services.lots.versions.load(every=every)


async def seed_flow_versions(engine: AsyncEngine) -> list[str]:
    """Publish and approve the packaged flow files as version 1 (author: the system) of
    every flow that has no version yet (``db upgrade``): the flows seeded."""
    from mes.adapters.sql_flows import SqlFlowVersionStore

    versions = FlowVersionService(SqlFlowVersionStore(engine), utc_now)
    return await versions.seed(list(flow_library().flows))


def services_for(
    engine: AsyncEngine,
    principal: Principal,
    *,
    health: DatabaseHealth | None = None,
    signatures: SignaturePolicy | None = None,
    outbox: OutboxSignal | None = None,
) -> Services:
    """Lots and equipment on ``engine``, acting for ``principal`` (each call may name
    another), refusals recorded in the database's security log; ``health`` is told the end
    of every unit of work (the line controller's STATUS); signed operations need the
    signers ``signatures`` says (line.toml ``[signatures]``; default one each), their
    passwords checked by the identity service on the same engine; ``outbox`` is told every
    commit of outbox events (the event relay of the same process)."""
    from mes.adapters.sql_flows import SqlFlowVersionStore
    from mes.adapters.sql_identity import SqlSecurityLog

    factory = SqlUnitOfWorkFactory(engine, health=health, outbox=outbox)
    log = SqlSecurityLog(engine)
    store = SqlFlowVersionStore(engine)
    versions = VersionedFlows(store, flow_builds())
    return Services(
        LotService(
            factory,
            flow_library(),
            principal=principal,
            security=log,
            versions=versions,
            signatures=signatures,
            verifier=_Signers(engine),
        ),
        EquipmentService(factory, principal=principal, security=log),
        QualificationService(factory, flow_library(), utc_now, principal=principal, security=log),
        DurableService(factory, utc_now, principal=principal, security=log),
        MaterialService(
            factory,
            utc_now,
            principal=principal,
            security=log,
            signatures=signatures,
            verifier=_Signers(engine),
        ),
        ReasonService(factory, utc_now, principal=principal, security=log),
        SpcService(
            factory, flow_library(), utc_now, principal=principal, security=log, versions=versions
        ),
        FlowVersionService(
            store,
            utc_now,
            principal=principal,
            security=log,
            builds=flow_builds(),
            signatures=signatures,
            verifier=_Signers(engine),
            unreported=measured_not_reported,
            untaken=recipe_not_taken,
        ),
    )


def measured_not_reported(flow: Flow) -> list[str]:
    """Each measured value of ``flow`` at a tool step that the step's equipment class does
    not report (drivers/classes.yaml), in words: a version that renames one (a typo, or the
    engineer's own name for it) would check a value no tool ever gives, silently."""
    from drivers.catalogue import load_catalogue
    from drivers.model import EquipmentClass

    catalogue = load_catalogue()
    out = []
    for code, step in flow.steps.items():
        if step.equipment_class == "manual":
            continue
        reported = catalogue[EquipmentClass(step.equipment_class)].measured
        for name, value in step.measured.items():
            if value.tool_name not in reported:
                alias = f" (tool_value {value.tool_name})" if value.tool_name != name else ""
                out.append(
                    f"{code} measured: {name}{alias} is not reported by a "
                    f"{step.equipment_class}; it reports {', '.join(sorted(reported))}"
                )
    return out


LOT_RECORD_VALUES = frozenset(
    {
        ("STIFFENER_ATTACH", "stiffener_material"),
        ("STIFFENER_ATTACH", "stiffener_opening_rows"),
        ("STIFFENER_ATTACH", "stiffener_opening_cols"),
        ("HEAT_SINK_ATTACH", "heat_sink_material"),
        ("HEAT_SINK_ATTACH", "heat_sink_area_mm2"),
        ("HEAT_SINK_ATTACH", "standoff_height_um"),
        ("SUBSTRATE_BOND", "substrate_material"),
    }
)
"""(step, recipe value): the material and claim values a tool step records for the lot and
its claimed limits, which no tool takes (docs/flow-files.md, "Values")."""


def recipe_not_taken(flow: Flow) -> list[str]:
    """Each recipe value of ``flow`` at a tool step that the step's equipment class does not
    take (drivers/classes.yaml) and that is none of :data:`LOT_RECORD_VALUES`, in words: the
    controller sends a tool only the values its class takes, so a version that renames one (a
    typo, ``bond_temprature_c: {default: 140}``) would record 140 for every lot while the
    tool bonds at the default, silently."""
    from drivers.catalogue import load_catalogue
    from drivers.model import EquipmentClass

    catalogue = load_catalogue()
    out = []
    for code, step in flow.steps.items():
        if step.equipment_class == "manual":
            continue
        takes = catalogue[EquipmentClass(step.equipment_class)].recipe
        for name, value in step.recipe.items():
            if value.tool_name in takes or (code, name) in LOT_RECORD_VALUES:
                continue
            alias = f" (tool_value {value.tool_name})" if value.tool_name != name else ""
            out.append(
                f"{code} recipe: {name}{alias} is not taken by a {step.equipment_class}; it "
                f"takes {', '.join(sorted(takes))}"
            )
    return out


class _Signers:
    """The identity service, made on the first password signature (argon2 is imported only
    where a password is checked: most commands never do)."""

    def __init__(self, engine: AsyncEngine):
        self._engine = engine
        self._identity: IdentityService | None = None

    async def verify_signer(
        self, username: str, password: str, *, action: Action, lot_id: str | None = None
    ) -> Signer:
        if self._identity is None:
            from mes.adapters.passwords import Argon2Passwords
            from mes.adapters.sql_identity import SqlIdentityStore

            self._identity = IdentityService(SqlIdentityStore(self._engine), Argon2Passwords())
        return await self._identity.verify_signer(username, password, action=action, lot_id=lot_id)


def direct_principal(url: str | None) -> Principal:
    """Direct database mode: the OS account, holding every role, for a database the account
    may write anyway (docs/security.md). A SQLite file that belongs to another account is
    refused, for every command (lots, tools, users, durables, materials, ...): where a server
    runs, the database is its alone, and its clients go through it. On PostgreSQL the
    database's own privileges are the authority (only the server's role may write:
    deploy/install.sh)."""
    import os
    from pathlib import Path

    target = async_url(resolve_url(url))
    account = os_account()
    if target.get_backend_name() == "sqlite" and target.database:
        path = Path(target.database).expanduser()
        try:
            owner_uid = path.stat().st_uid
        except FileNotFoundError:
            owner_uid = os.getuid()  # a new database: the account's own once created
        if owner_uid != os.getuid():
            raise NotAuthorized(
                f"direct mode: the database file {path} belongs to {account_name(owner_uid)}, "
                f"not to you ({account}): only its owner may use it directly. Go through the "
                "pkgline server instead (--server URL or PKGLINE_SERVER; the local socket "
                "unix:///run/pkgline/api.sock where the server runs)",
                needed=(),
            )
    return Principal.file_owner(account, printed_name(account))


@asynccontextmanager
async def open_identity(url: str | None) -> AsyncIterator[IdentityService]:
    """The identity service (users, logins, API keys) on the database at ``url``."""
    from mes.adapters.passwords import Argon2Passwords  # argon2: only where passwords are
    from mes.adapters.sql_identity import SqlIdentityStore

    async with open_engine(url, must_exist=True) as engine:
        await require_current_schema(engine)
        yield IdentityService(SqlIdentityStore(engine), Argon2Passwords())
