"""A published version of a flow keeps the limits the claims fix.

The packaged flow files are the project's account of the claims (docs/flow-files.md, "Where
each limit comes from"). Engineering may publish new versions of a flow, with other recipe
defaults, spec limits, queue times and tighter claimed limits; but a version that drops a
claimed limit, or loosens it, would build a package the claims do not describe while its
history still cites them. :func:`loosened` lists each such limit, in words, for the
version to be refused.

"Tighter" is decided rule by rule: a claimed limit is kept when one limit of the new version
on the same value, at the same place, admits no value the old one refuses (a range inside
the old range, a subset of the choices, a larger lower bound, ...). A limit kept in other
words that this comparison cannot prove (two new limits that together make the old one) is
reported too: the engineer writes the claimed limit as it was and tightens beside it.
"""

from __future__ import annotations

from collections.abc import Iterator

from flows.flow import Flow
from flows.limits import as_number
from flows.model import Equals, GreaterThan, LessThan, Limit, OneOf, Range, Rule, Value


def _interval(rule: Rule) -> tuple[float, float, bool, bool] | None:
    """The numbers a rule admits as (low, high, low included, high included), when it is an
    interval of fixed numbers; None for a rule on a named value or on words."""
    inf = float("inf")
    if isinstance(rule, Range):
        return rule.low, rule.high, True, True
    if isinstance(rule, Equals) and not isinstance(rule.reference, str):
        ref = float(rule.reference)
        return ref - rule.tolerance, ref + rule.tolerance, True, True
    if isinstance(rule, GreaterThan) and not isinstance(rule.reference, str):
        return float(rule.reference), inf, False, True
    if isinstance(rule, LessThan) and not isinstance(rule.reference, str):
        return -inf, float(rule.reference), True, False
    if isinstance(rule, OneOf):
        numbers = [as_number(c) for c in rule.choices]
        if numbers and all(n is not None for n in numbers):
            found = [n for n in numbers if n is not None]
            return min(found), max(found), True, True
    return None


def _inside(new: tuple[float, float, bool, bool], old: tuple[float, float, bool, bool]) -> bool:
    n_low, n_high, n_low_in, n_high_in = new
    o_low, o_high, o_low_in, o_high_in = old
    low_ok = n_low > o_low or (n_low == o_low and (o_low_in or not n_low_in))
    high_ok = n_high < o_high or (n_high == o_high and (o_high_in or not n_high_in))
    return low_ok and high_ok


def implies(new: Rule, old: Rule) -> bool:
    """Whether every value ``new`` admits, ``old`` admits too (``new`` is as tight or
    tighter)."""
    if new == old:
        return True
    if isinstance(old, OneOf):
        if isinstance(new, OneOf):
            return all(any(_same(c, o) for o in old.choices) for c in new.choices)
        # a rule on numbers that admits a single one (a range of zero width, say)
        point = _interval(new)
        if point is None or point[0] != point[1] or not (point[2] and point[3]):
            return False
        return any(as_number(c) == point[0] for c in old.choices)
    # a rule on a named value: the same comparison with the same name, as tight or tighter
    if isinstance(old, Equals) and isinstance(old.reference, str):
        return (
            isinstance(new, Equals)
            and new.reference == old.reference
            and new.tolerance <= old.tolerance
        )
    if isinstance(old, GreaterThan | LessThan) and isinstance(old.reference, str):
        return type(new) is type(old) and new.reference == old.reference
    old_interval, new_interval = _interval(old), _interval(new)
    if old_interval is None or new_interval is None:
        return False
    return _inside(new_interval, old_interval)


def _same(a: Value, b: Value) -> bool:
    na, nb = as_number(a), as_number(b)
    if na is not None and nb is not None:
        return na == nb
    return a == b


def _limits(flow: Flow) -> Iterator[tuple[str, str, Limit]]:
    """Each claimed limit of a flow as (where, value name, limit)."""
    for name, spec in flow.lot_params.items():
        for limit in spec.limits:
            yield "lot parameters", name, limit
    for code, step in flow.steps.items():
        for kind, specs in (("recipe", step.recipe), ("measured", step.measured)):
            for name, spec in specs.items():
                for limit in spec.limits:
                    yield f"{code} {kind}", name, limit
        for limit in step.checks:
            yield f"{code} check", limit.value, limit


def loosened(claimed: Flow, candidate: Flow) -> list[str]:
    """Each limit of ``claimed`` (the packaged flow) that ``candidate`` drops or loosens, as
    a sentence; empty when the candidate keeps them all."""
    new: dict[tuple[str, str], list[Limit]] = {}
    for where, name, limit in _limits(candidate):
        new.setdefault((where, name), []).append(limit)
    out: list[str] = []
    for where, name, limit in _limits(claimed):
        found = new.get((where, name), [])
        if any(implies(other.rule, limit.rule) for other in found):
            continue
        fixed = f"{where}: {name}: claim {limit.claim} fixes {limit.describe()}"
        if not found:
            out.append(f"{fixed}; this version has no such limit")
        else:
            allowed = "; ".join(other.describe() for other in found)
            out.append(f"{fixed}; this version allows {allowed}")
    return out
