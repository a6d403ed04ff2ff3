"""The process flows as data (``defs/``), and the pure code that loads them and answers what a
lot may do next and whether its values are within the limits the claims fix.

::

    library = load_library()               # flows/defs, checked; FlowError names file:line
    flow = library.get("fo-organic")       # UnknownFlow lists the names
    flow.position(path, params)            # Position(next_steps, complete, layer, layers)
    flow.check_track_in(step, values, ctx) # [Violation, ...], each citing its claim

Modules: ``grammar`` (the notation), ``automaton`` (Glushkov automaton, path simulation),
``model`` (value types), ``limits`` (checks), ``schema`` + ``loader`` (the defs files),
``flow`` (Flow, FlowLibrary). The file format is described in docs/flow-files.md.
"""

from pathlib import Path

from flows.errors import FlowError, PathError, UnknownFlow
from flows.flow import Flow, FlowLibrary
from flows.model import (
    Equals,
    GreaterThan,
    LessThan,
    Limit,
    LotContext,
    OneOf,
    Position,
    Range,
    ReworkSpec,
    Rule,
    StepCodeInfo,
    StepSpec,
    Value,
    Values,
    ValueSpec,
    Violation,
)

DEFS = Path(__file__).with_name("defs")
"""The packaged flow definitions."""


def load_library(directory: Path | None = None) -> FlowLibrary:
    """Read, merge and check every defs file; the packaged ``flows/defs`` by default.

    Raises :class:`FlowError` (``path:line: message``) for the first problem found. The
    loader (the files' pydantic schema, the resolver) is imported here, not with the package:
    a process that finds the library already built (pkgline.flowcache) never needs it.
    """
    from flows.loader import load_library as load

    return load(directory)


__all__ = [
    "DEFS",
    "Equals",
    "Flow",
    "FlowError",
    "FlowLibrary",
    "GreaterThan",
    "LessThan",
    "Limit",
    "LotContext",
    "OneOf",
    "PathError",
    "Position",
    "Range",
    "ReworkSpec",
    "Rule",
    "StepCodeInfo",
    "StepSpec",
    "UnknownFlow",
    "Value",
    "ValueSpec",
    "Values",
    "Violation",
    "load_library",
]
