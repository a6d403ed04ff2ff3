"""Lot tracker fixtures: the same service on every store (memory, SQLite file, PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest

from flows import FlowLibrary, load_library
from mes.adapters.database import create_engine
from mes.adapters.memory import MemoryUnitOfWorkFactory
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.equipment import EquipmentService
from mes.ports import UnitOfWorkFactory
from mes.service import LotService


@pytest.fixture(scope="session")
def library() -> FlowLibrary:
    return load_library()


class Clock:
    """A clock that ticks one second per reading, so history order is visible in times."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


STORES = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[UnitOfWorkFactory]:
    """Units of work on a fresh, migrated store: memory, a SQLite file, or PostgreSQL."""
    if request.param == "memory":
        yield MemoryUnitOfWorkFactory()
        return
    name = "migrated_sqlite_url" if request.param == "sqlite" else "migrated_postgres_url"
    engine = create_engine(request.getfixturevalue(name))
    try:
        yield SqlUnitOfWorkFactory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def service(store: UnitOfWorkFactory, library: FlowLibrary, clock: Clock) -> LotService:
    """A lot service on a fresh store (every store in turn)."""
    return LotService(store, library, clock)


@pytest.fixture
def equipment(store: UnitOfWorkFactory, clock: Clock) -> EquipmentService:
    """An equipment service on a fresh store (every store in turn)."""
    return EquipmentService(store, clock)


ServiceFactory = Callable[[], LotService]
