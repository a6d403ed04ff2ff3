"""Published flow versions: immutable, a draft until an engineer approves it, then the version
new lots start on until a newer one is approved or it is retired.

Pure values and rules. A version holds the text of the files its flow is made of and their
content hash (:mod:`flows.versions`); it is never changed, only approved (electronically signed
approval rows: who, printed name, meaning, time, method, linked to the content hash;
:mod:`mes.domain.flowapproval`) or retired (no
new lot starts on it; running lots go on). Lots started on a version are checked against it
until they end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from mes.domain.errors import OperationNotAllowed

SYSTEM_AUTHOR = "system"
"""The author of the versions ``db upgrade`` publishes from the packaged flow files."""

FIRST_VERSION = 1
"""The number of a flow's first published version: ``db upgrade`` publishes the packaged flow
files as it. A lot started where no version is published yet (a schema made without ``db
upgrade``) is on it, whatever the flow file's own ``version:`` says, so that it is on the
flow's version 1 once that is published."""

APPROVAL_MEANING = "approved for production: new lots of this flow start on this version"


class VersionState(StrEnum):
    DRAFT = "draft"
    """Published, not approved: no lot starts on it."""
    APPROVED = "approved"
    RETIRED = "retired"
    """No new lot starts on it; lots started on it run to their end on it."""


@dataclass(frozen=True, slots=True)
class Approval:
    """An approval's signature: who approved which content, as what, when and how
    (``method``: os or password; ``system`` for the packaged files)."""

    flow: str
    version: int
    content_hash: str
    signer: str
    printed_name: str
    meaning: str
    at: datetime
    method: str
    """How the signer signed (:class:`mes.domain.signatures.SignatureMethod` value; ``system``
    for the packaged files ``db upgrade`` approves; older rows: the AuthMethod value)."""


@dataclass(frozen=True, slots=True)
class FlowVersion:
    flow: str
    version: int
    content_hash: str
    author: str
    published_at: datetime
    note: str
    state: VersionState
    files: Mapping[str, str] = field(default_factory=dict)
    approvals: tuple[Approval, ...] = ()
    retired_at: datetime | None = None
    retired_by: str | None = None


def active(versions: Iterable[FlowVersion]) -> FlowVersion | None:
    """The version new lots of a flow start on: its newest approved one."""
    approved = [v for v in versions if v.state is VersionState.APPROVED]
    return max(approved, key=lambda v: v.version) if approved else None


def check_approvable(version: FlowVersion) -> None:
    if version.state is not VersionState.DRAFT:
        raise OperationNotAllowed(
            f"flow {version.flow} version {version.version} is {version.state.value}; only a "
            "draft can be approved",
            allowed=[VersionState.DRAFT.value],
        )


def check_retirable(version: FlowVersion) -> None:
    if version.state is VersionState.RETIRED:
        raise OperationNotAllowed(
            f"flow {version.flow} version {version.version} is retired already",
            allowed=[VersionState.DRAFT.value, VersionState.APPROVED.value],
        )
