"""Spec limits of measured values and set-point windows of recipe values: the pure checks.
Kept apart from the claimed limits (:mod:`flows.limits`) and from the physical ranges of what
a tool can report.

A measured value outside its spec limits puts the lot on hold at track-out with the value,
the limit and which kind (``spec_lower`` or ``spec_upper``), like a claimed limit does;
docs/flow-files.md says where each spec limit comes from (``origin``).

A recipe value outside its set-point window (``window:`` in the flow files, line practice)
refuses the track-in that gives it (:func:`check_window`, :mod:`mes.domain.steps`): the
tool is never sent a set point the line does not run.
"""

from __future__ import annotations

from collections.abc import Mapping

from flows.model import SpecLimits, Value, ValueSpec, Violation, format_value


def check_spec(
    step: str, specs: Mapping[str, ValueSpec], measured: Mapping[str, Value]
) -> list[Violation]:
    """The measured values of ``step`` outside their spec limits (values not measured, or
    with no spec limits, are not checked)."""
    found: list[Violation] = []
    for name, value in measured.items():
        spec = specs.get(name)
        limits = spec.spec if spec is not None else None
        if limits is None or isinstance(value, str):
            continue
        unit = f" {spec.unit}" if spec is not None and spec.unit else ""
        target = (
            f", target {format_value(limits.target)}{unit}" if limits.target is not None else ""
        )
        for kind, limit, outside, sign in (
            ("spec_lower", limits.lower, limits.lower is not None and value < limits.lower, ">="),
            ("spec_upper", limits.upper, limits.upper is not None and value > limits.upper, "<="),
        ):
            if not outside or limit is None:
                continue
            expected = f"{sign} {format_value(limit)}{unit}{target}"
            word = "lower" if kind == "spec_lower" else "upper"
            found.append(
                Violation(
                    step=step,
                    value_name=name,
                    value=value,
                    expected=expected,
                    claim=limits.origin,
                    message=(
                        f"{name} {format_value(value)}{unit} is outside its {word} spec limit "
                        f"{format_value(limit)}{unit} ({limits.origin})"
                    ),
                    kind=kind,
                )
            )
    return found


def window_text(window: SpecLimits, unit: str | None, *, target: bool = True) -> str:
    """A set-point window in words, with its unit: ``160 to 190 degC``, a one-sided one
    ``at most 15 um`` or ``at least 2 N``, the target when there is one and ``target`` asks
    for it (``, target 175 degC``)."""
    u = f" {unit}" if unit else ""
    low, high = window.lower, window.upper
    if low is not None and high is not None:
        text = f"{format_value(low)} to {format_value(high)}{u}"
    elif high is not None:
        text = f"at most {format_value(high)}{u}"
    else:
        assert low is not None
        text = f"at least {format_value(low)}{u}"
    if target and window.target is not None:
        text += f", target {format_value(window.target)}{u}"
    return text


def outside_window(window: SpecLimits, value: float, unit: str | None = None) -> str | None:
    """Which side of ``window`` the number ``value`` is past, in words (``above the upper
    limit 190 degC``), or None when it is inside, its limits included."""
    u = f" {unit}" if unit else ""
    if window.lower is not None and value < window.lower:
        return f"below the lower limit {format_value(window.lower)}{u}"
    if window.upper is not None and value > window.upper:
        return f"above the upper limit {format_value(window.upper)}{u}"
    return None


def check_window(
    step: str, specs: Mapping[str, ValueSpec], values: Mapping[str, Value]
) -> list[Violation]:
    """The recipe values of ``step`` outside their set-point windows (values with no window,
    words, and names no spec has are not checked). Each violation's ``expected`` is the
    window in words, ``claim`` its origin, ``kind`` ``window_lower`` or ``window_upper``."""
    found: list[Violation] = []
    for name, value in values.items():
        spec = specs.get(name)
        window = spec.window if spec is not None else None
        if spec is None or window is None or isinstance(value, str | bool):
            continue
        why = outside_window(window, value, spec.unit)
        if why is None:
            continue
        unit = f" {spec.unit}" if spec.unit else ""
        expected = window_text(window, spec.unit)
        found.append(
            Violation(
                step=step,
                value_name=name,
                value=value,
                expected=expected,
                claim=window.origin,
                message=(
                    f"{name} {format_value(value)}{unit} is outside its set-point window "
                    f"{expected} ({window.origin}): {why}"
                ),
                kind="window_lower" if why.startswith("below") else "window_upper",
            )
        )
    return found
