"""The shape of the defs files (pydantic): ``steps.yaml``, ``fragments.yaml`` and one file per
flow. Only the shape and local consistency are checked here; what needs the whole library
(step codes, fragments, referenced names) is checked by the loader. docs/flow-files.md
describes the format for process engineers.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from flows.model import RULE_KINDS, ValueType

StepCodeName = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]*$")]
FragmentName = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]*$")]
ValueName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
ClassName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
FlowName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$")]
Number = StrictInt | StrictFloat
Scalar = StrictInt | StrictFloat | StrictStr
Reference = StrictInt | StrictFloat | ValueName

_CONFIG = ConfigDict(extra="forbid", frozen=True)


def _text_only(value: Any, what: str, example: str) -> Any:
    if isinstance(value, list | dict):
        raise ValueError(
            f"{what} must be text in quotes: YAML read the unquoted brackets as a "
            f"{'list' if isinstance(value, list) else 'mapping'}; write it as {example}"
        )
    return value


class LimitModel(BaseModel):
    """The rule fields of a value spec, also used alone under ``checks:``."""

    model_config = _CONFIG
    range: tuple[Number, Number] | None = None
    one_of: Annotated[list[Scalar], Field(min_length=1)] | None = None
    equals: Reference | None = None
    tolerance: Annotated[Number, Field(ge=0)] | None = None
    greater_than: Reference | None = None
    less_than: Reference | None = None
    claim: StrictStr | None = None
    note: StrictStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _split_text(cls, data: Any) -> Any:
        # {description: one, two} is YAML for {description: one, "two": null}: say so.
        if isinstance(data, dict):
            for key, value in data.items():
                if value is None and isinstance(key, str) and " " in key.strip():
                    raise ValueError(
                        f"{key.strip()!r} is not a field: a comma inside {{ ... }} ends a text; "
                        "put text with commas in quotes"
                    )
        return data

    @model_validator(mode="after")
    def _consistent(self) -> LimitModel:
        if self.range is not None and self.range[0] > self.range[1]:
            raise ValueError(
                f"range [{self.range[0]}, {self.range[1]}]: the low end is above the high end"
            )
        return self

    def rule_fields(self) -> list[str]:
        return [kind for kind in RULE_KINDS if getattr(self, kind) is not None]


class SpecModel(BaseModel):
    """Spec limits of a measured value (line practice or a claim): out of spec holds the lot."""

    model_config = _CONFIG
    lower: Number | None = None
    upper: Number | None = None
    target: Number | None = None
    origin: Annotated[StrictStr, StringConstraints(min_length=1)]

    @model_validator(mode="after")
    def _ordered(self) -> SpecModel:
        _check_limits(self, "spec", "spec limits need")
        return self


class WindowModel(BaseModel):
    """The set-point window of a recipe value (line practice, or a claim): a track-in with a
    value outside it is refused. The shape of :class:`SpecModel`, finite numbers only."""

    model_config = _CONFIG
    lower: Number | None = None
    upper: Number | None = None
    target: Number | None = None
    origin: Annotated[StrictStr, StringConstraints(min_length=1)]

    @model_validator(mode="after")
    def _ordered(self) -> WindowModel:
        for key in ("lower", "upper", "target"):
            value = getattr(self, key)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"window {key} {value} is not a finite number")
        _check_limits(self, "window", "a window needs")
        return self


def _check_limits(limits: SpecModel | WindowModel, word: str, needs: str) -> None:
    """Refuse limits with neither end, upside down, or with their target outside."""
    lower, upper, target = limits.lower, limits.upper, limits.target
    if lower is None and upper is None:
        raise ValueError(f"{needs} a lower or an upper limit (or both)")
    if lower is not None and upper is not None and lower > upper:
        raise ValueError(f"{word} lower {lower} is above upper {upper}")
    if target is not None and not (
        (lower is None or lower <= target) and (upper is None or target <= upper)
    ):
        raise ValueError(f"{word} target {target} is outside [lower, upper]")


class ValueSpecModel(LimitModel):
    spec: SpecModel | None = None
    window: WindowModel | None = None
    type: ValueType | None = None
    default: Scalar | None = None
    optional: StrictBool | None = None
    unit: StrictStr | None = None
    description: StrictStr | None = None
    tool_value: ValueName | None = None


class ReworkModel(BaseModel):
    model_config = _CONFIG
    max_reworks: Annotated[StrictInt, Field(ge=1)]
    through: list[StepCodeName] = Field(default_factory=list)


class StepBodyModel(BaseModel):
    """What steps.yaml, a fragment or a flow says about a step; merged in that order."""

    model_config = _CONFIG
    recipe: dict[ValueName, ValueSpecModel] = Field(default_factory=dict)
    measured: dict[ValueName, ValueSpecModel] = Field(default_factory=dict)
    checks: dict[ValueName, LimitModel] = Field(default_factory=dict)
    rework: ReworkModel | None = None


class StepCodeModel(StepBodyModel):
    description: StrictStr
    equipment_class: ClassName


class StepsFile(RootModel[dict[StepCodeName, StepCodeModel]]):
    pass


class FragmentModel(BaseModel):
    model_config = _CONFIG
    description: StrictStr = ""
    claims: StrictStr = ""
    sequence: StrictStr
    wiring_layer: StrictBool = False
    steps: dict[StepCodeName, StepBodyModel] = Field(default_factory=dict)

    @field_validator("sequence", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        return _text_only(value, "the sequence", 'sequence: "[PASSIVATION] BALL_MOUNT DICE"')


class FragmentsFile(RootModel[dict[FragmentName, FragmentModel]]):
    pass


class QueueTimeModel(BaseModel):
    """A maximum wait between two steps of a flow (from the track-out of one to the track-in
    of the other), with a warning before it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    from_step: StepCodeName = Field(alias="from")
    to_step: StepCodeName = Field(alias="to")
    max_minutes: Annotated[Number, Field(gt=0)]
    warn_minutes: Annotated[Number, Field(gt=0)] | None = None
    origin: Annotated[StrictStr, StringConstraints(min_length=1)]

    @model_validator(mode="after")
    def _consistent(self) -> QueueTimeModel:
        if self.from_step == self.to_step:
            raise ValueError(f"a queue time runs between two steps, not {self.from_step} to itself")
        if self.warn_minutes is not None and self.warn_minutes >= self.max_minutes:
            raise ValueError(
                f"warn_minutes {self.warn_minutes} must come before max_minutes {self.max_minutes}"
            )
        return self


class FlowModel(BaseModel):
    model_config = _CONFIG
    name: FlowName
    title: StrictStr
    version: Annotated[StrictInt, Field(ge=1)]
    document: StrictStr
    claims: StrictStr
    description: StrictStr = ""
    sequence: StrictStr
    lot_params: dict[ValueName, ValueSpecModel] = Field(default_factory=dict)
    fragments: dict[FragmentName, FragmentModel] = Field(default_factory=dict)
    steps: dict[StepCodeName, StepBodyModel] = Field(default_factory=dict)
    queue_times: list[QueueTimeModel] = Field(default_factory=list)

    @field_validator("sequence", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        return _text_only(value, "the sequence", 'sequence: "{ LAYER } x layers FINISH"')

    @field_validator("document", "claims", mode="before")
    @classmethod
    def _document_text(cls, value: Any) -> Any:
        if isinstance(value, int):
            raise ValueError(f'write it in quotes, as text: "{value:03d}"')
        return value
