"""The Sparkplug B edge node's settings: the ``[sparkplug]`` table of ``line.toml``.

The broker connection (URL, TLS files, user name and password file, client id, keep-alive,
backoff) is :class:`pkgline.mqtt.BrokerConfig`, the same type, loader and rules as the event
feed's ``[events]``; this table adds the Sparkplug names. The keys of the first release,
``broker``, ``reconnect_initial_s`` and ``reconnect_max_s``, are still read as ``url``,
``backoff_initial_s`` and ``backoff_max_s``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from pkgline.mqtt import BrokerConfig

NAMESPACE = "spBv1.0"

SPARKPLUG_ID_PATTERN = r"^[^+/#]+$"
"""Sparkplug group, edge node and host ids: any UTF-8 but the MQTT separators ``+ / #``."""

OLD_NAMES = {
    "broker": "url",
    "reconnect_initial_s": "backoff_initial_s",
    "reconnect_max_s": "backoff_max_s",
}
"""Keys of ``[sparkplug]`` before it shared :class:`BrokerConfig`: old name -> new name."""


class SparkplugError(Exception):
    """The edge node cannot be set up as configured (a bad setting, an unreadable file)."""


class SparkplugConfig(BrokerConfig):
    """One Sparkplug B 3.0 edge node per line controller; each tool is one of its devices."""

    group_id: str = Field(pattern=SPARKPLUG_ID_PATTERN, min_length=1)
    edge_node_id: str | None = Field(
        None, pattern=SPARKPLUG_ID_PATTERN, description="Default: the line controller's name."
    )
    primary_host_id: str | None = Field(
        None,
        pattern=SPARKPLUG_ID_PATTERN,
        description="Wait for this host application's STATE (online) before the births.",
    )
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

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        """The first release's keys, read under their new names (both given: refused)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, new in OLD_NAMES.items():
            if old in data:
                if new in data:
                    raise ValueError(
                        f"{old!r} and {new!r} are one setting ({old!r} is its old name): "
                        f"give {new!r} only"
                    )
                data[new] = data.pop(old)
        return data

    def node_id(self, line_name: str) -> str:
        return self.edge_node_id or line_name


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
