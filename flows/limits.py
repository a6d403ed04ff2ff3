"""Checking values against the limits the claims fix.

A limit's rule may compare with another value by name. The name resolves, in this order,
from the values of the step being checked, the lot parameters, the lot geometry
(``site_rows``, ``site_cols``) and the values recorded at the lot's earlier steps. A limit
whose reference is unknown does not apply (no standoffs: no standoff/mold-cap check).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from flows.model import (
    Equals,
    GreaterThan,
    LessThan,
    Limit,
    LotContext,
    OneOf,
    Range,
    Rule,
    Value,
    Values,
    ValueSpec,
    Violation,
    format_value,
)

Resolver = Callable[[str], Value | None]

# Numbers typed on a CLI or read from a float32 register are compared with a little slack, so
# that "equal within 5" holds at exactly 5 after a round trip.
_EPSILON = 1e-9


def resolver(own: Values, ctx: LotContext) -> Resolver:
    """Resolve a referenced name: own values, lot parameters, geometry, then recorded values."""
    geometry: Mapping[str, Value] = {"site_rows": ctx.site_rows, "site_cols": ctx.site_cols}
    sources = (own, ctx.params, geometry, ctx.recorded)

    def resolve(name: str) -> Value | None:
        for source in sources:
            if name in source:
                return source[name]
        return None

    return resolve


def as_number(value: Value | None) -> float | None:
    """A value as a number, or None for a word (a bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _holds(rule: Rule, value: Value, reference: float | None) -> bool:
    if isinstance(rule, OneOf):
        number = as_number(value)
        if number is not None:
            return any(as_number(c) == number for c in rule.choices)
        return value in rule.choices
    number = as_number(value)
    if number is None:
        return False
    if isinstance(rule, Range):
        return rule.low - _EPSILON <= number <= rule.high + _EPSILON
    target = reference if reference is not None else as_number(rule.reference)
    assert target is not None
    slack = _EPSILON * max(1.0, abs(target))
    if isinstance(rule, Equals):
        return abs(number - target) <= rule.tolerance + slack
    if isinstance(rule, GreaterThan):
        return number > target
    assert isinstance(rule, LessThan)
    return number < target


def evaluate(limit: Limit, value: Value, resolve: Resolver, where: str) -> Violation | None:
    """The violation of ``limit`` by ``value``, or None when it holds or does not apply.

    ``where`` says when the check happens, as in ``MOLD track-in``; it starts the message.
    """
    resolved: float | None = None
    if limit.reference is not None:
        resolved = as_number(resolve(limit.reference))
        if resolved is None:
            return None
    if _holds(limit.rule, value, resolved):
        return None
    expected = limit.describe(resolved)
    if not isinstance(limit.rule, OneOf) and as_number(value) is None:
        expected = f"a number {expected}"
    message = (
        f"At {where}, {limit.value} is {format_value(value)}; claim {limit.claim} requires it "
        f"to be {expected}."
    )
    if limit.note:
        message += f" {limit.note}"
    return Violation(
        step=limit.step,
        value_name=limit.value,
        value=value,
        expected=expected,
        claim=limit.claim,
        message=message,
    )


def check_values(
    specs: Mapping[str, ValueSpec], values: Values, resolve: Resolver, where: str
) -> list[Violation]:
    """Check every given value against the limits of its spec; absent values are not checked."""
    found: list[Violation] = []
    for name, spec in specs.items():
        if name not in values:
            continue
        for limit in spec.limits:
            violation = evaluate(limit, values[name], resolve, where)
            if violation is not None:
                found.append(violation)
    return found


def check_recorded(
    checks: Iterable[Limit], recorded: Values, resolve: Resolver, where: str
) -> list[Violation]:
    """Check limits on values recorded at earlier steps; a value never recorded is not checked."""
    found: list[Violation] = []
    for limit in checks:
        if limit.value not in recorded:
            continue
        violation = evaluate(
            limit, recorded[limit.value], resolve, f"{where} (value recorded at an earlier step)"
        )
        if violation is not None:
            found.append(violation)
    return found
