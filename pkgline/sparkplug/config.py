"""The Sparkplug B edge node's settings: the ``[sparkplug]`` table of ``line.toml``.

Everything the edge node needs is here, broker connection included, so that the table can later
move under ``[events.sparkplug]`` and share the feed's broker settings without a change to the
node itself.
"""

from __future__ import annotations

import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAMESPACE = "spBv1.0"

SPARKPLUG_ID_PATTERN = r"^[^+/#]+$"
"""Sparkplug group, edge node and host ids: any UTF-8 but the MQTT separators ``+ / #``."""


class SparkplugError(Exception):
    """The edge node cannot be set up as configured (a bad setting, an unreadable file)."""


class SparkplugConfig(BaseModel):
    """One Sparkplug B 3.0 edge node per line controller; each tool is one of its devices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    broker: str = Field(
        "mqtt://127.0.0.1:1883",
        description="mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS); no credentials here.",
    )
    group_id: str = Field(pattern=SPARKPLUG_ID_PATTERN, min_length=1)
    edge_node_id: str | None = Field(
        None, pattern=SPARKPLUG_ID_PATTERN, description="Default: the line controller's name."
    )
    primary_host_id: str | None = Field(
        None,
        pattern=SPARKPLUG_ID_PATTERN,
        description="Wait for this host application's STATE (online) before the births.",
    )
    client_id: str | None = Field(None, description="MQTT client id; default pkgline-sp-NODE.")
    username: str | None = None
    password_file: Path | None = Field(
        None, description="A file holding the password, readable by the service only."
    )
    ca_file: Path | None = Field(None, description="CA bundle for mqtts:// (default: system's).")
    cert_file: Path | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: Path | None = None
    keepalive_s: int = Field(
        30,
        ge=5,
        le=3600,
        description="MQTT keep-alive: how soon the broker sends the NDEATH of a dead node.",
    )
    bdseq_file: Path | None = Field(
        None,
        description="Where bdSeq is kept across restarts; default: the state directory "
        "($STATE_DIRECTORY, else $XDG_STATE_HOME/pkgline or ~/.local/state/pkgline).",
    )
    reconnect_initial_s: float = Field(0.5, gt=0, le=60)
    reconnect_max_s: float = Field(30.0, gt=0, le=600)

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], got {url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials do not belong in the URL: use username and password_file")
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        try:
            parts.port  # noqa: B018 - raises on a port out of range
        except ValueError as exc:
            raise ValueError(f"bad port in {url!r}: {exc}") from None
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"expected only scheme, host and port in {url!r}")
        return url

    def node_id(self, line_name: str) -> str:
        return self.edge_node_id or line_name


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def broker_address(config: SparkplugConfig) -> BrokerAddress:
    parts = urlsplit(config.broker)
    tls = parts.scheme == "mqtts"
    assert parts.hostname is not None  # checked by the model
    return BrokerAddress(parts.hostname, parts.port or (8883 if tls else 1883), tls)


def read_password(path: Path) -> str:
    """The password in ``path`` (first line), refused when others than its owner and group
    may read it (the service user's group: systemd's StateDirectory mode 2770)."""
    try:
        mode = path.stat().st_mode
        if mode & stat.S_IROTH:
            raise SparkplugError(
                f"{path}: readable by everyone (mode {stat.filemode(mode)}); "
                f"expected readable by the service only (chmod 600 or 640)"
            )
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SparkplugError(
            f"{path}: cannot read the MQTT password: {exc.strerror or exc}"
        ) from exc
    password = text.splitlines()[0] if text else ""
    if not password:
        raise SparkplugError(f"{path}: empty; expected the MQTT password on its first line")
    return password


def tls_context(config: SparkplugConfig) -> ssl.SSLContext | None:
    """The TLS context of an mqtts:// broker (None for mqtt://)."""
    if not broker_address(config).tls:
        return None
    try:
        context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
        if config.cert_file is not None:
            context.load_cert_chain(
                str(config.cert_file), str(config.key_file) if config.key_file else None
            )
    except (OSError, ssl.SSLError) as exc:
        raise SparkplugError(f"cannot set up TLS for {config.broker}: {exc}") from exc
    return context


def state_directory() -> Path:
    """Where the node keeps its bdSeq: systemd's StateDirectory, else the user's state dir."""
    given = os.environ.get("STATE_DIRECTORY")
    if given:
        return Path(given.split(":")[0])
    home = os.environ.get("XDG_STATE_HOME")
    return (Path(home) if home else Path.home() / ".local" / "state") / "pkgline"


def bdseq_path(config: SparkplugConfig, edge_node_id: str) -> Path:
    if config.bdseq_file is not None:
        return config.bdseq_file
    safe = "".join(
        c if c.isalnum() or c in "-_." else "_" for c in f"{config.group_id}-{edge_node_id}"
    )
    return state_directory() / f"sparkplug-{safe}.bdseq"
