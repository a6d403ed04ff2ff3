"""The values of the flows package: value specs, limits, violations, step specs, positions.

All are frozen dataclasses; mappings inside them are read-only views. Nothing here reads a
file: the loader builds these from the defs, the lot tracker reads them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, TypeAlias, TypeVar

Value: TypeAlias = float | int | str
"""A recipe, measured or lot parameter value: a number or a word such as ``copper``."""

Values: TypeAlias = Mapping[str, Value]

ValueType = Literal["float", "int", "str"]

Reference: TypeAlias = float | str
"""What a comparison rule compares with: a number, or the name of another value."""

GEOMETRY = ("site_rows", "site_cols")
"""Names a limit may reference that come from the lot's carriers, not from a value spec."""


def format_value(value: Value) -> str:
    """A value as an operator reads it: ``0.3``, ``12``, ``copper``."""
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


_V = TypeVar("_V")


def frozen_mapping(mapping: Mapping[str, _V]) -> Mapping[str, _V]:
    """A read-only copy of ``mapping``."""
    return MappingProxyType(dict(mapping))


# --- limit rules -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Range:
    """Inclusive: ``low <= value <= high``."""

    low: float
    high: float

    def describe(self, resolved: float | None = None) -> str:
        return f"{format_value(self.low)} to {format_value(self.high)}"


@dataclass(frozen=True, slots=True)
class OneOf:
    choices: tuple[Value, ...]

    def describe(self, resolved: float | None = None) -> str:
        return "one of " + ", ".join(format_value(c) for c in self.choices)


def _reference_text(reference: Reference, resolved: float | None) -> str:
    if isinstance(reference, str):
        if resolved is None:
            return reference
        return f"{reference} ({format_value(resolved)})"
    return format_value(reference)


@dataclass(frozen=True, slots=True)
class Equals:
    """``|value - reference| <= tolerance``."""

    reference: Reference
    tolerance: float = 0.0

    def describe(self, resolved: float | None = None) -> str:
        text = f"equal to {_reference_text(self.reference, resolved)}"
        if self.tolerance:
            text += f" within {format_value(self.tolerance)}"
        return text


@dataclass(frozen=True, slots=True)
class GreaterThan:
    reference: Reference

    def describe(self, resolved: float | None = None) -> str:
        return f"greater than {_reference_text(self.reference, resolved)}"


@dataclass(frozen=True, slots=True)
class LessThan:
    reference: Reference

    def describe(self, resolved: float | None = None) -> str:
        return f"less than {_reference_text(self.reference, resolved)}"


Rule: TypeAlias = Range | OneOf | Equals | GreaterThan | LessThan

RULE_KINDS = ("range", "one_of", "equals", "greater_than", "less_than")


@dataclass(frozen=True, slots=True)
class Limit:
    """A limit a claim fixes on one value.

    ``value`` is the name of the value limited; ``step`` the step where it is checked (None
    for a lot parameter). A rule that references another value by name does not apply while
    that value is unknown.
    """

    value: str
    step: str | None
    rule: Rule
    claim: str
    note: str | None = None

    @property
    def reference(self) -> str | None:
        """The name of the other value the rule compares with, if any."""
        if isinstance(self.rule, Equals | GreaterThan | LessThan) and isinstance(
            self.rule.reference, str
        ):
            return self.rule.reference
        return None

    def describe(self, resolved: float | None = None) -> str:
        """The limit in words: ``0.1 to 0.5``, ``one of copper``, ``greater than
        die_area_mm2 (100)`` (with the reference's value when it is given)."""
        return self.rule.describe(resolved)


@dataclass(frozen=True, slots=True)
class Violation:
    """A value outside a claimed limit (or a spec limit: ``kind``). ``message`` is a sentence
    for the operator."""

    step: str | None
    value_name: str
    value: Value
    expected: str
    claim: str
    message: str
    kind: str = "claimed"
    """``claimed`` (a limit the claims fix), ``spec_lower`` / ``spec_upper`` (a spec limit
    of a measured value) or ``window_lower`` / ``window_upper`` (the set-point window of a
    recipe value): :mod:`flows.speclimits`."""


@dataclass(frozen=True, slots=True)
class QueueTime:
    """At most ``max_minutes`` from the track-out of ``from_step`` to the track-in of
    ``to_step``, warned of after ``warn_minutes``; ``origin``: a claim or line practice."""

    from_step: str
    to_step: str
    max_minutes: float
    warn_minutes: float | None
    origin: str


@dataclass(frozen=True, slots=True)
class SpecLimits:
    """Spec limits of a measured value, or the set-point window of a recipe value, beside its
    claimed limits: lower, upper (either may be None), target, and where they come from
    (``origin``: a claim, or line practice)."""

    lower: float | None
    upper: float | None
    target: float | None
    origin: str


_WHOLE = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
"""Numbers as typed: ASCII digits, an optional sign, a decimal point and an exponent."""


# --- value and step specs ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """One recipe value, measured value or lot parameter of a flow.

    ``default`` None: the value is optional and has no default. ``tool_value``: the name the
    tool uses for this value when it differs (THIN records the grinder's ``final_thickness_um``
    as ``insulating_thickness_um``).
    """

    name: str
    type: ValueType
    default: Value | None
    unit: str | None
    description: str
    limits: tuple[Limit, ...] = ()
    tool_value: str | None = None
    spec: SpecLimits | None = None
    """Spec limits (measured values only)."""
    window: SpecLimits | None = None
    """The set-point window (recipe values only): a track-in outside it is refused
    (:func:`flows.speclimits.outside_window`)."""

    @property
    def optional(self) -> bool:
        return self.default is None

    @property
    def tool_name(self) -> str:
        """The name the equipment uses for this value."""
        return self.tool_value or self.name

    def expected(self) -> str:
        """What :meth:`parse` accepts, in words."""
        unit = f" in {self.unit}" if self.unit else ""
        if self.type == "float":
            return f"a number{unit}"
        if self.type == "int":
            return f"a whole number{unit}"
        words = [
            c for limit in self.limits if isinstance(limit.rule, OneOf) for c in limit.rule.choices
        ]
        if words:
            return "one of " + ", ".join(format_value(w) for w in words)
        return "a word"

    def parse(self, text: str) -> Value:
        """Turn CLI text into a value of this type; ValueError says what was expected."""
        stripped = text.strip()
        if self.type == "str":
            if not stripped:
                raise ValueError(f"{self.name}: expected {self.expected()}, got an empty text")
            if not stripped.isprintable():
                raise ValueError(
                    f"{self.name}: expected {self.expected()}, got {text!r}, which holds a "
                    "control or format character"
                )
            return stripped
        # int() and float() also take '1_000', Arabic-Indic or full-width digits and 'nan':
        # a value typed at a line is read only in the form a person writes it at a keyboard
        if self.type == "int":
            if _WHOLE.fullmatch(stripped) is None:
                raise ValueError(f"{self.name}: expected {self.expected()}, got {text!r}")
            try:
                return int(stripped)
            except ValueError:  # Python's limit on the digits of a conversion (4,300)
                raise ValueError(
                    f"{self.name}: expected {self.expected()} of at most 19 digits, got "
                    f"{len(stripped)} digits"
                ) from None
        if _DECIMAL.fullmatch(stripped) is None:
            raise ValueError(f"{self.name}: expected {self.expected()}, got {text!r}")
        number = float(stripped)
        if not math.isfinite(number):
            raise ValueError(f"{self.name}: expected {self.expected()}, got {text!r}")
        return number


@dataclass(frozen=True, slots=True)
class ReworkSpec:
    """A step a HELD lot may be sent back to, at most ``max_reworks`` times per occurrence,
    when every step completed since that occurrence is in ``through``."""

    max_reworks: int
    through: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class StepCodeInfo:
    code: str
    description: str
    equipment_class: str
    """The equipment class of the tools that run the step; ``manual`` for operator steps."""


@dataclass(frozen=True, slots=True)
class StepSpec:
    """What a flow says about one of its steps."""

    code: str
    equipment_class: str
    recipe: Mapping[str, ValueSpec]
    measured: Mapping[str, ValueSpec]
    checks: tuple[Limit, ...] = ()
    """Limits on values recorded at earlier steps, checked at this step's track-in."""
    rework: ReworkSpec | None = None
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipe", frozen_mapping(self.recipe))
        object.__setattr__(self, "measured", frozen_mapping(self.measured))

    def recipe_defaults(self) -> dict[str, Value]:
        """The recipe values a track-in with no values given uses."""
        return {n: s.default for n, s in self.recipe.items() if s.default is not None}

    def to_tool(self, recipe: Values) -> dict[str, Value]:
        """Recipe values under the names the tool uses (``tool_value`` aliases applied).

        The controller still sends only the names the tool's equipment class accepts:
        material and claim values such as ``stiffener_material`` are for the lot record.
        """
        return {(self.recipe[n].tool_name if n in self.recipe else n): v for n, v in recipe.items()}

    def from_tool(self, reported: Values) -> dict[str, Value]:
        """The step's measured values out of what a tool reported, under the flow's names.

        Values the step does not declare are left out.
        """
        return {
            name: reported[spec.tool_name]
            for name, spec in self.measured.items()
            if spec.tool_name in reported
        }


@dataclass(frozen=True, slots=True)
class LotContext:
    """What the limits of a lot may refer to besides the step's own values.

    ``recorded`` holds, by name, the latest value recorded at the lot's earlier steps: recipe
    values used at track-in and measured values at track-out (under the flow's names).
    """

    params: Values
    site_rows: int
    site_cols: int
    recorded: Values = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a lot stands in its flow after the steps of its path.

    ``layer``: the 1-based wiring layer of the last step of the path, None outside wiring
    layers or for a flow without them. ``layers``: the lot's number of wiring layers, None
    for a flow without them.
    """

    next_steps: frozenset[str]
    complete: bool
    layer: int | None
    layers: int | None
    in_flow_order: tuple[str, ...] = ()
    """``next_steps`` in the order the flow writes them from here: an optional step before
    the step that may skip it, the first alternative before the others. A dispatcher that
    always takes the first one follows one deterministic route."""
