"""What the controller tells a live feed of its tools (the Sparkplug B edge node): each
observation as the controller makes it. The calls never block and never fail the runner; a
feed that is not connected keeps the latest values for its next birth."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from drivers.model import JobResults, RecipeInfo
from mes.domain.equipment import ToolSnapshot


class ToolFeed(Protocol):
    def tool_seen(self, tool_id: str, snapshot: ToolSnapshot, at: datetime) -> None:
        """What the tool does now (what equipment tracking records, at the same moment):
        ``snapshot.connected`` False when the tool stopped answering."""

    def recipe_active(self, tool_id: str, recipe: RecipeInfo, at: datetime) -> None:
        """The tool runs this recipe, checksum verified, for the step about to begin."""

    def job_measured(self, tool_id: str, results: JobResults, at: datetime) -> None:
        """A job's results were recorded (the lot tracker has them): its measured values."""


class NoFeed:
    def tool_seen(self, tool_id: str, snapshot: ToolSnapshot, at: datetime) -> None:
        return None

    def recipe_active(self, tool_id: str, recipe: RecipeInfo, at: datetime) -> None:
        return None

    def job_measured(self, tool_id: str, results: JobResults, at: datetime) -> None:
        return None
