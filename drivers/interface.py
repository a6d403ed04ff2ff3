"""The one driver interface: a tool in equipment words, whatever protocol it speaks.

The controller holds a :class:`ToolDriver` per tool and never sees a register or a node id.
A driver owns its connection: after :meth:`ToolDriver.start` it keeps the connection up on
its own (reconnecting with capped, jittered backoff) and reports connectivity and status
changes through :meth:`ToolDriver.events`. Requests made while the tool is unreachable fail
at once with :class:`~drivers.errors.ToolUnreachable`; no request ever hangs past its timeout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from drivers.model import (
    EquipmentClass,
    Job,
    JobResults,
    Mode,
    Recipe,
    RecipeInfo,
    ToolIdentity,
    ToolStatus,
)


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """The tool's status differs from the last one reported (state, mode, progress, alarm,
    job or results flag)."""

    tool_id: str
    status: ToolStatus


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The tool stopped answering (or its connection dropped). Reported once, on the edge."""

    tool_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ConnectionRestored:
    """The tool answers again. A :class:`StatusChanged` with its current status follows."""

    tool_id: str


ToolEvent: TypeAlias = StatusChanged | ConnectionLost | ConnectionRestored


class ToolDriver(Protocol):
    """Controls one tool. Every method may raise a :class:`~drivers.errors.DriverError`."""

    @property
    def tool_id(self) -> str: ...

    @property
    def equipment_class(self) -> EquipmentClass: ...

    @property
    def connected(self) -> bool:
        """Whether the tool answered the last request or keep-alive."""
        ...

    @property
    def recipe_parameters(self) -> frozenset[str]:
        """The recipe body names this tool accepts (from its map / class catalogue)."""
        ...

    async def start(self) -> None:
        """Begin supervising the connection. Returns after the first connection attempt,
        whether or not it succeeded; the driver keeps retrying in the background."""
        ...

    async def close(self) -> None:
        """Stop supervising, close the connection, end :meth:`events`. Idempotent."""
        ...

    def events(self) -> AsyncIterator[ToolEvent]:
        """Connectivity and status changes, in order, until :meth:`close`.

        Modbus drivers poll at the configured interval and report only changes; OPC UA drivers
        subscribe. Each call returns an independent stream that starts with the current
        connectivity (and status, when connected)."""
        ...

    async def identify(self) -> ToolIdentity: ...

    async def status(self) -> ToolStatus:
        """Read state, mode, progress, job, alarm and results flag in one request."""
        ...

    async def set_mode(self, mode: Mode) -> None: ...

    async def load_recipe(self, recipe: Recipe) -> None:
        """Download a recipe. The tool goes to SETUP, then READY. Refused while busy."""
        ...

    async def active_recipe(self) -> RecipeInfo | None:
        """The tool's active recipe, with the checksum the tool computed; None when IDLE."""
        ...

    async def status_and_recipe(self) -> tuple[ToolStatus, RecipeInfo | None]:
        """:meth:`status` and :meth:`active_recipe` together: in one request where the
        protocol can (OPC UA: one Read of both), else one after the other."""
        ...

    async def verify_recipe(self, expected: Recipe) -> RecipeInfo:
        """Check that the active recipe is ``expected``; raise RecipeMismatch if not."""
        ...

    async def start_job(self, job: Job) -> None:
        """Start one carrier. Only in READY; the job id names the results later."""
        ...

    async def abort(self) -> None: ...

    async def reset_alarm(self) -> None:
        """Clear ALARM or ABORTED: back to READY if the recipe is still active, else IDLE.
        Where the tool does not allow it (not in ALARM or ABORTED, or the alarm's cause is
        still there) CommandRefused with the tool's reason, never ToolAlarmed."""
        ...

    async def results(self) -> JobResults | None:
        """The finished job's results, kept by the tool until acknowledged; None if none."""
        ...

    async def acknowledge_results(self, job_id: str) -> None:
        """Tell the tool the results of ``job_id`` are recorded: it may forget them."""
        ...
