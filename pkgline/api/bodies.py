"""Request bodies of the lot, flow and map routes: exactly what each operation takes,
nothing more (an unknown field is refused, 422), typed (a wrong type is refused, a number
given as text too: :class:`Body`), sized (a value past its limit is refused; a limit the lot
tracker sets is its own constant: carriers, site rows and columns, priority). Who acts is
never in a body: it is the request's principal.

Signed operations carry ``signatures``: the electronic signatures (21 CFR Part 11), each
with the signer's password given again and what binds it to what the signer saw (the lot's
version; a flow version's approvals), checked by the service layer (docs/security.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)
from pydantic_core import PydanticCustomError

from mes.domain.model import (
    LOT_ID_PATTERN,
    LOT_ID_RULE,
    MAX_CARRIERS,
    MAX_SITE_COLS,
    MAX_SITE_ROWS,
    PRIORITY_RANGE,
)
from mes.maps.e142 import MAX_MAP_BYTES
from pkgline.list_views import read_iso_time

GivenValue = StrictStr | StrictInt | StrictFloat
Values = Annotated[
    dict[Annotated[str, Field(max_length=64)], GivenValue],
    Field(description="NAME: VALUE (text is parsed with the flow's type, as the CLI's)."),
]
Reason = Annotated[str | None, Field(None, max_length=2000, description="Why (recorded).")]
LotId = Annotated[str, Field(min_length=1, max_length=64)]
NewLotId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        description=f"A new lot's id: {LOT_ID_RULE}.",
        # documented for clients; the service refuses any other, saying the rule in words
        json_schema_extra={"pattern": LOT_ID_PATTERN.pattern},
    ),
]
Id = Annotated[
    str,
    Field(min_length=1, max_length=64, description="Its id (the service says which are valid)."),
]
Name = Annotated[str, Field(min_length=1, max_length=64)]


BODY_TIME = "an ISO 8601 time with its zone, e.g. 2026-12-02T14:30Z"
"""What a body's time takes (:data:`ZonedTime`), as its refusals say."""


def iso_text(value: object) -> object:
    """A time given as ISO 8601 text, as the documents say, and nothing else: pydantic alone
    would take a number for seconds since 1970 (a time in 1970). Read by the one reading of
    a time the lists' filters share (:func:`pkgline.list_views.read_iso_time`); a time
    without its zone is passed on as such, for the service to refuse (a fact recorded)."""
    if isinstance(value, datetime):  # already one (a default, or Python calling)
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "iso_time", "expected a time as ISO 8601 text with its zone, e.g. 2026-12-02T14:30Z"
        )
    try:
        return read_iso_time(value, BODY_TIME)
    except ValueError as exc:
        raise PydanticCustomError(
            "iso_time", "{given}: {problem}", {"given": repr(value[:40]), "problem": str(exc)}
        ) from None


ZonedTime = Annotated[datetime, BeforeValidator(iso_text)]
"""A body field's time that records a fact (a material lot's ``expires_at``): ISO 8601 text
(a number is refused) with its zone: the service refuses one without (docs/api.md, "Times").
The lists' filters are query parameters read by :func:`pkgline.list_views.parse_instant`
instead, where a time without an offset is UTC."""


def time_filter(what: str) -> Any:
    """The query parameter of a list's time filter, ``since`` or ``until`` (``what`` it
    selects, for the document): ISO 8601 text, read in the route by
    :func:`pkgline.list_views.parse_instant`, as every list reads it (docs/api.md, "Times"):
    without an offset, UTC; a bad one is refused (422 ``invalid_input``) naming the parameter
    and saying what is expected."""
    return Query(
        max_length=40,
        description=f"{what}: an ISO 8601 date or time, UTC unless an offset is given "
        "(2026-12-02T14:30, 2026-12-02T14:30Z, 2026-12-02T15:30%2B01:00: the offset's + "
        "sent as %2B).",
    )


def _no_nul(value: object) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(
                "the text holds a NUL character (U+0000): no id or text of pkgline holds one"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key)
            _no_nul(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _no_nul(item)


class Body(BaseModel):
    # Strict: a number, a whole number or true/false given as text ("3" for 3) is refused,
    # 422, as is a whole number given as 3.0 (JSON's own types, as the CLI sends them; the
    # flows' values, Values, take text by design). The station's forms, whose values are all
    # text, do not come through these: their pages read them. No docstring: the OpenAPI
    # document would show it as the description of the (unused) schema Body.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _refuse_nul(cls, value: object) -> object:
        """A text with a NUL character is refused (422): none is a valid id or text, and
        PostgreSQL refuses one in any statement (a login's user name with one was a 500)."""
        _no_nul(value)
        return value


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


Priority = Annotated[int, Field(ge=PRIORITY_RANGE.start, le=PRIORITY_RANGE.stop - 1)]


class StartBody(Body):
    """A lot's carriers, their sites and its priority are bounded by the lot tracker's
    constants (the CLI's options by the same, pkgline.cli.bounds): the document says what
    the lot tracker accepts."""

    lot: NewLotId
    flow: Annotated[str, Field(min_length=1, max_length=64)]
    carriers: Annotated[int, Field(2, ge=1, le=MAX_CARRIERS)] = 2
    rows: Annotated[int, Field(4, ge=1, le=MAX_SITE_ROWS)] = 4
    cols: Annotated[int, Field(8, ge=1, le=MAX_SITE_COLS)] = 8
    params: Values = {}
    priority: Priority = 5


class TrackInBody(Body):
    step: Annotated[str, Field(min_length=1, max_length=64)]
    tool: Annotated[str | None, Field(None, max_length=64)] = None
    params: Values = {}


class Site(Body):
    carrier: Annotated[str, Field(min_length=1, max_length=64)]
    row: Annotated[int, Field(ge=1, le=MAX_SITE_ROWS)]
    col: Annotated[int, Field(ge=1, le=MAX_SITE_COLS)]


class Reject(Site):
    code: Annotated[str, Field(min_length=1, max_length=64)]


class TrackOutBody(Body):
    step: Annotated[
        str | None,
        Field(
            None,
            min_length=1,
            max_length=64,
            description="The step being finished: refused (409, step_not_allowed) if the lot "
            "runs another, e.g. a retried track-out after the lot was tracked in again.",
        ),
    ] = None
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


class ReleaseMaterialBody(Body):
    """A material lot's release from quarantine: why (required), signed as a lot's release
    is; each signature's ``lot_version`` is the material lot's ``version``."""

    reason: Annotated[
        str,
        Field(
            min_length=1, max_length=2000, pattern=r"\S", description="Why it may be used again."
        ),
    ]
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
        list[Annotated[str, Field(min_length=1, max_length=64)]],
        Field(min_length=1, max_length=MAX_CARRIERS),
    ]
    into: NewLotId
    reason: Reason = None


class MergeBody(Body):
    into: LotId
    reason: Reason = None


FlowName = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
FileName = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.yaml$")
]
MAX_FLOW_FILE_CHARS = 256_000
"""The most text one flow file of a publication may hold (the body limit, max_body_kb, caps
the whole request first)."""


class PublishBody(Body):
    """Flow files to publish as new draft versions: per flow, the text of its files
    (``steps.yaml``, ``fragments.yaml`` and ``NAME.yaml``), as ``pkgline flow publish`` reads
    them."""

    note: Annotated[str, Field(max_length=2000, description="What changed and why (required).")]
    flows: Annotated[
        dict[
            FlowName,
            Annotated[
                dict[FileName, Annotated[str, Field(max_length=MAX_FLOW_FILE_CHARS)]],
                Field(min_length=1, max_length=3),
            ],
        ],
        Field(min_length=1, max_length=64),
    ]


class ApprovalSignatureBody(Body):
    """An approval's electronic signature (21 CFR 11.50, 11.200): the signer's password given
    again, its meaning, and how many approvals the version had when the signer saw it (a
    replay, or a version somebody approved since, is refused: signature_stale)."""

    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]
    meaning: Annotated[str, Field(min_length=1, max_length=2000)]
    approvals_seen: Annotated[int, Field(ge=0, le=2)]


class ApproveBody(Body):
    signatures: Annotated[
        list[ApprovalSignatureBody],
        Field(
            max_length=2,
            description="The approver's signature first; a second person's (quality) where "
            "[signatures] two_signers names approve_flow and it is given in the same request.",
        ),
    ] = []


class MapImportBody(Body):
    """An upstream SEMI E142 map to import (``pkgline lot map import``)."""

    xml: Annotated[str, Field(min_length=1, max_length=MAX_MAP_BYTES, description="The map.")]
    source: Annotated[
        str,
        Field(
            min_length=1,
            max_length=255,
            pattern=r"^[^/\\\x00-\x1f]+$",
            description="The map's file name, recorded in the history (no directory).",
        ),
    ]
    carrier: Annotated[
        str | None,
        Field(None, min_length=1, max_length=64, description="Put the map on this carrier."),
    ] = None
    bins: Annotated[
        dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=64)]],
        Field(max_length=1000, description="BIN: reject code, for failing bins of the map."),
    ] = {}
    signatures: Signatures = []


class Problem(BaseModel):
    """Where an invalid request is wrong, and how."""

    where: str = Field(description="body, a field's path, query.NAME or path.NAME.")
    problem: str


class LimitViolation(BaseModel):
    """A value outside a limit the claims fix (``limit_violated``)."""

    step: str | None
    value: str
    given: Any
    expected: str
    claim: str | None
    kind: str = Field(description="claimed, spec_lower or spec_upper.")
    message: str
    field: str | None = Field(
        None,
        description="Where the request gave the value, as problems say where: params.NAME (a "
        "track-in's recipe value, a start's lot parameter); absent for a value an earlier "
        "step recorded.",
    )


class Refusal(BaseModel):
    """What every refusal answers (the JSON the CLI prints for it); the fields after
    ``claim`` come with the refusals named."""

    error: str = Field(description="The kind: not_authorized, unknown_lot, step_not_allowed ...")
    message: str = Field(description="What was refused and why, for a person.")
    lot: str | None = None
    allowed: list[str] | None = Field(None, description="What would be allowed instead.")
    claim: str | None = Field(None, description="The claim a refused limit comes from.")
    field: str | None = Field(
        None,
        description="invalid_input: where the request gave the input refused, where it is "
        "one, as problems say where: params.NAME (a track-in's or a start's params), "
        "data.NAME (a track-out's), rejects, sites.",
    )
    problems: list[Problem] | None = Field(None, description="invalid_request: what is wrong.")
    violations: list[LimitViolation] | None = Field(None, description="limit_violated.")
    interlock: str | None = Field(None, description="interlock: which refused.")
    expected: str | None = Field(None, description="interlock: what it would accept.")
    action: str | None = Field(None, description="signature_required: the action to sign.")
    signers_needed: int | None = Field(None, description="signature_required.")
    signers_given: int | None = Field(None, description="signature_required.")
    meaning: str | None = Field(None, description="signature_required: a meaning to sign.")
    signer: str | None = Field(None, description="signature_refused: whose signature.")
    signed_version: int | None = Field(None, description="signature_stale: the lot signed.")
    lot_version: int | None = Field(None, description="signature_stale: the lot now.")
    retry_after_seconds: int | None = Field(
        None, description="too_many_failures: when to try again (as Retry-After says)."
    )


LOCATION_HEADER: dict[str, Any] = {
    "description": "The URL path of the resource made (its GET), each id quoted.",
    "schema": {"type": "string"},
}
"""The OpenAPI of the ``Location`` header of a 201 answer (:func:`created_answer`)."""


def created_answer(description: str, **headers: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI of a 201 answer that gives the URL path of what it made as ``Location``
    (``headers``: more it carries, ``ETag=...``)."""
    return {201: {"description": description, "headers": {"Location": LOCATION_HEADER, **headers}}}


def page_answer_schema(
    items: str,
    cursor: str,
    description: str,
    *,
    feed: bool = False,
    item: dict[str, Any] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI of a 200 answer that is a page of a list (:func:`pkgline.page_sizes.
    page_answer`): ``{items: [...], "total", "total_exact", "shown", "more", "next_after"}``,
    ``cursor`` the JSON type of ``next_after`` (null on the last page); ``feed``: the event
    feed's page, whose ``next_after`` is never null, with ``oldest``, ``newest`` and ``gap``.
    The items are objects, each as its own GET or the feed's JSON Schemas describe it (``item``:
    the schema of an item, when given)."""
    count = {"type": "integer", "minimum": 0}
    properties: dict[str, Any] = {
        items: {"type": "array", "items": item or {"type": "object"}},
        "total": {**count, "description": "How many the filters select (up to 10,000)."},
        "total_exact": {"type": "boolean", "description": "False: more than total."},
        "shown": count,
        "more": {"type": "boolean", "description": "Another page follows: ask with next_after."},
        "next_after": {
            "type": cursor if feed else [cursor, "null"],
            "description": "The after of the next page's request.",
        },
    }
    if feed:
        id_or_none = {"type": ["integer", "null"]}
        properties["total"] = {
            **count,
            "description": "How many events the outbox keeps in all, whatever after (up to "
            "10,000): those after it are total_after.",
        }
        properties |= {
            "total_after": {
                **count,
                "description": "How many of the events kept come after after (this page's and "
                "those that follow; up to 10,000); without after, total.",
            },
            "total_after_exact": {
                "type": "boolean",
                "description": "False: more than total_after.",
            },
            "oldest": id_or_none,
            "newest": id_or_none,
            "gap": {"type": ["string", "null"]},
        }
    schema = {"type": "object", "required": list(properties), "properties": properties}
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}}


_TEXT_OR_NULL = {"type": ["string", "null"]}
_DOWN = {
    "type": ["string", "null"],
    "enum": ["scheduled_down", "non_scheduled", None],
    "description": "The E10 state a person declared (tool down); null: none in force.",
}
DECLARED_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "description": "The last person's tool down or tool up of the tool, kept once it is up "
    "(null: no person declared it down), as the event feed's tool-state gives it "
    "(docs/events.md).",
    "required": ["down", "user", "by", "auth", "reason", "at"],
    "properties": {
        "down": {**_DOWN, "description": "The state declared; null: brought up."},
        "user": {**_TEXT_OR_NULL, "description": "The name the command was given."},
        "by": {
            **_TEXT_OR_NULL,
            "description": "Who acted (null: declared before the record kept it).",
        },
        "auth": {**_TEXT_OR_NULL, "description": "How they were known (null: as by)."},
        "reason": {**_TEXT_OR_NULL, "description": "Why (optional to bring a tool up)."},
        "at": {"type": "string", "format": "date-time"},
    },
}
"""The ``declared`` of a tool (:func:`mes.domain.tool_down.declaration`) in the OpenAPI
document."""
TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A tool (tool show --json); its other keys in docs/api.md.",
    "required": ["id", "e10", "down", "down_by", "down_at", "down_reason", "declared"],
    "properties": {
        "id": {"type": "string"},
        "e10": {"type": "string"},
        "down": _DOWN,
        "down_by": {**_TEXT_OR_NULL, "description": "Who declared the state in force."},
        "down_at": {"type": ["string", "null"], "format": "date-time"},
        "down_reason": _TEXT_OR_NULL,
        "declared": DECLARED_SCHEMA,
    },
    "additionalProperties": True,
}
"""A tool as ``GET /tools/{tool}`` answers it and ``GET /tools`` lists it: the keys a reader
of its declaration relies on (the JSON's other keys: docs/api.md)."""


def tool_answer_schema(description: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI of a 200 answer that is a tool (:data:`TOOL_SCHEMA`)."""
    return {
        200: {"description": description, "content": {"application/json": {"schema": TOOL_SCHEMA}}}
    }


REFUSALS: dict[int | str, dict[str, Any]] = {
    status: {"model": Refusal, "description": why}
    for status, why in (
        (400, "The body is not JSON, or an object of it gives a key twice."),
        (401, "No credentials, or refused ones."),
        (403, "The principal lacks the role (recorded as a security event)."),
        (404, "No such lot, tool, user, durable, material lot or reason code."),
        (
            409,
            "The lot's or tool's state or the line refuses it now, or another writer came first.",
        ),
        (413, "The body is larger than the server reads."),
        (422, "A value is invalid, a field unknown, or a type wrong."),
        (
            429,
            "A password the request gives (a login's, a signature's, the current one) was not "
            "checked: too many failed password checks from this host lately (Retry-After).",
        ),
        (503, "The database is unavailable."),
    )
}
"""The refusals every route may answer, for the OpenAPI document."""

_SECONDS = {"type": "string", "pattern": "^[0-9]+$"}
REFUSALS[401]["headers"] = {
    "WWW-Authenticate": {"description": "Bearer.", "schema": {"type": "string"}}
}
REFUSALS[429]["headers"] = {
    "Retry-After": {"description": "Seconds until a password is checked again.", "schema": _SECONDS}
}
REFUSALS[503]["headers"] = {
    "Retry-After": {"description": "Seconds to wait (database unavailable).", "schema": _SECONDS}
}
