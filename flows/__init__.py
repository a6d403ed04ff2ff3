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

from flows.errors import FlowError, PathError, UnknownFlow
from flows.flow import Flow, FlowLibrary
from flows.loader import DEFS, load_library
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
