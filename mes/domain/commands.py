"""Requests to the lot tracker: small frozen dataclasses named in the imperative.

Values given by people arrive as text (``--param NAME=VALUE``) and are parsed with the flow's
value types; values given by the line controller arrive typed. Either form is accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flows import Value
from mes.domain.model import HoldSource, SiteRef

GivenValue = str | Value
"""A value as given: text to be parsed, or already typed."""


@dataclass(frozen=True, slots=True)
class StartLot:
    lot_id: str
    flow: str
    user: str
    carriers: int = 2
    site_rows: int = 4
    site_cols: int = 8
    params: Mapping[str, GivenValue] = field(default_factory=dict)
    priority: int = 5


@dataclass(frozen=True, slots=True)
class TrackIn:
    lot_id: str
    step: str
    user: str
    tool: str | None = None
    values: Mapping[str, GivenValue] = field(default_factory=dict)
    dispatched: bool = False
    """Tracked in by the line controller that owns ``tool`` (an operator's track-in on a
    tool a controller dispatches needs the tool in manual: mes.domain.interlocks)."""


@dataclass(frozen=True, slots=True)
class SiteRejectGiven:
    """A reject as given: a carrier (id, or 1-based position in the lot), row, col, code."""

    carrier: str
    row: int
    col: int
    code: str


@dataclass(frozen=True, slots=True)
class TrackOut:
    lot_id: str
    user: str
    measured: Mapping[str, GivenValue] = field(default_factory=dict)
    rejects: tuple[SiteRejectGiven, ...] = ()
    tool_data: Mapping[str, object] = field(default_factory=dict)
    """Anything else the tool reported (kept in history as it came)."""
    step: str | None = None
    """The step the caller means to finish, where it says: refused if the lot runs another
    (a retried track-out that finds the lot tracked in again at its next step)."""
    dispatched: bool = False
    """Tracked out by the line controller that tracked the lot in (``TrackIn.dispatched``).
    The controller records a tool's step job by job (``RecordJob``, the last one tracks the
    lot out); this is for scripts and benches that stand in for it. A person's track-out of
    a step the controller runs is refused (:func:`mes.domain.steps.track_out`)."""


@dataclass(frozen=True, slots=True)
class AbortStep:
    lot_id: str
    user: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class HoldLot:
    lot_id: str
    user: str
    reason: str
    source: HoldSource = HoldSource.OPERATOR
    data: Mapping[str, Any] | None = None
    code: str | None = None
    """A hold reason code of the catalogue (mes.domain.reasons); ``reason`` then holds its
    text and the free text beside it."""
    """More for the hold's record (history data): the line controller's account of the work
    the tool did before the fault, or of the results it refused."""


@dataclass(frozen=True, slots=True)
class ReleaseLot:
    lot_id: str
    user: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ScrapLot:
    lot_id: str
    user: str
    reason: str
    code: str | None = None
    """A scrap reason code of the catalogue (mes.domain.reasons); ``reason`` then holds its
    text and the free text beside it."""


@dataclass(frozen=True, slots=True)
class ScrapSites:
    lot_id: str
    user: str
    reason: str
    sites: tuple[SiteRejectGiven, ...]


@dataclass(frozen=True, slots=True)
class SplitLot:
    lot_id: str
    child_id: str
    carriers: tuple[str, ...]
    user: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class MergeLots:
    child_id: str
    into_id: str
    user: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ReworkLot:
    lot_id: str
    step: str
    user: str
    reason: str


@dataclass(frozen=True, slots=True)
class CompleteLot:
    lot_id: str
    user: str
    reason: str | None = None


__all__ = [
    "AbortStep",
    "CompleteLot",
    "GivenValue",
    "HoldLot",
    "MergeLots",
    "RecordJob",
    "ReleaseLot",
    "ReworkLot",
    "ScrapLot",
    "ScrapSites",
    "SiteRef",
    "SiteRejectGiven",
    "SplitLot",
    "StartJob",
    "StartLot",
    "TrackIn",
    "TrackOut",
]


@dataclass(frozen=True, slots=True)
class StartJob:
    """The line controller is about to start one carrier of the running step on its tool."""

    lot_id: str
    job_id: str
    tool: str
    carrier: str
    user: str


@dataclass(frozen=True, slots=True)
class RecordJob:
    """A tool's results for one carrier, under the flow's value names."""

    job_id: str
    user: str
    measured: Mapping[str, GivenValue] = field(default_factory=dict)
    rejects: tuple[SiteRejectGiven, ...] = ()
    tool_data: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MigrateLot:
    """Move a lot to another (approved) version of its flow."""

    lot_id: str
    version: int
    user: str
    reason: str
