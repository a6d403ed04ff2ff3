"""What the controller tells a live feed of its tools (the Sparkplug B edge node): each
observation as the controller makes it, and the declarations people make of its tools
(``pkgline tool down``, through any client: :class:`DeclarationWatch` reads them). The calls
never block and never fail the runner; a feed that is not connected keeps the latest values
for its next birth."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from drivers.model import JobResults, RecipeInfo
from mes.adapters.driver import DatabaseUnavailable
from mes.domain.equipment import ToolSnapshot
from mes.domain.tool_down import InForce
from mes.equipment import EquipmentService
from mes.service_core import utc_now
from pkgline.controller.outage import DatabaseOutage


class ToolFeed(Protocol):
    def tool_seen(self, tool_id: str, snapshot: ToolSnapshot, at: datetime) -> None:
        """What the tool does now (what equipment tracking records, at the same moment):
        ``snapshot.connected`` False when the tool stopped answering."""

    def recipe_active(self, tool_id: str, recipe: RecipeInfo, at: datetime) -> None:
        """The tool runs this recipe, checksum verified, for the step about to begin."""

    def job_measured(self, tool_id: str, results: JobResults, at: datetime) -> None:
        """A job's results were recorded (the lot tracker has them): its measured values."""

    @property
    def wants_declarations(self) -> bool:
        """Whether the controller should read people's declarations for :meth:`declared`."""

    def declared(self, in_force: Mapping[str, InForce], at: datetime) -> None:
        """The declarations in force on the line's tools (``pkgline tool down``), read from
        equipment tracking: a tool left out is not declared down."""


class NoFeed:
    def tool_seen(self, tool_id: str, snapshot: ToolSnapshot, at: datetime) -> None:
        return None

    def recipe_active(self, tool_id: str, recipe: RecipeInfo, at: datetime) -> None:
        return None

    def job_measured(self, tool_id: str, results: JobResults, at: datetime) -> None:
        return None

    @property
    def wants_declarations(self) -> bool:
        return False

    def declared(self, in_force: Mapping[str, InForce], at: datetime) -> None:
        return None


DECLARATIONS_POLL_S = 1.0
"""How often the controller reads the declarations in force on its tools for a feed that
wants them: a ``tool down`` reaches SCADA within a second or so."""


class DeclarationWatch:
    """Reads the declarations in force on a line's tools (one indexed read of the few tools
    declared; the only channel between the clients that declare and the controller is the
    database, and SQLite has no notifications) and tells the feed, every ``poll_s``, from the
    controller's start. While the database does not answer, the feed keeps what it was told
    last (the outage is logged on its edges, with the rest)."""

    def __init__(
        self,
        line: str,
        equipment: EquipmentService,
        feed: ToolFeed,
        *,
        outage: DatabaseOutage,
        poll_s: float = DECLARATIONS_POLL_S,
    ) -> None:
        self._line = line
        self._equipment = equipment
        self._feed = feed
        self._outage = outage
        self._poll_s = poll_s

    async def run(self) -> None:
        """Until cancelled."""
        while True:
            try:
                in_force = await self._equipment.declarations_in_force(self._line)
            except DatabaseUnavailable as exc:
                self._outage.failed("tool declarations", exc)
            else:
                self._feed.declared(in_force, utc_now())
            await asyncio.sleep(self._poll_s)
