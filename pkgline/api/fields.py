"""Where a request gave the input a refusal is about. The lot tracker names the command's
input (``InvalidInput.field``, ``LimitViolated.fields``: ``values.cavity_depth_um`` of a
TrackIn, ``measured.NAME`` of a TrackOut); a caller must find the name in what it sent, so
each entry point names it its own way, from one table of its own: the API by the body's keys
(:data:`BODY_KEYS`, ``params.cavity_depth_um``, as a 422's ``problems`` say ``where``), the
CLI by its options (``--param cavity_depth_um``), the station by its form's fields
(``value.cavity_depth_um``). Standard library only: the CLI reads it on its way through the
server too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BODY_KEYS: dict[str, dict[str, str]] = {
    "/lots": {"params": "params"},
    "/lots/{lot_id}/track-in": {"values": "params"},
    "/lots/{lot_id}/track-out": {"measured": "data", "rejects": "rejects"},
    "/lots/{lot_id}/scrap-sites": {"sites": "sites"},
}
"""For each route (its path as declared) whose command's refusals name an input: the body's key
that gives each input (:class:`mes.domain.commands.TrackIn`'s ``values`` are the track-in
body's ``params``)."""


def named(field: str, names: Mapping[str, str], sep: str = ".") -> str | None:
    """The lot tracker's ``field`` (``INPUT`` or ``INPUT.NAME``) as a caller names it:
    ``names[INPUT]``, then ``sep`` and ``NAME`` where there is one; None where ``names`` has
    no name for the input (the caller gave it nowhere it could find)."""
    given, dot, name = field.partition(".")
    where = names.get(given)
    if where is None:
        return None
    return f"{where}{sep}{name}" if dot else where


def located(refusal: Mapping[str, Any], names: Mapping[str, str], sep: str = ".") -> dict[str, Any]:
    """A refusal's JSON (``LotTrackerError.to_dict``) with its ``field`` and each of its
    violations' ``field`` named as the caller names them (:func:`named`); one the caller has no
    name for is left out, rather than naming what they did not send."""
    out: dict[str, Any] = {}
    for key, value in refusal.items():
        if key == "field":
            field = named(str(value), names, sep)
            if field is not None:
                out[key] = field
        elif key == "violations" and isinstance(value, list):
            out[key] = [located(v, names, sep) if isinstance(v, Mapping) else v for v in value]
        else:
            out[key] = value
    return out
