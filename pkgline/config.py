"""The line configuration (``line.toml``): which tools a line controller owns and how to reach
them, and, for a simulated line, how each simulated tool behaves.

One file serves both ``pkgline serve`` (the controller reads the database URL, the controller
settings and the tools) and ``pkgline sim`` (the simulators start every tool that has a
``simulation`` table, on the endpoint the controller will connect to). See
``deploy/line.example.toml``.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from drivers.config import ToolConfig
from pkgline.events.config import EventsConfig

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


class LineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=ID_PATTERN, description="This line controller's name.")
    database: str | None = Field(
        None, description="Database URL; --db and $PKGLINE_DB take precedence."
    )
    controller: ControllerConfig = ControllerConfig()
    events: EventsConfig | None = Field(
        None, description="The event feed to an MQTT broker; without it, events wait in the outbox."
    )
    tools: tuple[LineTool, ...] = ()

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


def load_line_config(path: Path | str) -> LineConfig:
    """Read and validate a line configuration file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return LineConfig.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{_describe(tuple(e['loc']), data)}: {e['msg']}" for e in exc.errors(include_url=False)
        ]
        raise ConfigError(f"{path}: " + "; ".join(problems)) from exc
