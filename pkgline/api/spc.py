"""The SPC routes (``pkgline spc``): each one call of the SPC service for the request's
principal, answering the JSON the CLI's ``--json`` prints (:mod:`pkgline.interlock_views`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from mes.domain.authority import Principal
from mes.domain.spc import MAX_BASELINE, MIN_BASELINE
from mes.spc import SpcService
from pkgline.api import bodies as b
from pkgline.api.auth import answer, principal, state_of
from pkgline.api.json_bodies import JsonRoute
from pkgline.interlock_views import chart_dict, chart_view_dict, cleared_dict

router = APIRouter(prefix="/spc", tags=["spc"], responses=b.REFUSALS, route_class=JsonRoute)
Who = Annotated[Principal, Depends(principal)]

Limit = Annotated[
    float | None,
    Field(None, ge=-1e12, le=1e12, allow_inf_nan=False, description="Limits given: both."),
]


class ChartBody(b.Body):
    step: b.Name
    value: b.Name
    tool: b.Name
    baseline: Annotated[
        int,
        Field(20, ge=MIN_BASELINE, le=MAX_BASELINE, description="Limits from the first N points."),
    ] = 20
    center: Limit = None
    sigma: Limit = None
    kind: Annotated[
        Literal["lot", "carrier", "subgroup"],  # mes.domain.spc.ChartKind's values
        Field(
            "lot",
            description="What a point is, at each pass of a lot through the step (a flow "
            "that runs it twice, or a rework, adds points again): the lot's value (lot), each "
            "carrier's (carrier), or the mean and spread of the lot's carriers (subgroup: an "
            "X-bar / S chart).",
        ),
    ] = "lot"
    nelson: bool = False
    inhibit: Annotated[
        bool, Field(False, description="A violation disqualifies the tool for the step.")
    ] = False


class ClearBody(b.RequiredReasonBody):
    step: b.Name
    tool: b.Name


def _spc(request: Request) -> SpcService:
    return state_of(request).services.spc


@router.post("/charts", summary="Set a chart of a step, measured value and tool (spc chart)")
async def chart(request: Request, who: Who, body: ChartBody) -> JSONResponse:
    found = await _spc(request).configure(
        body.step,
        body.value,
        body.tool,
        who.name,
        baseline_n=body.baseline,
        nelson=body.nelson,
        inhibit=body.inhibit,
        center=body.center,
        sigma=body.sigma,
        kind=body.kind,
        by=who,
    )
    return answer(request, chart_dict(found))


@router.get("/charts", summary="Every chart set, or a step's or a tool's (spc list)")
async def list_charts(
    request: Request,
    who: Who,
    step: Annotated[str | None, Query(max_length=64)] = None,
    tool: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    found = await _spc(request).charts(step=step, tool_id=tool, by=who)
    return answer(request, [chart_dict(c) for c in found])


@router.get("/charts/{step}/{value}", summary="A chart's points, limits, violations (spc show)")
async def show(
    request: Request,
    who: Who,
    step: str,
    value: str,
    tool: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    found = await _spc(request).show(step, value, tool_id=tool, by=who)
    return answer(request, [chart_view_dict(v) for v in found])


@router.post("/clear", summary="Clear a tool an SPC violation inhibited (spc clear)")
async def clear(request: Request, who: Who, body: ClearBody) -> JSONResponse:
    found = await _spc(request).clear(body.step, body.tool, who.name, body.reason.strip(), by=who)
    return answer(request, cleared_dict(found))
