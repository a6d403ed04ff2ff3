"""The flow version routes: publish, list, compare, show, approve (signed) and retire, each
one call of the flow version service for the request's principal, answering the JSON of
``pkgline flow ... --json`` (:mod:`pkgline.flow_views`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from flows.resolve import FRAGMENTS_FILE, STEPS_FILE
from mes.domain.authority import Principal
from mes.domain.errors import InvalidInput
from mes.domain.signatures import SignatureGiven
from mes.flowversions import FlowVersionService
from pkgline import flow_views as views
from pkgline.api import bodies as b
from pkgline.api.auth import answer, principal, state_of
from pkgline.api.json_bodies import JsonRoute

router = APIRouter(prefix="/flows", tags=["flows"], responses=b.REFUSALS, route_class=JsonRoute)
Who = Annotated[Principal, Depends(principal)]
Json = dict[str, Any]
FlowPath = Annotated[str, Path(max_length=64)]
Number = Annotated[int, Path(ge=1, le=1_000_000)]


def _versions(request: Request) -> FlowVersionService:
    return state_of(request).services.flow_versions


def _files(body: b.PublishBody) -> dict[str, dict[str, str]]:
    """Each flow's files, exactly the three a version holds (as the CLI reads them)."""
    for name, files in body.flows.items():
        expected = {STEPS_FILE, FRAGMENTS_FILE, f"{name}.yaml"}
        if set(files) != expected:
            raise InvalidInput(
                f"flows.{name}: expected the files {', '.join(sorted(expected))}, got "
                f"{', '.join(sorted(files)) or 'none'}; nothing was published",
                allowed=sorted(expected),
            )
    return {name: dict(files) for name, files in body.flows.items()}


@router.post("/versions", summary="Publish flow files as new draft versions (flow publish)")
async def publish(request: Request, who: Who, body: b.PublishBody) -> Any:
    service = _versions(request)
    done = await service.publish(_files(body), body.note, by=who)
    active = {p.version.flow: await service.active_version(p.version.flow, by=who) for p in done}
    return answer(request, views.published_dicts([(p.version, p.new) for p in done], active))


@router.get("/{flow}/versions", summary="A flow's versions and their approvals (flow versions)")
async def versions(request: Request, who: Who, flow: FlowPath) -> Any:
    service = _versions(request)
    found = await service.versions(flow, by=who)
    active = await service.active_version(flow, by=who)
    return answer(request, views.versions_dicts(found, active))


@router.get(
    "/{flow}/versions/{version}", summary="A published version's flow (flow show --version)"
)
async def show(request: Request, who: Who, flow: FlowPath, version: Number) -> Any:
    return answer(request, await views.shown_version(_versions(request), flow, version, by=who))


@router.get("/{flow}/diff", summary="What changed between two versions (flow diff)")
async def diff(
    request: Request,
    who: Who,
    flow: FlowPath,
    old: Annotated[int, Query(alias="from", ge=1, le=1_000_000)],
    new: Annotated[int, Query(alias="to", ge=1, le=1_000_000)],
) -> Any:
    changes = await _versions(request).diff(flow, old, new, by=who)
    return answer(request, views.diff_dict(flow, old, new, changes))


@router.post("/{flow}/versions/{version}/approve", summary="Approve a draft, signed (flow approve)")
async def approve(
    request: Request, who: Who, flow: FlowPath, version: Number, body: b.ApproveBody
) -> Any:
    signed = tuple(
        SignatureGiven(g.username, g.meaning, g.password, approvals_seen=g.approvals_seen)
        for g in body.signatures
    )
    service = _versions(request)
    v = await service.approve(flow, version, by=who, signatures=signed)
    active = await service.active_version(flow, by=who)
    return answer(request, views.approved_dict(v, service.approvals_needed, active))


@router.post(
    "/{flow}/versions/{version}/retire", summary="No new lot starts on a version (flow retire)"
)
async def retire(
    request: Request, who: Who, flow: FlowPath, version: Number, body: b.RequiredReasonBody
) -> Any:
    retired = await _versions(request).retire(flow, version, body.reason, by=who)
    return answer(request, views.version_dict(retired))
