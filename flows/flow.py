"""A flow, as the lot tracker sees it: what a lot may do next and whether its values are
within the limits the claims fix; and the library of all flows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from flows.automaton import compile_expression
from flows.errors import PathError, UnknownFlow
from flows.grammar import Expr, counts
from flows.limits import check_recorded, check_values, resolver
from flows.model import (
    LotContext,
    Position,
    QueueTime,
    StepCodeInfo,
    StepSpec,
    Value,
    Values,
    ValueSpec,
    Violation,
)
from flows.speclimits import check_spec, check_window


def _unknown(what: str, name: str, expected: Sequence[str]) -> ValueError:
    listing = ", ".join(sorted(expected)) if expected else "none"
    return ValueError(f"unknown {what} {name!r}; expected one of: {listing}")


def _parse_given(
    specs: Mapping[str, ValueSpec], given: Mapping[str, str], what: str
) -> dict[str, Value]:
    values: dict[str, Value] = {}
    for name, text in given.items():
        spec = specs.get(name)
        if spec is None:
            raise _unknown(what, name, list(specs))
        values[name] = spec.parse(text)
    return values


def _known(specs: Mapping[str, ValueSpec], values: Values, what: str) -> None:
    for name in values:
        if name not in specs:
            raise _unknown(what, name, list(specs))


@dataclass(frozen=True, eq=False)
class Flow:
    """One process flow of flows.md, loaded from its defs file."""

    name: str
    title: str
    version: int
    document: str
    """The patent document the flow comes from, e.g. ``002``."""
    claims: str
    """The method claims the flow implements, e.g. ``61-101``."""
    sequence: str
    """The step order in the notation of flows.md, as written in the flow file."""
    description: str
    lot_params: Mapping[str, ValueSpec]
    steps: Mapping[str, StepSpec]
    expression: Expr
    """The sequence with fragments and step codes resolved (the automaton's input)."""
    has_layers: bool
    """The flow has wiring layers (``Position.layer`` and ``layers`` are given)."""
    queue_times: tuple[QueueTime, ...] = ()
    """Maximum waits between two steps (:mod:`flows.queuetimes`)."""

    def recipe_name(self, step: str) -> str:
        """The name of the recipe the controller downloads for ``step``."""
        return f"{self.name}/{step}"

    def checked_later(self) -> frozenset[str]:
        """The names of values recorded at a step that a limit of a step reads later: a
        step's checks on earlier values, and the values its limits compare with by name
        (``mold_cap_um`` less than ``standoff_height_um``). Two lots that differ in one of
        them are not one lot (a merge is refused)."""
        names = {c.value for s in self.steps.values() for c in s.checks}
        for s in self.steps.values():
            for spec in (*s.recipe.values(), *s.measured.values()):
                names.update(r for limit in spec.limits if (r := limit.reference) is not None)
        recorded = {n for s in self.steps.values() for n in (*s.recipe, *s.measured)}
        return frozenset(names & recorded)

    def step(self, code: str) -> StepSpec:
        """The spec of a step of this flow; ValueError for a step the flow does not have."""
        spec = self.steps.get(code)
        if spec is None:
            raise _unknown(f"step of flow {self.name}:", code, list(self.steps))
        return spec

    # --- CLI text -> values ----------------------------------------------------------------

    def lot_param_defaults(self) -> dict[str, Value]:
        return {n: s.default for n, s in self.lot_params.items() if s.default is not None}

    def lot_params_from(self, given: Mapping[str, str]) -> dict[str, Value]:
        """Lot parameters from ``--param NAME=VALUE`` texts, over the flow's defaults."""
        values = self.lot_param_defaults()
        values.update(_parse_given(self.lot_params, given, f"lot parameter of flow {self.name}:"))
        return values

    def step_values_from(
        self, step: str, given: Mapping[str, str], kind: Literal["recipe", "measured"]
    ) -> dict[str, Value]:
        """Track-in recipe values (over the step's defaults) or track-out measured values
        (only those given) from CLI texts."""
        spec = self.step(step)
        if kind == "recipe":
            values = spec.recipe_defaults()
            values.update(_parse_given(spec.recipe, given, f"recipe value of {step}:"))
            return values
        return _parse_given(spec.measured, given, f"measured value of {step}:")

    # --- order ---------------------------------------------------------------------------

    def _counts(self, params: Values) -> tuple[tuple[str, int], ...]:
        """The repeat counts the lot parameters give, as a hashable key."""
        result: dict[str, int] = {}
        for name in _count_params(self):
            value = params.get(name, self.lot_params[name].default)
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # e.g. a count stored as JSON by another program
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(
                    f"{self.name}: lot parameter {name} must be a whole number, not {value!r}"
                )
            result[name] = value
        return tuple(sorted(result.items()))

    def position(self, path: Sequence[str], params: Values) -> Position:
        """Where a lot stands after completing the steps of ``path`` (its effective route).

        Raises PathError at the first step the flow does not accept there. Positions are
        remembered per (repeat counts, path): every lot move asks for one.
        """
        return _position(self, self._counts(params), tuple(path))

    # --- limits --------------------------------------------------------------------------

    def check_lot_start(self, params: Values, ctx: LotContext) -> list[Violation]:
        """Lot parameters against their limits (defaults fill what ``params`` lacks)."""
        _known(self.lot_params, params, f"lot parameter of flow {self.name}:")
        values = {**self.lot_param_defaults(), **params}
        return check_values(self.lot_params, values, resolver(values, ctx), "lot start")

    def check_track_in(self, step: str, values: Values, ctx: LotContext) -> list[Violation]:
        """Recipe values of a track-in (defaults fill what ``values`` lacks) against their
        limits, then the step's checks on values recorded at earlier steps."""
        recipe, earlier = self.track_in_violations(step, values, ctx)
        return recipe + earlier

    def track_in_violations(
        self, step: str, values: Values, ctx: LotContext
    ) -> tuple[list[Violation], list[Violation]]:
        """:meth:`check_track_in`'s violations apart: those of the recipe values, and those
        of the step's checks on values recorded at earlier steps (a recipe value and an
        earlier one may have the same name)."""
        spec = self.step(step)
        _known(spec.recipe, values, f"recipe value of {step}:")
        merged = {**spec.recipe_defaults(), **values}
        resolve = resolver(merged, ctx)
        where = f"{step} track-in"
        return (
            check_values(spec.recipe, merged, resolve, where),
            check_recorded(spec.checks, ctx.recorded, resolve, where),
        )

    def check_track_out(self, step: str, measured: Values, ctx: LotContext) -> list[Violation]:
        """Measured values of a track-out against their limits; values not measured are not
        checked."""
        spec = self.step(step)
        _known(spec.measured, measured, f"measured value of {step}:")
        return check_values(spec.measured, measured, resolver(measured, ctx), f"{step} track-out")

    def check_spec(self, step: str, measured: Values) -> list[Violation]:
        """Measured values of a track-out against their spec limits (:mod:`flows.speclimits`)."""
        return check_spec(step, self.step(step).measured, measured)

    def check_window(self, step: str, values: Values) -> list[Violation]:
        """Recipe values of a track-in against their set-point windows
        (:mod:`flows.speclimits`)."""
        return check_window(step, self.step(step).recipe, values)


@dataclass(frozen=True, eq=False)
class FlowLibrary:
    """Every flow of the defs directory, and the step codes they share."""

    flows: Mapping[str, Flow]
    step_codes: Mapping[str, StepCodeInfo]

    def get(self, name: str) -> Flow:
        """The flow called ``name``; UnknownFlow (a LookupError) lists the known names."""
        flow = self.flows.get(name)
        if flow is None:
            raise UnknownFlow(name, self.flows)
        return flow


def count_params(flow: Flow) -> tuple[str, ...]:
    """The lot parameters the flow's repeat counts use (``layers``)."""
    return _count_params(flow)


@lru_cache(maxsize=64)
def _count_params(flow: Flow) -> tuple[str, ...]:
    """The lot parameters the flow's repeat counts use, once per flow."""
    return tuple(dict.fromkeys(c.param for c in counts(flow.expression) if c.param is not None))


@lru_cache(maxsize=16384)
def _position(
    flow: Flow, count_key: tuple[tuple[str, int], ...], path: tuple[str, ...]
) -> Position:
    automaton = compile_expression(flow.expression, dict(count_key))
    state: frozenset[int] | None = None
    for index, code in enumerate(path):
        after = path[index - 1] if index else None
        taken = automaton.step(state, code)
        if not taken:
            allowed = automaton.allowed(state)
            reason = None
            if code not in flow.steps:
                listing = ", ".join(sorted(allowed)) or "nothing (the flow is complete)"
                reason = f"not a step of flow {flow.name}; allowed there: {listing}"
            raise PathError(flow.name, index, code, after, allowed, reason)
        state = taken
    layer_numbers = [automaton.layers[p] for p in state or ()]
    layers_here = [n for n in layer_numbers if n is not None]
    order: dict[str, int] = {}
    for p in sorted(automaton.candidates(state)):
        order.setdefault(automaton.symbols[p], p)
    return Position(
        next_steps=frozenset(order),
        in_flow_order=tuple(order),
        complete=automaton.accepts_end(state),
        layer=min(layers_here) if layers_here and flow.has_layers else None,
        layers=automaton.layer_count if flow.has_layers else None,
    )
