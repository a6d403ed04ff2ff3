"""Request bodies of the lot routes: exactly what each operation takes, nothing more (an
unknown field is refused, 422), typed (a wrong type is refused). Who acts is never in a body:
it is the request's principal.

Release, scrap and rework carry ``signature``: the place of the electronic signature
(21 CFR Part 11; its object is being defined with the service layer's signatures, issue 14).
Until the server checks signatures, a request that carries one is refused (422) rather than
accepted unchecked.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

GivenValue = StrictStr | StrictInt | StrictFloat
Values = Annotated[
    dict[Annotated[str, Field(max_length=64)], GivenValue],
    Field(description="NAME: VALUE (text is parsed with the flow's type, as the CLI's)."),
]
Reason = Annotated[str | None, Field(None, max_length=2000, description="Why (recorded).")]
LotId = Annotated[str, Field(min_length=1, max_length=64)]
Id = Annotated[
    str,
    Field(min_length=1, max_length=64, description="Its id (the service says which are valid)."),
]
Name = Annotated[str, Field(min_length=1, max_length=64)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignatureBody(Body):
    """An electronic signature (21 CFR 11.50, 11.200): the signer's password given again for
    this operation, its meaning, and the lot's version the signer saw (a replay, or a lot
    changed since, is refused: signature_stale)."""

    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]
    meaning: Annotated[str, Field(min_length=1, max_length=2000)]
    lot_version: Annotated[int, Field(ge=1, le=2**62)]


Signatures = Annotated[
    list[SignatureBody],
    Field(
        max_length=2,
        description="The signatures the operation needs (docs/security.md): the requester's "
        "first, a second person's where the configuration asks for two.",
    ),
]


class StartBody(Body):
    lot: LotId
    flow: Annotated[str, Field(min_length=1, max_length=64)]
    carriers: Annotated[int, Field(2, ge=1, le=1000)] = 2
    rows: Annotated[int, Field(4, ge=1, le=1000)] = 4
    cols: Annotated[int, Field(8, ge=1, le=1000)] = 8
    params: Values = {}
    priority: Annotated[int, Field(5, ge=1, le=9)] = 5


class TrackInBody(Body):
    step: Annotated[str, Field(min_length=1, max_length=64)]
    tool: Annotated[str | None, Field(None, max_length=64)] = None
    params: Values = {}


class Site(Body):
    carrier: Annotated[str, Field(min_length=1, max_length=64)]
    row: Annotated[int, Field(ge=1, le=100000)]
    col: Annotated[int, Field(ge=1, le=100000)]


class Reject(Site):
    code: Annotated[str, Field(min_length=1, max_length=64)]


class TrackOutBody(Body):
    data: Values = {}
    rejects: Annotated[list[Reject], Field(max_length=100000)] = []


class ReasonBody(Body):
    reason: Reason = None


class RequiredReasonBody(Body):
    reason: Annotated[
        str,
        Field(min_length=1, max_length=2000, pattern=r"\S", description="What was done or why."),
    ]


class ReleaseBody(Body):
    reason: Reason = None
    signatures: Signatures = []


ReasonCode = Annotated[
    str | None,
    Field(None, min_length=1, max_length=64, description="A reason code (pkgline reason list)."),
]


class HoldBody(Body):
    reason: Reason = None
    code: ReasonCode = None


class ScrapBody(Body):
    reason: Reason = None
    code: ReasonCode = None
    signatures: Signatures = []


class ScrapSitesBody(Body):
    reason: Reason = None
    sites: Annotated[list[Site], Field(min_length=1, max_length=100000)]
    code: Annotated[str, Field("SCRAP", min_length=1, max_length=64)] = "SCRAP"
    signatures: Signatures = []


class ReworkBody(Body):
    step: Annotated[str, Field(min_length=1, max_length=64)]
    reason: Reason = None
    signatures: Signatures = []


class MigrateBody(Body):
    version: Annotated[int, Field(ge=1, le=1_000_000)]
    reason: Reason = None
    signatures: Signatures = []


class SplitBody(Body):
    carriers: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64)]], Field(min_length=1)
    ]
    into: LotId
    reason: Reason = None


class MergeBody(Body):
    into: LotId
    reason: Reason = None


class Refusal(BaseModel):
    """What every refusal answers (the JSON the CLI prints for it)."""

    error: str = Field(description="The kind: not_authorized, unknown_lot, step_not_allowed ...")
    message: str = Field(description="What was refused and why, for a person.")
    lot: str | None = None
    allowed: list[str] | None = Field(None, description="What would be allowed instead.")
    claim: str | None = Field(None, description="The claim a refused limit comes from.")


REFUSALS: dict[int | str, dict[str, Any]] = {
    status: {"model": Refusal, "description": why}
    for status, why in (
        (400, "The body is not JSON."),
        (401, "No credentials, or refused ones."),
        (403, "The principal lacks the role (recorded as a security event)."),
        (404, "No such lot, tool, user, durable, material lot or reason code."),
        (
            409,
            "The lot's or tool's state or the line refuses it now, or another writer came first.",
        ),
        (413, "The body is larger than the server reads."),
        (422, "A value is invalid, a field unknown, or a type wrong."),
        (503, "The database is unavailable."),
    )
}
"""The refusals every route may answer, for the OpenAPI document."""
