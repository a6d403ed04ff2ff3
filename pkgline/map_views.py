"""What a SEMI E142 map export and import answer (a contract: scripts read it), for the CLI
(``pkgline lot map``) and the server (``/lots/{lot}/maps/e142``) alike."""

from __future__ import annotations

from typing import Any

from mes.maps.service import MapExport, MapImport

Json = dict[str, Any]


def export_dict(done: MapExport) -> Json:
    """The lot, the carriers mapped, and the E142 document."""
    return {"lot": done.lot_id, "carriers": list(done.carriers), "xml": done.xml}


def import_dict(done: MapImport) -> Json:
    """The lot, which carrier each map went to, the sites rejected (``CARRIER:ROW:COL:CODE``),
    those the map rejects that were rejected already, and the good sites now (None: nothing
    was rejected, the lot is unchanged); ``total_sites`` for the sentence a person reads."""
    plan = done.plan
    outcome = done.outcome
    return {
        "lot": done.lot_id,
        "carriers": dict(plan.carriers),
        "rejected": [f"{r.carrier}:{r.row}:{r.col}:{r.code}" for r in plan.rejects]
        if outcome
        else [],
        "already_rejected": [str(s) for s in plan.already_rejected],
        "good_sites": None if outcome is None else outcome.lot.good_sites,
        "total_sites": None if outcome is None else outcome.lot.total_sites,
    }
