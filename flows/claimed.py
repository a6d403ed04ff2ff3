"""A published version of a flow keeps the limits the claims fix.

The packaged flow files are the project's account of the claims (docs/flow-files.md, "Where
each limit comes from"). Engineering may publish new versions of a flow, with other recipe
defaults, spec limits, queue times and tighter claimed limits; but a version that drops a
claimed limit, or loosens it, would build a package the claims do not describe while its
history still cites them. :func:`loosened` lists each such limit, in words, for the
version to be refused.

The step order is claimed too: :func:`reordered` finds a path of the new version whose
claimed steps the claimed sequence does not allow in that order, or that ends without a step
the claims require. Steps of the line's own (an inspection) may come anywhere: method claims
"comprising" the steps leave room for others.

"Tighter" is decided rule by rule: a claimed limit is kept when one limit of the new version
on the same value, at the same place, admits no value the old one refuses (a range inside
the old range, a subset of the choices, a larger lower bound, ...). A limit kept in other
words that this comparison cannot prove (two new limits that together make the old one) is
reported too: the engineer writes the claimed limit as it was and tightens beside it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from flows.automaton import Automaton, compile_expression
from flows.flow import Flow, count_params
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


def _limits(flow: Flow) -> Iterator[tuple[str | None, str, str, Limit]]:
    """Each claimed limit of a flow as (step code or None for a lot parameter, where, value
    name, limit)."""
    for name, spec in flow.lot_params.items():
        for limit in spec.limits:
            yield None, "lot parameters", name, limit
    for code, step in flow.steps.items():
        for kind, specs in (("recipe", step.recipe), ("measured", step.measured)):
            for name, spec in specs.items():
                for limit in spec.limits:
                    yield code, f"{code} {kind}", name, limit
        for limit in step.checks:
            yield code, f"{code} check", limit.value, limit


def loosened(claimed: Flow, candidate: Flow) -> list[str]:
    """Each limit of ``claimed`` (the packaged flow) that ``candidate`` drops or loosens, as
    a sentence; empty when the candidate keeps them all.

    A limit on a step the candidate does not run at all (an optional step left out) admits
    nothing there to refuse, and is not dropped: whether the candidate may leave the step
    out is the step order's question (:func:`reordered`: a required claimed step left out is
    refused there)."""
    new: dict[tuple[str, str], list[Limit]] = {}
    for _, where, name, limit in _limits(candidate):
        new.setdefault((where, name), []).append(limit)
    out: list[str] = []
    for code, where, name, limit in _limits(claimed):
        if code is not None and code not in candidate.steps:
            continue
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


MAX_COUNT_CASES = 64
"""At most this many repeat counts (``layers`` = 1, 2, ...) are compared; a count outside
its claimed range is :func:`loosened`'s to refuse."""


def _count_cases(claimed: Flow, candidate: Flow) -> list[dict[str, int]]:
    """The repeat counts to compare the two orders at: each whole number the candidate's
    limits on the count's lot parameter admit (its default when they bound nothing)."""
    cases: list[dict[str, int]] = [{}]
    for name in dict.fromkeys((*count_params(claimed), *count_params(candidate))):
        spec = candidate.lot_params.get(name) or claimed.lot_params[name]
        values: list[int] = []
        for limit in spec.limits:
            found = _interval(limit.rule)
            if found is not None and found[1] - found[0] < MAX_COUNT_CASES:
                low, high = int(max(found[0], 0)), int(found[1])
                values = [n for n in range(low, high + 1) if _admits_count(limit.rule, n)]
        if not values and isinstance(spec.default, int):
            values = [spec.default]
        cases = [{**c, name: n} for c in cases for n in values][:MAX_COUNT_CASES]
    return cases


def _admits_count(rule: Rule, n: int) -> bool:
    """Whether ``rule`` admits the whole number ``n`` (for counts)."""
    found = _interval(rule)
    if found is None:
        return True
    low, high, low_in, high_in = found
    return (low < n or (low_in and low == n)) and (n < high or (high_in and n == high))


def _escape(claimed: Automaton, candidate: Automaton, steps: frozenset[str]) -> list[str] | None:
    """A path the candidate allows whose claimed ``steps``, in order, the claimed automaton
    does not (ending with the first step out of order, or complete where the claimed path is
    not); None when there is none. Breadth first: the shortest such path."""
    start: tuple[frozenset[int] | None, frozenset[int] | None] = (None, None)
    seen = {start}
    queue: deque[tuple[frozenset[int] | None, frozenset[int] | None, tuple[str, ...]]] = deque(
        [(None, None, ())]
    )
    while queue:
        mine, theirs, path = queue.popleft()
        if candidate.accepts_end(mine) and not claimed.accepts_end(theirs):
            return [*path, "(end)"]
        for code in sorted(candidate.allowed(mine)):
            after = candidate.step(mine, code)
            claimed_after = theirs
            if code in steps:
                claimed_after = claimed.step(theirs, code)
                if not claimed_after:
                    return [*path, code]
            if (after, claimed_after) not in seen:
                seen.add((after, claimed_after))
                queue.append((after, claimed_after, (*path, code)))
    return None


def reordered(claimed: Flow, candidate: Flow) -> list[str]:
    """The candidate's departures from the claimed step order, as sentences (one per repeat
    count that shows one, at most three): a claimed step out of order, or a path complete
    without a step the claims require. Empty when every path of the candidate keeps the
    claimed steps in the claimed order."""
    steps = frozenset(claimed.steps)
    out: list[str] = []
    for counts in _count_cases(claimed, candidate):
        path = _escape(
            compile_expression(claimed.expression, counts),
            compile_expression(candidate.expression, counts),
            steps,
        )
        if path is None:
            continue
        where = "".join(f" with {k} = {v}" for k, v in sorted(counts.items()))
        *before, last = path
        done = " ".join(before) or "nothing"
        what = (
            f"this version may complete after {done}"
            if last == "(end)"
            else f"this version allows {last} after {done}"
        )
        out.append(
            f"step order{where}: document {claimed.document}, claims {claimed.claims}, "
            f"fixes '{claimed.sequence}'; {what}, which that order does not"
        )
        if len(out) == 3:
            break
    return out
