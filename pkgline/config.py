"""The line configuration (``line.toml``): which tools a line controller owns and how to reach
them, and, for a simulated line, how each simulated tool behaves.

One file serves both ``pkgline serve`` (the controller reads the database URL, the controller
settings and the tools) and ``pkgline sim`` (the simulators start every tool that has a
``simulation`` table, on the endpoint the controller will connect to). See
``deploy/line.example.toml``.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from drivers.config import ModbusEndpoint, OpcUaEndpoint, ToolConfig
from mes.adapters.database import DEFAULT_TIMEOUTS, DatabaseTimeouts
from mes.domain.signatures import SIGNABLE_NAMES, SignaturePolicy
from pkgline.api.defaults import DEFAULT_SOCKET, MAX_BODY_BYTES
from pkgline.events.config import EventsConfig
from pkgline.sparkplug.config import SparkplugConfig

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"


class ConfigError(Exception):
    """The line configuration is missing or invalid. The message names the file and the
    setting, and says what was expected."""


class SimulationConfig(BaseModel):
    """How a simulated tool behaves (``pkgline sim`` only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_scale: float = Field(1.0, ge=0, description="Multiplies process times; 0 is instant.")
    reject_rate: float = Field(0.0, ge=0, le=1, description="Chance a good site is rejected.")
    alarm_rate: float = Field(0.0, ge=0, le=1, description="Chance a job ends in an alarm.")
    seed: int | None = Field(None, description="Random seed, for repeatable runs.")


class LineTool(ToolConfig):
    """A tool of the line: how to reach it, which steps it may run, and (simulated) how it
    behaves."""

    steps: tuple[str, ...] | None = Field(
        None, description="Step codes this tool may run; default: every step of its class."
    )
    simulation: SimulationConfig | None = None

    @field_validator("steps")
    @classmethod
    def _some(cls, steps: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if steps == ():  # a tool that may run nothing: the controller would never use it
            raise ValueError(
                "expected at least one step code, or no steps for every step of its class"
            )
        return steps


class ControllerConfig(BaseModel):
    """How the line controller (``pkgline serve``) works."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: str = Field("controller", description="The name recorded in lot history.")
    dispatch: bool = Field(True, description="Start waiting lots on idle tools by itself.")
    dispatch_interval_s: float = Field(1.0, gt=0, le=60)
    auto_manual_steps: bool = Field(
        False,
        description="Complete manual steps (SUBSTRATE_LOAD, CARRIER_LOAD, SUBSTRATE_PREP) "
        "without an operator: for simulated lines and demos only.",
    )
    watchdog_fraction: float = Field(
        0.5, gt=0, le=1, description="Ping systemd's watchdog at this fraction of WatchdogSec."
    )
    spool_dir: Path | None = Field(
        None,
        description="Where tool state changes wait while the database is unavailable (an "
        "absolute path); default: default_spool_dir().",
    )
    spool_max_mb: float = Field(
        64.0,
        gt=0,
        description="The spool's bound (MB, 10**6 bytes): past it, changes are no longer "
        "spooled; each tool's latest state is kept in memory instead.",
    )
    stop_timeout_s: float = Field(
        45.0,
        ge=2,
        le=3600,
        description="A stop (SIGTERM) is done within this, whatever the database does; keep "
        "it below the unit's TimeoutStopSec (60 s).",
    )

    @field_validator("spool_dir")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_absolute():
            raise ValueError(f"expected an absolute path, got {str(path)!r}")
        return path

    def spool_path(self, line: str) -> Path:
        """The spool file of the line controller ``line`` (one file per controller, so that
        controllers on one host keep apart)."""
        return (self.spool_dir or default_spool_dir()) / f"{line}.jsonl"

    @property
    def spool_max_bytes(self) -> int:
        return int(self.spool_max_mb * 1_000_000)


def default_spool_dir() -> Path:
    """Under systemd, ``spool`` in the unit's state directory (``$STATE_DIRECTORY``,
    /var/lib/pkgline with deploy/pkgline.service); else ``$XDG_STATE_HOME/pkgline/spool``
    (``~/.local/state/pkgline/spool``)."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / "spool"
    state_home = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state_home / "pkgline" / "spool"


class SecurityConfig(BaseModel):
    """Where the certificates are (``[security]``; docs/security.md). Relative paths are
    relative to line.toml's directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pki: Path | None = Field(
        None,
        description="The controller's PKI directory (its certificate and trust list); "
        "default: pki next to line.toml. `pkgline pki init` creates it.",
    )
    simulator_pki: Path | None = Field(
        None,
        description="pkgline sim's PKI directory; default: pki-sim next to line.toml. "
        "Created with a certificate of its own on the first start.",
    )
    credentials: Path | None = Field(
        None,
        description="The user (credentials file: username, password; mode 0600) of every "
        "secure OPC UA endpoint that names no user of its own.",
    )
    anonymous_read: bool = Field(
        False, description="pkgline sim: let anonymous clients read (never command) the tools."
    )


class SignaturesConfig(BaseModel):
    """Electronic signatures (``[signatures]``; docs/security.md): release, scrap, scrap of
    sites and rework are always signed by the person asking; the operations listed here
    need a second signer too, a different person with a role the operation needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    two_signers: tuple[str, ...] = Field(
        (),
        description="Operations signed by two different people: any of release, "
        "release_ruled (a hold a claimed limit, an alarm or the controller placed), scrap "
        "(a whole lot), scrap_sites, rework.",
    )

    @field_validator("two_signers")
    @classmethod
    def _signed(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in names if n not in SIGNABLE_NAMES]
        if unknown:
            raise ValueError(
                f"not a signed operation: {', '.join(unknown)}; expected any of "
                f"{', '.join(sorted(SIGNABLE_NAMES))}"
            )
        return names

    def policy(self) -> SignaturePolicy:
        return SignaturePolicy.from_names(self.two_signers)


class DatabaseTimeoutsConfig(BaseModel):
    """How long a database call may wait (:class:`mes.adapters.database.DatabaseTimeouts`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connect_s: float = Field(DEFAULT_TIMEOUTS.connect_s, gt=0, le=600)
    statement_s: float = Field(DEFAULT_TIMEOUTS.statement_s, gt=0, le=3600)
    pool_s: float = Field(DEFAULT_TIMEOUTS.pool_s, gt=0, le=600)

    def timeouts(self) -> DatabaseTimeouts:
        return DatabaseTimeouts(self.connect_s, self.statement_s, self.pool_s)


class HttpsConfig(BaseModel):
    """``[api.https]``: the server's HTTPS listener for remote clients (off when absent)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(description="The address to listen on (an interface of this host).")
    port: int = Field(8443, ge=1, le=65535)
    certificate: Path = Field(description="The server's certificate chain (PEM).")
    key: Path = Field(description="Its private key (PEM, mode 0600, the service's own).")


class LoopbackHttpConfig(BaseModel):
    """``[api.http]``: plain HTTP on a loopback address, for a browser on this host (the
    operator station of a demo or a kiosk panel). Never on another interface: remote
    browsers use ``[api.https]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="A loopback address (127.0.0.0/8 or ::1).")
    port: int = Field(8080, ge=1, le=65535)

    @field_validator("host")
    @classmethod
    def _loopback(cls, host: str) -> str:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(
                f"{host!r}: plain HTTP listens on a loopback address only (127.0.0.1 or ::1); "
                "use [api.https] for other hosts"
            )
        return host


class ApiConfig(BaseModel):
    """``[api]``: the pkgline server (``pkgline api``, docs/api.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    socket: Path = Field(
        Path(DEFAULT_SOCKET),
        description="The Unix socket local clients use (mode 0660; their OS account is who "
        "they are).",
    )
    socket_group: str | None = Field(
        None,
        description="The group the socket is given (default: the server's own group; "
        "deploy/pkgline-api.service runs with Group=pkgline).",
    )
    max_body_kb: int = Field(
        MAX_BODY_BYTES // 1024, ge=1, le=16384, description="The largest request body read."
    )
    watchdog_fraction: float = Field(
        0.5, gt=0, le=1, description="Ping systemd's watchdog at this fraction of WatchdogSec."
    )
    session_hours: float = Field(
        8.0, gt=0, le=24 * 7, description="How long a password login's session holds."
    )
    https: HttpsConfig | None = None
    http: LoopbackHttpConfig | None = None


class LineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=ID_PATTERN, description="This line controller's name.")
    database: str | None = Field(
        None, description="Database URL; --db and $PKGLINE_DB take precedence."
    )
    controller: ControllerConfig = ControllerConfig()
    database_timeouts: DatabaseTimeoutsConfig = DatabaseTimeoutsConfig()
    security: SecurityConfig = SecurityConfig()
    signatures: SignaturesConfig = SignaturesConfig()
    events: EventsConfig | None = Field(
        None, description="The event feed to an MQTT broker; without it, events wait in the outbox."
    )
    tools: tuple[LineTool, ...] = ()
    # Sparkplug B edge node for SCADA (pkgline/sparkplug, docs/sparkplug.md); off when absent.
    sparkplug: SparkplugConfig | None = None
    api: ApiConfig = ApiConfig()

    @field_validator("tools")
    @classmethod
    def _unique_ids(cls, tools: tuple[LineTool, ...]) -> tuple[LineTool, ...]:
        twice = [tool_id for tool_id, n in Counter(t.id for t in tools).items() if n > 1]
        if twice:
            raise ValueError(f"tool ids must be unique; given more than once: {', '.join(twice)}")
        return tools

    @model_validator(mode="after")
    def _unique_endpoints(self) -> LineConfig:
        seen: dict[tuple[str, int], str] = {}
        for tool in self.tools:
            endpoint = tool.endpoint
            if endpoint.transport != "modbus":
                continue
            key = (endpoint.host, endpoint.port)
            if key in seen:
                raise ValueError(
                    f"tools {seen[key]} and {tool.id} both use Modbus {endpoint.host}:{endpoint.port}; "
                    "a Modbus tool has an address of its own"
                )
            seen[key] = tool.id
        return self

    def resolved(self, base: Path) -> LineConfig:
        """Paths made absolute against ``base`` (line.toml's directory), the PKI directories
        defaulted, and every secure OPC UA endpoint without a PKI of its own given the line's."""

        def absolute(path: Path | None) -> Path | None:
            return None if path is None else (base / path.expanduser()).resolve()

        security = self.security.model_copy(
            update={
                "pki": absolute(self.security.pki or Path("pki")),
                "simulator_pki": absolute(self.security.simulator_pki or Path("pki-sim")),
                "credentials": absolute(self.security.credentials),
            }
        )
        tools = []
        for tool in self.tools:
            endpoint = tool.endpoint
            if endpoint.map is not None:  # a map file named beside line.toml, wherever it runs
                endpoint = endpoint.model_copy(update={"map": absolute(endpoint.map)})
                tool = tool.model_copy(update={"endpoint": endpoint})
            if isinstance(endpoint, OpcUaEndpoint):
                sec = endpoint.security
                named = sec.credentials is not None or sec.user_certificate is not None
                default_user = security.credentials if sec.secure and not named else None
                sec = sec.model_copy(
                    update={
                        "pki": absolute(sec.pki) or security.pki,
                        "credentials": absolute(sec.credentials) or default_user,
                        "user_certificate": absolute(sec.user_certificate),
                        "user_key": absolute(sec.user_key),
                    }
                )
                tool = tool.model_copy(
                    update={"endpoint": endpoint.model_copy(update={"security": sec})}
                )
            elif isinstance(endpoint, ModbusEndpoint) and endpoint.tls is not None:
                tls = endpoint.tls.model_copy(
                    update={"pki": absolute(endpoint.tls.pki) or security.pki}
                )
                tool = tool.model_copy(
                    update={"endpoint": endpoint.model_copy(update={"tls": tls})}
                )
            tools.append(tool)
        api = self.api.model_copy(update={"socket": absolute(self.api.socket)})
        if self.api.https is not None:
            https = self.api.https.model_copy(
                update={
                    "certificate": absolute(self.api.https.certificate),
                    "key": absolute(self.api.https.key),
                }
            )
            api = api.model_copy(update={"https": https})
        return self.model_copy(update={"security": security, "tools": tuple(tools), "api": api})

    def tool(self, tool_id: str) -> LineTool:
        for tool in self.tools:
            if tool.id == tool_id:
                return tool
        raise KeyError(tool_id)


def _describe(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    parts: list[str] = []
    node: Any = data
    for key in loc:
        if isinstance(key, int) and isinstance(node, list) and key < len(node):
            node = node[key]
            ident = node.get("id") if isinstance(node, dict) else None
            parts[-1] = f"{parts[-1]}[{key}]" + (f" ({ident})" if ident else "")
            continue
        parts.append(str(key))
        node = node.get(key) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def _not_plain(
    node: Any, loc: tuple[int | str, ...] = ()
) -> tuple[tuple[int | str, ...], str] | None:
    """The first value TOML reads that no setting takes (a NaN or an infinity, a date or a
    time), with where it is and what is expected instead."""
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    elif isinstance(node, float) and not math.isfinite(node):
        return loc, f"expected a finite number, not {node}"
    elif not isinstance(node, str | int | float | bool):
        return loc, f"expected a string, a number or true/false, not a TOML {type(node).__name__}"
    else:
        return None
    for key, value in items:
        found = _not_plain(value, (*loc, key))
        if found is not None:
            return found
    return None


def load_line_config(path: Path | str) -> LineConfig:
    """Read and validate a line configuration file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}): expected a TOML file"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    odd = _not_plain(data)
    if odd is not None:
        raise ConfigError(f"{path}: {_describe(odd[0], data)}: {odd[1]}")
    try:
        # Strictly, as the TOML types: true is no number, "2" no number, 2.5 no count (lax
        # validation took a timeout_s = true as 1 s). Through JSON, whose strict mode still
        # takes a string for a path or a choice and an array for a list.
        config = LineConfig.model_validate_json(json.dumps(data), strict=True)
        return config.resolved(path.parent.resolve())
    except ValidationError as exc:
        from pkgline.datafiles import explained

        problems = [
            f"{_describe(tuple(loc), data)}: {text}"
            for loc, text in explained(LineConfig, exc.errors(include_url=False), quote=False)
        ]
        # Not chained: pydantic's error repeats each setting's value (a traceback in the
        # journal would show a broker URL's password given by mistake); the message says all.
        raise ConfigError(f"{path}: " + "; ".join(problems)) from None
