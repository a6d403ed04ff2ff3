"""The equipment class catalogue (``classes.yaml``): per class, the recipe values a tool
accepts, the values it measures and its reject codes. Loaded and checked once, then shared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from drivers.model import SITE_GOOD, SITE_SKIPPED, EquipmentClass, MeasuredValue
from pkgline.datafiles import load_model

CATALOGUE_PATH = Path(__file__).with_name("classes.yaml")

ValueType = Literal["float", "int", "enum"]


class _ValueSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: ValueType
    unit: str | None = None
    values: tuple[str, ...] | None = None
    range: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _enum_has_values(self) -> _ValueSpec:
        if (self.type == "enum") != bool(self.values):
            raise ValueError("an enum value needs 'values' (and only an enum has them)")
        if self.range is not None:
            if self.type == "enum":
                raise ValueError("an enum value has no range")
            if self.range[0] > self.range[1]:
                raise ValueError(f"range {list(self.range)}: the lowest value comes first")
        return self


class _ClassSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str
    recipe: dict[str, _ValueSpec]
    measured: dict[str, _ValueSpec]
    reject_codes: dict[int, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _codes_start_at_two(self) -> _ClassSpec:
        for code, name in self.reject_codes.items():
            if not 2 <= code <= 255:
                raise ValueError(
                    f"reject code {code} ({name}): codes are 2..255 (0 good, 1 skipped)"
                )
        return self


class _Catalogue(RootModel[dict[EquipmentClass, _ClassSpec]]):
    @model_validator(mode="after")
    def _every_class(self) -> _Catalogue:
        missing = set(EquipmentClass) - set(self.root)
        if missing:
            raise ValueError(f"classes missing from the catalogue: {sorted(missing)}")
        return self


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """One recipe or measured value of a class."""

    name: str
    type: ValueType
    unit: str | None
    values: tuple[str, ...] | None
    range: tuple[float, float] | None = None
    """What the tool can physically report (lowest, highest); None: not bounded here."""

    def check(self, value: MeasuredValue) -> MeasuredValue:
        """Return ``value`` converted to this type, or raise ValueError saying what was expected."""
        if self.type == "enum":
            assert self.values is not None
            if not isinstance(value, str) or value not in self.values:
                raise ValueError(
                    f"{self.name}: expected one of {', '.join(self.values)}, got {value!r}"
                )
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{self.name}: expected a number, got {value!r}")
        if self.type == "int":
            if float(value) != int(value):
                raise ValueError(f"{self.name}: expected a whole number, got {value!r}")
            return int(value)
        return float(value)

    def check_physical(self, value: MeasuredValue) -> MeasuredValue:
        """:meth:`check`, and within the physical :attr:`range`: a value outside it is not a
        measurement but a fault (of the tool, or of the reading), whatever the flow's limits."""
        checked = self.check(value)
        if self.range is not None and isinstance(checked, int | float):
            low, high = self.range
            if not low <= checked <= high:
                unit = f" {self.unit}" if self.unit else ""
                raise ValueError(
                    f"{self.name}: expected {low:g}..{high:g}{unit} (physical range), "
                    f"got {checked!r}"
                )
        return checked


@dataclass(frozen=True, slots=True)
class ClassSpec:
    equipment_class: EquipmentClass
    description: str
    recipe: Mapping[str, ValueSpec]
    measured: Mapping[str, ValueSpec]
    reject_codes: Mapping[int, str]

    def reject_name(self, code: int) -> str:
        """The name of a site map code: GOOD, SKIPPED, a class reject code, or REJECT_<n>."""
        if code == SITE_GOOD:
            return "GOOD"
        if code == SITE_SKIPPED:
            return "SKIPPED"
        return self.reject_codes.get(code, f"REJECT_{code}")


def _convert(name: str, spec: _ValueSpec) -> ValueSpec:
    return ValueSpec(name, spec.type, spec.unit, spec.values, spec.range)


@cache
def load_catalogue(path: Path = CATALOGUE_PATH) -> Mapping[EquipmentClass, ClassSpec]:
    """Read and check the catalogue (cached: it is read once per process)."""
    raw = load_model(path, _Catalogue).root
    return {
        cls: ClassSpec(
            equipment_class=cls,
            description=spec.description,
            recipe={n: _convert(n, s) for n, s in spec.recipe.items()},
            measured={n: _convert(n, s) for n, s in spec.measured.items()},
            reject_codes=dict(spec.reject_codes),
        )
        for cls, spec in raw.items()
    }


def class_spec(equipment_class: EquipmentClass) -> ClassSpec:
    return load_catalogue()[equipment_class]
