"""A tool's state as its line controller last reported it: what ``tools`` rows hold beside the
tool's record (:mod:`mes.domain.equipment`), and what a running lot's report shows of its
tool. Apart from the records so that reading a lot's report (``lot show`` in direct mode,
:mod:`pkgline.direct_reads`) loads this one class and not the records, their E10 history and
resets. Pure values, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ToolSnapshot:
    """What the controller knows of a tool now."""

    connected: bool
    e10: str
    process_state: str | None = None
    mode: str | None = None
    alarm: Mapping[str, Any] | None = None
    job_id: str | None = None
    lot_id: str | None = None
    sites_done: int = 0
    sites_total: int = 0
    reason: str | None = None
    """Why the state is what it is, when that is not obvious (e.g. the connection error)."""
