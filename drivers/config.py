"""How to reach a tool: validated endpoint settings, shared by every transport.

A line configuration (pkgline's ``line.toml``) lists tools; each names its equipment class, a
transport and that transport's endpoint. Timeouts and backoff are configuration with sane
defaults: a dead tool is noticed within about ``timeout_s + poll_interval_s`` (under 2 s), and
reconnect attempts back off exponentially to ``backoff_max_s`` (30 s) with jitter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from drivers.model import EquipmentClass


class ConnectionPolicy(BaseModel):
    """Timing of one tool connection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(1.0, gt=0, le=60, description="Answer time for any one request.")
    poll_interval_s: float = Field(
        0.2, gt=0, le=60, description="Status poll period (Modbus) or publishing interval (OPC UA)."
    )
    backoff_initial_s: float = Field(0.5, gt=0, le=60)
    backoff_max_s: float = Field(30.0, gt=0, le=600)
    backoff_jitter: float = Field(
        0.25, ge=0, le=1, description="Each delay is shortened by up to this fraction, at random."
    )


class ModbusEndpoint(BaseModel):
    """A tool that speaks Modbus TCP."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transport: Literal["modbus"] = "modbus"
    host: str = "127.0.0.1"
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    map: Path | None = Field(
        None, description="Register map file; default: the packaged map of the tool's class."
    )


class OpcUaEndpoint(BaseModel):
    """A tool that speaks OPC UA (possibly one of several tools behind one server)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transport: Literal["opcua"] = "opcua"
    url: str = Field(description="Server endpoint, e.g. opc.tcp://127.0.0.1:4840")
    object_name: str | None = Field(
        None, description="Browse name of the tool's object under Tools; default: the tool id."
    )
    map: Path | None = Field(
        None, description="Node map file; default: the packaged pkgline node model."
    )

    @field_validator("url")
    @classmethod
    def _opc_tcp(cls, url: str) -> str:
        if not url.startswith("opc.tcp://"):
            raise ValueError(f"an OPC UA endpoint URL starts with opc.tcp://, not {url!r}")
        return url


Endpoint = Annotated[ModbusEndpoint | OpcUaEndpoint, Field(discriminator="transport")]


class ToolConfig(BaseModel):
    """One tool of the line, as the controller connects to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
    equipment_class: EquipmentClass
    endpoint: Endpoint
    policy: ConnectionPolicy = ConnectionPolicy()
