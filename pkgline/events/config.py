"""The ``[events]`` table of ``line.toml``: where the event feed goes and how it is named."""

from __future__ import annotations

from pydantic import Field

from pkgline.mqtt import BrokerConfig

SEGMENT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A topic level: no ``/``, ``+``, ``#`` or ``$`` (MQTT's separators and wildcards)."""


class EventsConfig(BrokerConfig):
    """The event feed (``pkgline serve`` publishes it when this table is present)."""

    root: str = Field("pkgline", pattern=SEGMENT, description="The topic root (enterprise).")
    site: str = Field("site", pattern=SEGMENT, description="ISA-95 site.")
    area: str = Field("packaging", pattern=SEGMENT, description="ISA-95 area.")
    line: str | None = Field(
        None, pattern=SEGMENT, description="ISA-95 line; default: the controller's name."
    )
    retention_days: float = Field(
        7.0, ge=0, description="Published events are deleted from the outbox after this."
    )
    max_payload_bytes: int = Field(
        262_144,
        ge=1024,
        le=268_435_455,
        description="A larger event goes to the dead-letter topic instead.",
    )
    batch_size: int = Field(500, ge=1, le=10_000, description="Events read per outbox query.")
    poll_interval_s: float = Field(
        0.1,
        gt=0,
        le=5,
        description="How often an idle relay looks for new events that no wake told it of "
        "(SQLite: other processes' moves; commits of its own process, and on PostgreSQL of "
        "every process, wake it at once).",
    )
