"""Spec limits of measured values: the pure check. Kept apart from the claimed limits
(:mod:`flows.limits`) and from the physical ranges of what a tool can report.

A measured value outside its spec limits puts the lot on hold at track-out with the value,
the limit and which kind (``spec_lower`` or ``spec_upper``), like a claimed limit does;
docs/flow-files.md says where each spec limit comes from (``origin``).
"""

from __future__ import annotations

from collections.abc import Mapping

from flows.model import Value, ValueSpec, Violation, format_value


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
