"""Names in a parsed sequence resolved into step codes and fragment groups, with what the
notation alone cannot check: unknown names, fragments that refer to themselves, and wiring
layers that are optional, alternatives or nested."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flows.errors import suggest
from flows.grammar import Alt, Expr, Group, Name, Opt, Repeat, Seq, SequenceError, Step, parse
from flows.model import StepCodeInfo
from flows.origin import Origin
from flows.schema import FragmentModel

STEPS_FILE = "steps.yaml"
FRAGMENTS_FILE = "fragments.yaml"


@dataclass(frozen=True)
class Fragment:
    name: str
    model: FragmentModel
    expr: Expr
    origin: Origin
    shared: bool


def parse_sequence(text: str, origin: Origin) -> Expr:
    try:
        return parse(text)
    except SequenceError as exc:
        raise origin.sequence_error(text, exc.column, exc.message) from exc


class Resolver:
    """Turns names into steps and fragment groups, checking what the notation cannot."""

    def __init__(self, codes: Mapping[str, StepCodeInfo], shared: Mapping[str, Fragment]):
        self.codes = codes
        self.shared = shared

    def resolve(
        self,
        expr: Expr,
        text: str,
        origin: Origin,
        local: Mapping[str, Fragment],
        stack: tuple[str, ...] = (),
        conditional: bool = False,
        in_layer: bool = False,
    ) -> Expr:
        def again(e: Expr, cond: bool = conditional) -> Expr:
            return self.resolve(e, text, origin, local, stack, cond, in_layer)

        if isinstance(expr, Name):
            if expr.name in self.codes:
                return Step(expr.name)
            fragment = local.get(expr.name) or self.shared.get(expr.name)
            if fragment is None:
                known = [*self.codes, *self.shared, *local]
                raise origin.sequence_error(
                    text,
                    expr.column,
                    f"unknown step code or fragment {expr.name!r}{suggest(expr.name, known)}; "
                    f"fragments: {', '.join(sorted([*self.shared, *local]))}; step codes are "
                    f"those of {STEPS_FILE}",
                )
            if expr.name in stack:
                cycle = " -> ".join([*stack, expr.name])
                raise origin.sequence_error(
                    text, expr.column, f"fragment {expr.name} refers to itself: {cycle}"
                )
            wiring = fragment.model.wiring_layer
            if wiring and conditional:
                raise origin.sequence_error(
                    text,
                    expr.column,
                    f"the wiring layer {expr.name} cannot be optional or one of alternatives: "
                    "the layer number of a step must not depend on the path taken",
                )
            if wiring and in_layer:
                raise origin.sequence_error(
                    text,
                    expr.column,
                    f"the wiring layer {expr.name} is inside another wiring layer",
                )
            # A shared fragment sees only shared fragments; a flow's own sees both.
            scope = local if not fragment.shared else {}
            body = self.resolve(
                fragment.expr,
                fragment.model.sequence,
                fragment.origin.child("sequence"),
                scope,
                (*stack, expr.name),
                conditional,
                in_layer or wiring,
            )
            return Group(expr.name, body, wiring)
        if isinstance(expr, Seq):
            return Seq(tuple(again(item) for item in expr.items))
        if isinstance(expr, Alt):
            return Alt(tuple(again(option, True) for option in expr.options))
        if isinstance(expr, Opt):
            return Opt(again(expr.body, True))
        if isinstance(expr, Repeat):
            return Repeat(again(expr.body), expr.count)
        return expr


def fragment_groups(expr: Expr) -> list[str]:
    """Names of the fragment groups in ``expr``, outermost first, each once."""
    found: list[str] = []

    def walk(e: Expr) -> None:
        if isinstance(e, Group):
            if e.name not in found:
                found.append(e.name)
            walk(e.body)
        elif isinstance(e, Seq):
            for item in e.items:
                walk(item)
        elif isinstance(e, Alt):
            for option in e.options:
                walk(option)
        elif isinstance(e, Opt | Repeat):
            walk(e.body)

    walk(expr)
    return found


def has_wiring_layer(expr: Expr) -> bool:
    if isinstance(expr, Group):
        return expr.wiring_layer or has_wiring_layer(expr.body)
    if isinstance(expr, Seq):
        return any(has_wiring_layer(item) for item in expr.items)
    if isinstance(expr, Alt):
        return any(has_wiring_layer(option) for option in expr.options)
    if isinstance(expr, Opt | Repeat):
        return has_wiring_layer(expr.body)
    return False
