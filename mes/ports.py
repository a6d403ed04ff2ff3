"""The lot tracker's seams: what the service layer needs from storage.

The SQL adapter (:mod:`mes.adapters.sql`) implements these on SQLite and PostgreSQL; the
in-memory one (:mod:`mes.adapters.memory`) serves fast tests of the service layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol

from mes.domain.equipment import ControllerRecord, E10Change, ToolPart, ToolRecord
from mes.domain.model import (
    Carrier,
    Change,
    HistoryEntry,
    JobRecord,
    Lot,
    LotHead,
    LotState,
    SiteReject,
)


class LotRepository(Protocol):
    """Lots and everything that belongs to them, inside one unit of work."""

    async def get(self, lot_id: str) -> Lot | None:
        """The lot as stored now, or None."""
        ...

    async def carriers(self, lot_id: str) -> list[Carrier]: ...

    async def rejects(self, lot_id: str) -> list[SiteReject]:
        """Every rejected site of the lot's carriers (wherever the rejection happened)."""
        ...

    async def history(self, lot_id: str, *, before_seq: int | None = None) -> list[HistoryEntry]:
        """The lot's history in order; only entries before ``before_seq`` when given."""
        ...

    async def children(self, lot_id: str) -> list[str]:
        """Ids of lots split from this one."""
        ...

    async def find(
        self, *, states: Sequence[LotState] = (), flow: str | None = None, limit: int = 1000
    ) -> list[Lot]:
        """Lots by state and flow, most urgent first (priority, then age)."""
        ...

    async def job(self, job_id: str) -> JobRecord | None: ...

    async def jobs_of(
        self, lot_id: str, path_index: int, *, and_later: bool = False
    ) -> list[JobRecord]:
        """Jobs of the lot's carriers at step occurrence ``path_index`` (and after it, with
        ``and_later``), in the order they started."""
        ...

    async def heads(self, states: Sequence[LotState]) -> list[LotHead]:
        """The heads of lots in ``states``, most urgent first (priority, then age)."""
        ...

    async def save(self, change: Change) -> tuple[HistoryEntry, ...]:
        """Write a change: lots (inserted, or updated if their version is still the expected
        one, else ConcurrentUpdate), carriers, rejects, history and outbox. Returns the
        history entries with their sequence numbers."""
        ...


class EquipmentRepository(Protocol):
    """Tools, their E10 state changes and controller heartbeats, inside one unit of work."""

    async def tool(self, tool_id: str) -> ToolRecord | None: ...

    async def tools(self, line: str | None = None) -> list[ToolRecord]: ...

    async def add_tool(self, tool: ToolRecord) -> None: ...

    async def update_tool(self, tool: ToolRecord, part: ToolPart) -> None:
        """Write one part of the tool's record (the rest stays as stored)."""
        ...

    async def add_change(self, change: E10Change) -> None: ...

    async def changes(self, tool_id: str, start: datetime, end: datetime) -> list[E10Change]:
        """Changes within [start, end), preceded by the last one before ``start``."""
        ...

    async def controller(self, name: str) -> ControllerRecord | None: ...

    async def controllers(self) -> list[ControllerRecord]: ...

    async def save_controller(self, record: ControllerRecord) -> None: ...


class UnitOfWork(Protocol):
    """One transaction. Leaving the block without :meth:`commit` rolls everything back."""

    @property
    def lots(self) -> LotRepository:
        """The lots, as this transaction sees them (valid inside the ``async with``)."""
        ...

    @property
    def equipment(self) -> EquipmentRepository:
        """The tools, as this transaction sees them."""
        ...

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...

    async def save_and_commit(self, changes: Sequence[Change]) -> list[tuple[HistoryEntry, ...]]:
        """Write ``changes`` in order (as :meth:`LotRepository.save`) and commit, in one step:
        a store may send it all at once. If one of them cannot be written, none is. For each
        change, the history entries written, with their sequence numbers."""
        ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, readonly: bool = False) -> UnitOfWork:
        """A new unit of work; ``readonly`` ones take no write lock."""
        ...
