"""How to reach a tool: validated endpoint settings, shared by every transport.

A line configuration (pkgline's ``line.toml``) lists tools; each names its equipment class, a
transport and that transport's endpoint. Timeouts and backoff are configuration with sane
defaults: a dead tool is noticed within about ``timeout_s + poll_interval_s`` (under 2 s), and
reconnect attempts back off exponentially to ``backoff_max_s`` (30 s) with jitter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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

    @model_validator(mode="after")
    def _backoff_grows(self) -> ConnectionPolicy:
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError(
                f"backoff_initial_s ({self.backoff_initial_s:g}) is above backoff_max_s "
                f"({self.backoff_max_s:g}); expected the first delay at most the longest"
            )
        return self


class ModbusTls(BaseModel):
    """Modbus/TCP Security: TLS 1.2 or later (by convention on port 802), both sides proving
    who they are with X.509 certificates from their PKI directories (drivers/pki.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pki: Path | None = Field(
        None,
        description="PKI directory (drivers/pki.py layout); default: the line's pki. The "
        "tool's certificate must name the endpoint's host (subjectAltName DNS or IP).",
    )


class ModbusEndpoint(BaseModel):
    """A tool that speaks Modbus TCP (``tls``: Modbus/TCP Security)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transport: Literal["modbus"] = "modbus"
    host: str = "127.0.0.1"
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    map: Path | None = Field(
        None, description="Register map file; default: the packaged map of the tool's class."
    )
    tls: ModbusTls | None = Field(
        None,
        description="Modbus/TCP Security; none: plain Modbus/TCP, for a tool that can do no "
        "better, on a segmented network (docs/security.md).",
    )

    @field_validator("host")
    @classmethod
    def _a_host(cls, host: str) -> str:
        name, colon, port = host.rpartition(":")
        if not host.strip() or host != host.strip():
            raise ValueError(f"host {host!r}: expected a host name or an IP address")
        if colon and port.isdigit() and ":" not in name:  # "10.0.0.5:502": IPv6 has more
            raise ValueError(
                f"host {host!r} holds a port: expected host = {name!r} and port = {port}"
            )
        return host


SecurityPolicyName = Literal[
    "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss", "None"
]
SecurityModeName = Literal["Sign", "SignAndEncrypt", "None"]


class OpcUaSecurity(BaseModel):
    """How the controller proves who it is to an OPC UA server, and checks who the server is.

    The default is Basic256Sha256 with SignAndEncrypt, the line's PKI directory (``pki`` in
    line.toml: the controller's certificate, the trust list and its revocation lists), the
    server's certificate checked for the endpoint URL's host, no trust on first use, and an
    anonymous user (which the pkgline simulators refuse: give a ``credentials`` file or a
    ``user_certificate``). ``policy = "None"`` (with ``mode = "None"``) is plain OPC UA, for a
    tool that can do no better, on a segmented network only (docs/security.md).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: SecurityPolicyName = "Basic256Sha256"
    mode: SecurityModeName = "SignAndEncrypt"
    pki: Path | None = Field(
        None, description="PKI directory (drivers/pki.py layout); default: the line's pki."
    )
    server_uri: str | None = Field(
        None,
        description="Application URI the server's certificate must name; default: the one "
        "the server announces.",
    )
    check_host_name: bool = Field(
        True,
        description="The server's certificate must name the host of the endpoint URL in its "
        "subjectAltName (DNS name or IP address; OPC UA's BadCertificateHostNameInvalid). "
        "false: not checked (logged as a warning at connect), only for a tool whose "
        "certificate cannot be reissued.",
    )
    trust_on_first_use: bool = Field(
        False,
        description="Trust the server's certificate the first time it is seen (it is copied "
        "to trusted/certs). Only for a tool whose certificate cannot be had otherwise.",
    )
    credentials: Path | None = Field(
        None,
        description="File with the user's name and password (TOML: username, password), "
        "readable by the service account only.",
    )
    user_certificate: Path | None = Field(None, description="X.509 user certificate (DER/PEM).")
    user_key: Path | None = Field(None, description="The user certificate's private key (PEM).")

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaSecurity:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError(
                f"policy {self.policy!r} with mode {self.mode!r}: policy None goes with mode "
                "None, and a security policy with mode Sign or SignAndEncrypt"
            )
        if self.credentials is not None and self.user_certificate is not None:
            raise ValueError("give either credentials or user_certificate, not both")
        if (self.user_certificate is None) != (self.user_key is None):
            raise ValueError("user_certificate and user_key go together")
        if self.policy == "None" and self.credentials is not None:
            raise ValueError("a password is not sent without security: choose a policy")
        return self

    @property
    def secure(self) -> bool:
        return self.policy != "None"


INSECURE = OpcUaSecurity(policy="None", mode="None")
"""Plain OPC UA: no certificates, no encryption (tests, and tools that can do no better)."""


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
    security: OpcUaSecurity = OpcUaSecurity()

    @field_validator("url")
    @classmethod
    def _opc_tcp(cls, url: str) -> str:
        if not url.startswith("opc.tcp://"):
            raise ValueError(f"an OPC UA endpoint URL starts with opc.tcp://, not {url!r}")
        if "@" in url.partition("://")[2].partition("/")[0]:
            raise ValueError(
                "an OPC UA endpoint URL carries no user or password (they would be logged); "
                "give the user in the endpoint's security.credentials file"
            )
        return url


Endpoint = Annotated[ModbusEndpoint | OpcUaEndpoint, Field(discriminator="transport")]


class ToolConfig(BaseModel):
    """One tool of the line, as the controller connects to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
    equipment_class: EquipmentClass
    endpoint: Endpoint
    policy: ConnectionPolicy = ConnectionPolicy()
