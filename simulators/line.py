"""A whole simulated line from a line configuration: :class:`SimulatedLine`.

Every tool of a :class:`~pkgline.config.LineConfig` that has a ``simulation`` table becomes a
:class:`~simulators.engine.VirtualTool` behind the server its endpoint names, so that the
controller (``pkgline serve``) reading the same file finds it where it looks:

- a Modbus tool gets a :class:`~simulators.modbus_server.ModbusToolServer` of its own on the
  endpoint's host and port, speaking the endpoint's register map (default: its class's);
- OPC UA tools whose endpoints name the same host and port are served together by ONE
  :class:`~simulators.opcua_server.OpcUaToolServer` (a gateway), each as the object
  ``Tools/<object_name>`` (default: the tool id).

An OPC UA gateway whose tools' endpoints are secure (the default; docs/security.md) serves
only secure endpoints, with the certificate in the line's ``security.simulator_pki`` (made on
the first start when there is none, :func:`~simulators.certificate.simulator_pki`, naming
the hosts the tools answer at: :func:`served_hosts`), trusting the controllers in that
PKI's trust list. Each tool's operators are the users its endpoint names: the user of the
``credentials`` file, or of the ``user_certificate``, the controller connects with.

Tools without a ``simulation`` table are real tools: the simulated line leaves them alone.
``pkgline sim`` is the command line for this; tests and demos use it directly, inject alarms
and drop connections through :meth:`SimulatedLine.tool` / :meth:`SimulatedLine.server`.

A configuration the controller reads needs fixed ports; :func:`with_free_ports` gives a copy
whose simulated tools listen on free loopback ports, and :func:`write_line_config` writes a
configuration back to a TOML file (for a demo or a test that starts ``pkgline sim`` and
``pkgline serve`` on the same file).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import SplitResult, urlsplit

from drivers.config import ModbusEndpoint, OpcUaEndpoint
from drivers.credentials import read_credentials
from drivers.errors import ConfigurationError
from drivers.modbus.mapfile import register_map_for
from drivers.model import EquipmentClass
from drivers.pki import PkiError, load_certificate
from drivers.tls import tls_server_context
from pkgline.config import ConfigError, LineConfig, LineTool
from simulators.certificate import simulator_pki
from simulators.engine import SimulationSettings, VirtualTool
from simulators.modbus_server import ModbusToolServer
from simulators.opcua_security import SimulatorSecurity
from simulators.opcua_server import OpcUaToolServer
from simulators.ports import LOOPBACK, free_loopback_ports

Transport = Literal["modbus", "opcua"]
ToolServer = ModbusToolServer | OpcUaToolServer

OPCUA_DEFAULT_PORT = 4840


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a simulated tool answers."""

    tool_id: str
    equipment_class: EquipmentClass
    transport: Transport
    address: str
    """``host:port`` (Modbus) or the endpoint URL (OPC UA), with the bound port."""
    object_name: str | None = None
    """OPC UA only: the tool's object under ``Objects/Tools``."""


def _split_opcua(url: str) -> SplitResult:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ConfigError(f"{url}: {exc}") from None
    if not parts.hostname:
        raise ConfigError(f"{url}: an OPC UA endpoint URL names a host")
    return parts


def _opcua_address(url: str) -> tuple[str, int]:
    parts = _split_opcua(url)
    assert parts.hostname is not None
    return parts.hostname, OPCUA_DEFAULT_PORT if parts.port is None else parts.port


def _with_port(url: str, host: str, port: int) -> str:
    parts = _split_opcua(url)
    shown = f"[{host}]" if ":" in host else host
    return parts._replace(netloc=f"{shown}:{port}").geturl()


@dataclass(eq=False, slots=True)
class _Gateway:
    """The OPC UA tools of one server address, gathered before the server is made."""

    host: str
    port: int
    url: str
    tool_ids: list[str] = field(default_factory=list)
    server: OpcUaToolServer | None = None
    secure: bool | None = None


class SimulatedLine:
    """The simulated tools of a line, each behind the server its endpoint names.

    ``SimulatedLine(config, time_scale=..., reject_rate=...)`` builds every virtual tool and
    server (no I/O; a configuration the simulators cannot serve raises
    :class:`~pkgline.config.ConfigError`); the overrides, when given, replace every tool's
    ``simulation`` setting. ``async with SimulatedLine(config) as line:`` or :meth:`start` /
    :meth:`stop` (which leaves no task or socket behind). A port of 0 in an OPC UA URL binds a
    free port; :meth:`endpoints` reports the bound ones.
    """

    def __init__(
        self,
        config: LineConfig,
        *,
        time_scale: float | None = None,
        reject_rate: float | None = None,
    ) -> None:
        if time_scale is not None and time_scale < 0:
            raise ValueError(f"a time scale is 0 or more, not {time_scale}")
        if reject_rate is not None and not 0 <= reject_rate <= 1:
            raise ValueError(f"a reject rate is between 0 and 1, not {reject_rate}")
        self.config = config
        self._tools: dict[str, VirtualTool] = {}
        self._servers: dict[str, ToolServer] = {}
        self._order: list[ToolServer] = []
        self._gateways: dict[object, _Gateway] = {}
        self._gateway_of: dict[str, _Gateway] = {}
        self._started = False
        taken: dict[tuple[str, int], str] = {}
        for tool in config.tools:
            if tool.simulation is None:
                continue
            virtual = self._virtual_tool(tool, time_scale, reject_rate)
            self._tools[tool.id] = virtual
            endpoint = tool.endpoint
            if isinstance(endpoint, ModbusEndpoint):
                self._claim(taken, (endpoint.host, endpoint.port), f"Modbus tool {tool.id}")
                try:
                    register_map = register_map_for(tool.equipment_class, endpoint.map)
                except ConfigurationError as exc:
                    raise ConfigError(f"tool {tool.id}: {exc.message}") from exc
                server = ModbusToolServer(
                    virtual, host=endpoint.host, port=endpoint.port, register_map=register_map
                )
                self._servers[tool.id] = server
                self._order.append(server)
            else:
                gateway = self._gateway_for(tool, endpoint, taken)
                secure = endpoint.security.secure
                if gateway.secure is not None and gateway.secure != secure:
                    raise ConfigError(
                        f"the OPC UA server {gateway.url}: tool {tool.id} is "
                        f"{'secure' if secure else 'plain (policy None)'} and "
                        f"{gateway.tool_ids[0]} is not; one server is one or the other"
                    )
                if secure and config.security.simulator_pki is None:
                    raise ConfigError(
                        f"tool {tool.id}: a secure OPC UA simulator needs security.simulator_pki"
                    )
                gateway.secure = secure
                gateway.tool_ids.append(tool.id)
        for gateway in self._gateways.values():
            try:
                gateway.server = OpcUaToolServer(
                    [self._tools[tool_id] for tool_id in gateway.tool_ids],
                    host=gateway.host,
                    port=gateway.port,
                )
            except ValueError as exc:  # two tools with one object name; a '/' in a name
                raise ConfigError(f"the OPC UA server {gateway.url}: {exc}") from None
            self._order.append(gateway.server)
            for tool_id in gateway.tool_ids:
                self._servers[tool_id] = gateway.server
                self._gateway_of[tool_id] = gateway

    @staticmethod
    def _virtual_tool(
        tool: LineTool, time_scale: float | None, reject_rate: float | None
    ) -> VirtualTool:
        sim = tool.simulation
        assert sim is not None
        settings = SimulationSettings(
            time_scale=sim.time_scale if time_scale is None else time_scale,
            reject_rate=sim.reject_rate if reject_rate is None else reject_rate,
            alarm_rate=sim.alarm_rate,
            seed=sim.seed,
        )
        name = tool.id
        if isinstance(tool.endpoint, OpcUaEndpoint) and tool.endpoint.object_name:
            # The OPC UA server names a tool's object after the virtual tool's id.
            name = tool.endpoint.object_name
        return VirtualTool(name, tool.equipment_class, settings)

    @staticmethod
    def _claim(taken: dict[tuple[str, int], str], address: tuple[str, int], who: str) -> None:
        if address[1] == 0:
            return
        if address in taken:
            raise ConfigError(
                f"{taken[address]} and {who} both want to listen on {address[0]}:{address[1]}"
            )
        taken[address] = who

    def _gateway_for(
        self, tool: LineTool, endpoint: OpcUaEndpoint, taken: dict[tuple[str, int], str]
    ) -> _Gateway:
        if endpoint.map is not None:
            raise ConfigError(
                f"tool {tool.id}: the OPC UA simulator serves the packaged pkgline node model "
                f"only, not the node map {endpoint.map}; remove the tool's map or its "
                "simulation table"
            )
        host, port = _opcua_address(endpoint.url)
        # Port 0 means "any free port": only tools naming the very same URL share that server.
        key: object = (host, port) if port else endpoint.url
        gateway = self._gateways.get(key)
        if gateway is None:
            self._claim(taken, (host, port), f"the OPC UA server {endpoint.url}")
            gateway = self._gateways[key] = _Gateway(host, port, endpoint.url)
        return gateway

    # -- life cycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._started

    async def start(self) -> None:
        """Start every server. If one cannot listen, those started are stopped again and the
        OSError names the tools and the address."""
        if self._started:
            return
        self._started = True
        try:
            self._secure_gateways()
        except (PkiError, ConfigError, OSError):
            self._started = False
            raise
        for server in self._order:
            try:
                await server.start()
            except OSError as exc:
                await self.stop()
                raise OSError(f"{self._describe(server)}: {exc.strerror or exc}") from exc
            except BaseException:
                await self.stop()
                raise

    def secure_endpoints(self) -> list[str]:
        """The URLs of the OPC UA servers that serve secure endpoints only."""
        return [g.url for g in self._gateways.values() if g.secure]

    def _secure_gateways(self) -> None:
        """Give each secure gateway its security: the simulators' certificate (made now if
        there is none) and, per tool, the operators its endpoint names; and each Modbus tool
        with ``tls`` its TLS context (Modbus/TCP Security)."""
        secure = [g for g in self._gateways.values() if g.secure]
        tls_tools: list[ModbusToolServer] = []
        for tool_id, server in self._servers.items():
            endpoint = self.config.tool(tool_id).endpoint
            if (
                isinstance(server, ModbusToolServer)
                and isinstance(endpoint, ModbusEndpoint)
                and endpoint.tls is not None
            ):
                tls_tools.append(server)
        if not secure and not tls_tools:
            return
        if self.config.security.simulator_pki is None:
            raise ConfigError("secure simulated tools need security.simulator_pki")
        pki = simulator_pki(self.config.security.simulator_pki, served_hosts(self.config))
        if tls_tools:
            context = tls_server_context(pki)
            for server in tls_tools:
                server.tls = context
                server.pki = pki  # revocation, checked at each connection
        for gateway in secure:
            passwords: dict[str, tuple[str, frozenset[str]]] = {}
            certificates: dict[bytes, tuple[str, frozenset[str]]] = {}
            for tool_id in gateway.tool_ids:
                tool = self.config.tool(tool_id)
                assert isinstance(tool.endpoint, OpcUaEndpoint)
                name = self._tools[tool_id].tool_id  # the object name
                sec = tool.endpoint.security
                if sec.credentials is not None:
                    user = read_credentials(sec.credentials)
                    _, tools = passwords.get(user.username, (user.password, frozenset()))
                    passwords[user.username] = (user.password, tools | {name})
                if sec.user_certificate is not None:
                    der, (subject, tools) = SimulatorSecurity.certificate_user(
                        load_certificate(sec.user_certificate), [name]
                    )
                    certificates[der] = (
                        subject,
                        certificates.get(der, ("", frozenset()))[1] | tools,
                    )
            assert gateway.server is not None
            gateway.server.security = SimulatorSecurity(
                pki,
                passwords=passwords,
                user_certificates=certificates,
                anonymous_read=self.config.security.anonymous_read,
            )

    async def stop(self) -> None:
        """Stop every server (closing every client connection) and every tool's process.
        Idempotent."""
        self._started = False
        for server in self._order:
            await server.stop()
        for tool in self._tools.values():
            await tool.close()

    async def __aenter__(self) -> SimulatedLine:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- lookups ----------------------------------------------------------------------------

    @property
    def tool_ids(self) -> tuple[str, ...]:
        """The simulated tools, in the configuration's order."""
        return tuple(self._tools)

    def tool(self, tool_id: str) -> VirtualTool:
        """The virtual tool of a line tool (KeyError naming the simulated tools if none)."""
        try:
            return self._tools[tool_id]
        except KeyError:
            raise KeyError(
                f"no simulated tool {tool_id!r}; the line simulates {', '.join(self._tools) or 'none'}"
            ) from None

    def server(self, tool_id: str) -> ToolServer:
        """The server a tool answers on; an OPC UA server is shared by the tools of its URL."""
        self.tool(tool_id)
        return self._servers[tool_id]

    async def drop_connections(self, tool_id: str, refuse_for_s: float = 0.0) -> None:
        """Close the client connections of the tool's server now (every tool of an OPC UA
        gateway goes with it), refusing new ones for ``refuse_for_s`` seconds."""
        await self.server(tool_id).drop_connections(refuse_for_s)

    def endpoints(self) -> list[Endpoint]:
        """Where each simulated tool answers (the bound ports, once started)."""
        found: list[Endpoint] = []
        for tool_id, virtual in self._tools.items():
            server = self._servers[tool_id]
            transport: Transport
            if isinstance(server, ModbusToolServer):
                host = f"[{server.host}]" if ":" in server.host else server.host
                address, transport, name = f"{host}:{server.port}", "modbus", None
            else:
                gateway = self._gateway_of[tool_id]
                address = _with_port(gateway.url, gateway.host, server.port)
                transport, name = "opcua", virtual.tool_id
            found.append(
                Endpoint(tool_id, virtual.equipment_class, transport, address, object_name=name)
            )
        return found

    def _describe(self, server: ToolServer) -> str:
        ids = [tool_id for tool_id, s in self._servers.items() if s is server]
        if isinstance(server, ModbusToolServer):
            return f"Modbus tool {ids[0]} on {server.host}:{server.port}"
        return f"OPC UA server {server.host}:{server.port} (tools {', '.join(ids)})"

    def __repr__(self) -> str:
        return f"SimulatedLine({self.config.name!r}, {len(self._tools)} tools, {len(self._order)} servers)"


# -- free ports and writing a configuration ---------------------------------------------------


def with_free_ports(config: LineConfig) -> LineConfig:
    """A copy of ``config`` whose simulated tools listen on free ports of 127.0.0.1: a port of
    its own for each Modbus tool, one per OPC UA server (tools that shared a server still
    do). Tools without a ``simulation`` table keep their endpoints."""
    data = config.model_dump()
    groups: dict[object, int] = {}
    modbus: list[int] = []
    for index, tool in enumerate(config.tools):
        if tool.simulation is None:
            continue
        endpoint = tool.endpoint
        if isinstance(endpoint, ModbusEndpoint):
            modbus.append(index)
        else:
            host, port = _opcua_address(endpoint.url)
            groups.setdefault((host, port) if port else endpoint.url, len(groups))
    ports = iter(free_loopback_ports(len(modbus) + len(groups)))
    gateway_ports = {key: next(ports) for key in groups}
    for index in modbus:
        data["tools"][index]["endpoint"] |= {"host": LOOPBACK, "port": next(ports)}
    for index, tool in enumerate(config.tools):
        endpoint = tool.endpoint
        if tool.simulation is None or not isinstance(endpoint, OpcUaEndpoint):
            continue
        host, port = _opcua_address(endpoint.url)
        new_port = gateway_ports[(host, port) if port else endpoint.url]
        data["tools"][index]["endpoint"]["url"] = _with_port(endpoint.url, LOOPBACK, new_port)
    return LineConfig.model_validate(data)


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    # JSON's escapes are TOML's; TOML also wants DEL escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007F")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # "0.5", "1e-05", "inf": all TOML floats
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _is_table_array(value: Any) -> bool:
    return (
        isinstance(value, list | tuple) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def _toml_table(lines: list[str], path: Sequence[str], table: Mapping[str, Any]) -> None:
    for key, value in table.items():
        if value is not None and not isinstance(value, dict) and not _is_table_array(value):
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in table.items():
        name = [*path, _toml_key(key)]
        if isinstance(value, dict):
            lines.extend(["", f"[{'.'.join(name)}]"])
            _toml_table(lines, name, value)
        elif _is_table_array(value):
            for item in value:
                lines.extend(["", f"[[{'.'.join(name)}]]"])
                _toml_table(lines, name, item)


def line_config_toml(config: LineConfig) -> str:
    """The configuration as TOML text that :func:`~pkgline.config.load_line_config` reads
    back to an equal configuration (settings left unset are left out)."""
    lines: list[str] = []
    _toml_table(lines, [], config.model_dump(mode="json", exclude_none=True))
    return "\n".join(lines).lstrip("\n") + "\n"


def served_hosts(config: LineConfig) -> list[str]:
    """The hosts where the line's simulated tools answer that the simulators' certificate
    must name (:func:`~simulators.certificate.simulator_pki`): those of the secure OPC UA
    endpoints whose host name is checked, and of the Modbus/TCP Security ones."""
    hosts: list[str] = []
    for tool in config.tools:
        endpoint = tool.endpoint
        if tool.simulation is None:
            continue
        if isinstance(endpoint, OpcUaEndpoint):
            if endpoint.security.secure and endpoint.security.check_host_name:
                hosts.append(_opcua_address(endpoint.url)[0])
        elif endpoint.tls is not None:
            hosts.append(endpoint.host)
    return list(dict.fromkeys(hosts))


def write_line_config(config: LineConfig, path: Path | str) -> Path:
    """Write ``config`` to a TOML file (e.g. the copy :func:`with_free_ports` made)."""
    path = Path(path)
    path.write_text(line_config_toml(config), encoding="utf-8")
    return path
