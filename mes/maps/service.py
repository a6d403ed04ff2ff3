"""A lot's site maps out as SEMI E142, and an upstream E142 map in, through the lot service.

Export reads the lot's report (one read transaction) and encodes it (:mod:`mes.maps.e142`).
Import decodes the document first (a map that does not parse is refused before the
database is touched), then rejects its failing sites in one transaction that reads the lot
and its rejected sites and decides there (:meth:`mes.service.LotService.scrap_sites_decided`),
recorded as a ``scrap_sites`` history entry that names the map. A map that does not fit the
lot is refused with what differed, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mes.domain.commands import ScrapSites
from mes.domain.model import Lot, LotState, SiteRef, SiteReject
from mes.domain.signatures import SignatureGiven
from mes.maps import e142
from mes.service import LotService, Outcome


@dataclass(frozen=True, slots=True)
class MapExport:
    lot_id: str
    carriers: tuple[str, ...]
    xml: str


@dataclass(frozen=True, slots=True)
class MapImport:
    """What an import did: the plan, the lot as it is now (None: nothing to reject) and the
    lot's version after it (its ETag through the server: unchanged when nothing was
    rejected)."""

    lot_id: str
    plan: e142.ImportPlan
    outcome: Outcome | None
    version: int


async def export_lot_maps(
    service: LotService, lot_id: str, carrier: str | None = None
) -> MapExport:
    """The lot's carriers (or the one named, by id or position) as one E142 document."""
    report = await service.report(lot_id)
    if report.lot.state is LotState.SCRAPPED:
        # Its carriers stay on record, but their sites went with the lot: a map of them
        # would say every site not rejected before is good (Pass, to pick).
        raise e142.MapRefused(
            f"lot {lot_id} is SCRAPPED: every site was scrapped with it, nothing to map; "
            f"its rejects before the scrap are in pkgline lot show {lot_id}",
            lot_id=lot_id,
        )
    if not report.carriers:
        raise e142.MapRefused(
            f"lot {lot_id} is {report.lot.state.value} and has no carriers: nothing to map; "
            "expected a lot with carriers",
            lot_id=lot_id,
        )
    chosen = report.carriers
    if carrier is not None:
        ids = [m.carrier.id for m in report.carriers]
        wanted = (
            ids[int(carrier) - 1]
            if carrier.isascii() and carrier.isdigit() and 0 < int(carrier) <= len(ids)
            else carrier
        )
        chosen = tuple(m for m in report.carriers if m.carrier.id == wanted)
        if not chosen:
            raise e142.MapRefused(
                f"carrier {carrier!r} is not in lot {lot_id}; its carriers are "
                f"{', '.join(ids)} (or their positions 1..{len(ids)})",
                lot_id=lot_id,
                allowed=ids,
            )
    sites = [
        e142.CarrierSites(m.carrier.id, m.carrier.rows, m.carrier.cols, m.rejects) for m in chosen
    ]
    text = e142.export_maps(report.lot.id, report.lot.flow, sites)
    return MapExport(report.lot.id, tuple(s.carrier_id for s in sites), text)


class _NothingToReject(Exception):
    def __init__(self, plan: e142.ImportPlan):
        super().__init__("nothing to reject")
        self.plan = plan


async def import_lot_map(
    service: LotService,
    lot_id: str,
    document: str | bytes,
    *,
    source: str,
    user: str,
    onto: str | None = None,
    bin_codes: Mapping[str, str] | None = None,
    signatures: Sequence[SignatureGiven] = (),
) -> MapImport:
    """Reject the sites that an E142 document fails, in carriers of lot ``lot_id``
    (:func:`mes.maps.e142.plan_import`); ``source`` names the document in the history.
    A scrap of sites: signed (``signatures``, as :meth:`LotService.scrap_sites`)."""
    maps = e142.decode(document)  # refused before anything is read or written
    planned: list[e142.ImportPlan] = []
    versions: list[int] = []

    def decide(
        lot: Lot, rejected: Mapping[SiteRef, SiteReject]
    ) -> tuple[ScrapSites, Mapping[str, Any]]:
        carriers = dict.fromkeys(lot.carriers, (lot.site_rows, lot.site_cols))
        target = None
        if onto is not None:
            target = onto
            if onto.isascii() and onto.isdigit() and 0 < int(onto) <= len(lot.carriers):
                target = lot.carriers[int(onto) - 1]
        plan = e142.plan_import(lot.id, carriers, maps, rejected, onto=target, bin_codes=bin_codes)
        planned.append(plan)
        versions.append(lot.version)
        if not plan.rejects:
            raise _NothingToReject(plan)
        names = ", ".join(m.map_name or m.substrate_id for m in maps)
        data = {
            "e142_import": {
                "source": source,
                "maps": [
                    {"map": m.map_name, "substrate": m.substrate_id, "lot": m.lot_id} for m in maps
                ],
                "carriers": dict(plan.carriers),
                "already_rejected": [str(s) for s in plan.already_rejected],
            }
        }
        cmd = ScrapSites(lot.id, user, f"E142 map import: {names} ({source})", plan.rejects)
        return cmd, data

    try:
        outcome = await service.scrap_sites_decided(lot_id, decide, signatures=signatures)
    except _NothingToReject as nothing:
        return MapImport(lot_id, nothing.plan, None, versions[-1])
    return MapImport(lot_id, planned[-1], outcome, outcome.lot.version)
