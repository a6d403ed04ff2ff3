"""Builds the driver for each tool of the line from its configuration.

One :class:`DriverFactory` per controller process: it owns the OPC UA session pool, so that the
drivers of tools behind the same OPC UA server (a gateway) share one session; Modbus drivers own
their connections. Nothing is connected before a driver's ``start()``; :meth:`aclose` closes
whatever sessions are still open (after the drivers are closed). The transports are imported
when first needed, so a line without Modbus tools never loads pymodbus, and the other way round.

:meth:`DriverFactory.create_all` builds a whole line's drivers at once, and spreads the tools'
reports evenly over their poll interval (:func:`~drivers.supervision.spread_phases`): the
Modbus tools' polls, and the OPC UA tools' subscriptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from drivers.config import ModbusEndpoint, OpcUaEndpoint, ToolConfig
from drivers.errors import ConfigurationError
from drivers.interface import ToolDriver
from drivers.supervision import spread_phases

if TYPE_CHECKING:
    from drivers.opcua.pool import OpcUaSessionPool


class DriverFactory:
    """``create(config)`` gives a started-on-demand :class:`ToolDriver` for any transport."""

    def __init__(self) -> None:
        self._opcua: OpcUaSessionPool | None = None
        self._closed = False

    @property
    def opcua_sessions(self) -> OpcUaSessionPool | None:
        """The shared OPC UA session pool (None until the first OPC UA driver)."""
        return self._opcua

    def create_all(self, configs: Sequence[ToolConfig]) -> list[ToolDriver]:
        """The drivers of the tools one process drives, in the order given. Their reports come
        at evenly spaced phases of their poll interval (in the order of their ids): Modbus
        tools are polled then, and each OPC UA tool's subscription is created then, so that
        the tools' completions reach the controller one by one, not bunched together."""
        phases = spread_phases((c.id, c.policy.poll_interval_s) for c in configs)
        made: list[ToolDriver] = []
        for c in configs:
            try:
                made.append(self.create(c, poll_phase_s=phases[c.id]))
            except ConfigurationError as exc:  # a map file's error names the file, not the tool
                if exc.tool_id is None:
                    raise ConfigurationError(exc.message, tool_id=c.id) from None
                raise
        return made

    def create(self, config: ToolConfig, *, poll_phase_s: float | None = None) -> ToolDriver:
        """The driver of one tool. ``poll_phase_s`` places the tool's reports in its poll
        interval: a Modbus tool's status reads (default: a phase taken from the tool id), an
        OPC UA tool's subscription (default: created at once)."""
        if self._closed:
            raise ConfigurationError("the driver factory is closed", tool_id=config.id)
        endpoint = config.endpoint
        if isinstance(endpoint, OpcUaEndpoint):
            from drivers.opcua.driver import OpcUaDriver
            from drivers.opcua.pool import OpcUaSessionPool

            if self._opcua is None:
                self._opcua = OpcUaSessionPool()
            return OpcUaDriver(config, self._opcua, poll_phase_s=poll_phase_s)
        if isinstance(endpoint, ModbusEndpoint):
            from drivers.modbus.driver import ModbusDriver

            return ModbusDriver(config, poll_phase_s=poll_phase_s)
        raise ConfigurationError(  # pragma: no cover - the config model admits no other
            f"no driver for transport {endpoint.transport!r}", tool_id=config.id
        )

    async def aclose(self) -> None:
        """Close the shared OPC UA sessions. Idempotent. Close the drivers first: a session
        still used by a driver is closed under it."""
        self._closed = True
        pool, self._opcua = self._opcua, None
        if pool is not None:
            await pool.aclose()
