"""Values that cannot be physical, refused as bad data before any rule looks at them: an
operator's (or a script's) typo is not a measurement. Pure.

Not a number or infinite, a temperature below absolute zero, a negative force, time, size,
speed, power, area, volume or dose (a length with a sign, an offset or an overlay, may be
negative), a whole number outside what the database keeps (64 bits). The controller's results get the physical ranges of each measured
value of the equipment class (``drivers/classes.yaml``, issue 13); this check is the service
layer's, for values given on the command line. The rule itself, :func:`flows.physical.unphysical`,
is the flows' (a new flow version's defaults are held to it when it is published).
"""

from __future__ import annotations

from collections.abc import Mapping

from flows import ValueSpec
from flows.physical import unphysical
from mes.domain.commands import GivenValue
from mes.domain.errors import InvalidInput


def refuse_unphysical(
    specs: Mapping[str, ValueSpec],
    given: Mapping[str, GivenValue],
    what: str,
    lot_id: str,
    *,
    field: str,
) -> None:
    """Refuse (InvalidInput, nothing written) given values that cannot be physical, the
    value named as ``field.NAME`` (``field``: the command's input that gives them,
    ``measured``). Values that do not parse, or that no spec names, are left to the rules,
    which say what they expect."""
    for name, raw in given.items():
        spec = specs.get(name)
        if spec is None or spec.type == "str" or isinstance(raw, bool):
            continue
        try:
            value = spec.parse(raw) if isinstance(raw, str) else raw
        except ValueError:
            continue
        if isinstance(value, str):
            continue
        why = unphysical(spec, value)
        if why is not None:
            unit = f" {spec.unit}" if spec.unit else ""
            raise InvalidInput(
                f"{what} refused as bad data: {name} {raw}{unit} {why}; expected a value "
                "that can be physical",
                lot_id=lot_id,
                field=f"{field}.{name}",
            )
