"""The reason-code routes (``pkgline reason``): each one call of the reason service for the
request's principal, answering the JSON the CLI's ``--json`` prints
(:mod:`pkgline.interlock_views`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from mes.domain.authority import Principal
from mes.domain.reasons import ReasonKind
from mes.reasons import ReasonService
from pkgline.api import bodies as b
from pkgline.api.auth import answer, principal, state_of
from pkgline.api.json_bodies import JsonRoute
from pkgline.interlock_views import reason_dict

router = APIRouter(prefix="/reasons", tags=["reasons"], responses=b.REFUSALS, route_class=JsonRoute)
Who = Annotated[Principal, Depends(principal)]


class AddReasonBody(b.Body):
    code: b.Id
    kind: b.Name
    text: Annotated[str, Field(max_length=2000, description="What it means.")]
    release_by: Annotated[
        list[b.Name],  # a JSON array: a tuple the strict body takes from Python alone
        Field(
            [],  # pydantic copies it for each body
            max_length=16,
            description="Hold codes: only these roles release such a hold.",
        ),
    ]


def _reasons(request: Request) -> ReasonService:
    return state_of(request).services.reasons


@router.get("", summary="The hold and scrap catalogues (reason list)")
async def list_reasons(
    request: Request,
    who: Who,
    kind: Annotated[ReasonKind | None, Query(description="hold or scrap")] = None,
    retired: Annotated[bool, Query(description="Retired codes too.")] = False,
) -> JSONResponse:
    found = await _reasons(request).find(kind=kind, retired=retired, by=who)
    return answer(request, [reason_dict(r) for r in found])


@router.post("", status_code=201, summary="Add a reason code (reason add)")
async def add(request: Request, who: Who, body: AddReasonBody) -> JSONResponse:
    found = await _reasons(request).add(
        body.code, body.kind.strip(), body.text, who.name, release_roles=body.release_by, by=who
    )
    return answer(request, reason_dict(found), 201)


@router.post("/{code}/retire", summary="Retire a reason code (reason retire)")
async def retire(request: Request, who: Who, code: str, body: b.RequiredReasonBody) -> JSONResponse:
    found = await _reasons(request).retire(code, who.name, body.reason.strip(), by=who)
    return answer(request, reason_dict(found))
