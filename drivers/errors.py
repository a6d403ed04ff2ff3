"""The drivers' own exceptions: every transport failure is translated into one of these, once,
at the boundary (``raise ToolTimeout(...) from exc``), with the tool and the request kept.

::

    DriverError                  root: anything a driver raises
    ├── ConfigurationError       a map file or endpoint setting is invalid (names file and line)
    ├── ToolUnreachable          no connection to the tool (refused, lost, not yet connected)
    │   └── SecurityRefused      a certificate or a user was refused, by either side (the
    │                            reason says which and why: untrusted, expired, revoked, ...)
    ├── ToolTimeout              the tool did not answer in time
    ├── ProtocolError            the tool answered garbage: malformed values, Modbus exception
    │                            responses, unexpected OPC UA status codes
    ├── CommandRefused           the tool understood the command and said no (state, reason)
    │   └── RecipeMismatch       the active recipe is not the one expected
    └── ToolAlarmed              the tool is in ALARM: the alarm is attached
"""

from __future__ import annotations

from drivers.model import Alarm, RecipeInfo


class DriverError(Exception):
    """Root of the drivers' exceptions. ``tool_id`` and ``request`` say who and what."""

    def __init__(self, message: str, *, tool_id: str | None = None, request: str | None = None):
        self.message = message
        self.tool_id = tool_id
        self.request = request
        super().__init__(message)

    def __str__(self) -> str:
        where = []
        if self.tool_id:
            where.append(f"tool {self.tool_id}")
        if self.request:
            where.append(self.request)
        prefix = f"{', '.join(where)}: " if where else ""
        return f"{prefix}{self.message}"


class ConfigurationError(DriverError):
    """A map file or an endpoint setting is invalid."""


class ToolUnreachable(DriverError):
    """There is no connection to the tool."""


class SecurityRefused(ToolUnreachable):
    """The secure connection was refused: the tool's certificate failed our check, or the tool
    refused our certificate or user. Not retried faster than any other unreachable tool, and
    logged once, on the edge, with the reason."""


class ToolTimeout(DriverError):
    """The tool did not answer within the configured time."""


class ProtocolError(DriverError):
    """The tool's answer cannot be understood."""


class CommandRefused(DriverError):
    """The tool refused a command. ``code`` is the tool's refusal code when it gave one."""

    def __init__(
        self,
        message: str,
        *,
        tool_id: str | None = None,
        request: str | None = None,
        code: int | None = None,
    ):
        super().__init__(message, tool_id=tool_id, request=request)
        self.code = code


class RecipeMismatch(CommandRefused):
    """The tool's active recipe is not the one the controller expects."""

    def __init__(
        self,
        *,
        expected: RecipeInfo,
        actual: RecipeInfo | None,
        tool_id: str | None = None,
    ):
        found = (
            "no active recipe"
            if actual is None
            else f"{actual.name} v{actual.version} checksum {actual.checksum:08x}"
        )
        super().__init__(
            f"active recipe mismatch: expected {expected.name} v{expected.version} "
            f"checksum {expected.checksum:08x}, tool has {found}",
            tool_id=tool_id,
            request="verify_recipe",
        )
        self.expected = expected
        self.actual = actual


class ToolAlarmed(DriverError):
    """The tool is in ALARM."""

    def __init__(self, alarm: Alarm, *, tool_id: str | None = None, request: str | None = None):
        super().__init__(
            f"alarm {alarm.code} ({alarm.severity.name}): {alarm.text}",
            tool_id=tool_id,
            request=request,
        )
        self.alarm = alarm
