"""The feed's topics: an ISA-95 unified namespace, ``{root}/{site}/{area}/{line}/...``.

=====================================  ========  ==========================================
topic                                  retained  payload (schema in ``schemas/``)
=====================================  ========  ==========================================
``.../lots/{lot}/events``              no        every event of the lot (lot-event)
``.../lots/{lot}/state``               yes       the lot's state after its last event
``.../tools/{tool}/state``             yes       process state, mode, E10, lot, progress
``.../durables/{durable}/events``      no        every event of a durable (durable-event)
``.../durables/{durable}/state``       yes       its count, life, tool after its last event
``.../materials/{material}/events``    no        every event of a material lot (material-event)
``.../materials/{material}/state``     yes       its tool and clocks after its last event
``.../line/status``                    yes       lots by state, the outbox backlog
``.../controllers/{name}/status``      yes       birth (online) and death (the MQTT will)
``.../dead-letter``                    no        an event that could not be published
=====================================  ========  ==========================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BAD = re.compile(r"[/+#\x00]|^\$")


def usable_level(name: str) -> bool:
    """A lot or tool id that can be one topic level (no separator, wildcard or ``$``)."""
    return bool(name) and _BAD.search(name) is None


@dataclass(frozen=True, slots=True)
class Topics:
    base: str
    """``{root}/{site}/{area}/{line}``."""

    @classmethod
    def of(cls, root: str, site: str, area: str, line: str) -> Topics:
        return cls(f"{root}/{site}/{area}/{line}")

    def lot_events(self, lot: str) -> str:
        return f"{self.base}/lots/{lot}/events"

    def lot_state(self, lot: str) -> str:
        return f"{self.base}/lots/{lot}/state"

    def tool_state(self, tool: str) -> str:
        return f"{self.base}/tools/{tool}/state"

    def subject_events(self, subject: str, subject_id: str) -> str:
        """The events of a lot, a durable or a material lot (the outbox's subjects)."""
        return f"{self.base}/{subject}s/{subject_id}/events"

    def subject_state(self, subject: str, subject_id: str) -> str:
        """The retained state of a lot, a durable or a material lot."""
        return f"{self.base}/{subject}s/{subject_id}/state"

    @property
    def line_status(self) -> str:
        return f"{self.base}/line/status"

    @property
    def audit_heads(self) -> str:
        """The heads of the hash chains (anchors a historian keeps: docs/security.md)."""
        return f"{self.base}/audit/heads"

    def controller_status(self, controller: str) -> str:
        return f"{self.base}/controllers/{controller}/status"

    @property
    def dead_letter(self) -> str:
        return f"{self.base}/dead-letter"

    @property
    def all_lot_events(self) -> str:
        """The subscription to every lot's events."""
        return f"{self.base}/lots/+/events"

    @property
    def all_events(self) -> str:
        """The subscription to every event of the outbox: the lots', the durables' and the
        material lots'."""
        return f"{self.base}/+/+/events"
