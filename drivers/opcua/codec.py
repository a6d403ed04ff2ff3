"""Values on the OPC UA wire <-> the equipment model: a pure codec, no I/O.

Every decoder checks the variant type and range of what a server sent and raises
:class:`MalformedValue` (a ValueError naming the signal) for anything else: a String where an
Int32 belongs, a process state of 99, a site map whose ByteString length is not rows x cols.
The driver turns it into :class:`~drivers.errors.ProtocolError` with the tool and request.

Method arguments are built with explicit variant types (asyncua would guess Int64 for a
Python int), in the order the pkgline model's methods declare them (docs/equipment.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from asyncua import ua

from drivers.catalogue import ClassSpec, ValueSpec
from drivers.model import (
    Alarm,
    AlarmSeverity,
    EquipmentClass,
    Job,
    JobResults,
    MeasuredValue,
    Mode,
    ProcessState,
    Recipe,
    RecipeInfo,
    SiteMap,
    ToolIdentity,
    ToolStatus,
)
from drivers.opcua.nodemap import Signal

_INTEGER_TYPES = frozenset(
    {
        ua.VariantType.SByte,
        ua.VariantType.Byte,
        ua.VariantType.Int16,
        ua.VariantType.UInt16,
        ua.VariantType.Int32,
        ua.VariantType.UInt32,
        ua.VariantType.Int64,
        ua.VariantType.UInt64,
    }
)
_FLOAT_TYPES = frozenset({ua.VariantType.Float, ua.VariantType.Double})

Values = Mapping[Signal, ua.DataValue]


class MalformedValue(ValueError):
    """A value a server sent does not fit the equipment model."""


def _variant(name: str, value: ua.DataValue) -> ua.Variant:
    status = value.StatusCode
    if status is not None and not status.is_good():
        raise MalformedValue(f"{name}: the server answered {status.name}")
    if value.Value is None:
        raise MalformedValue(f"{name}: the server sent no value")
    return value.Value


def as_int(name: str, value: ua.DataValue) -> int:
    variant = _variant(name, value)
    if variant.VariantType not in _INTEGER_TYPES or not isinstance(variant.Value, int):
        raise MalformedValue(
            f"{name}: expected an integer, got {variant.VariantType.name} {variant.Value!r}"
        )
    return variant.Value


def as_float(name: str, value: ua.DataValue) -> float:
    variant = _variant(name, value)
    if variant.VariantType in _FLOAT_TYPES and isinstance(variant.Value, float):
        return variant.Value
    if variant.VariantType in _INTEGER_TYPES and isinstance(variant.Value, int):
        return float(variant.Value)
    raise MalformedValue(
        f"{name}: expected a number, got {variant.VariantType.name} {variant.Value!r}"
    )


def as_str(name: str, value: ua.DataValue) -> str:
    variant = _variant(name, value)
    if variant.VariantType is not ua.VariantType.String:
        raise MalformedValue(
            f"{name}: expected a String, got {variant.VariantType.name} {variant.Value!r}"
        )
    # A null String is the empty string.
    return variant.Value if isinstance(variant.Value, str) else ""


def as_bool(name: str, value: ua.DataValue) -> bool:
    variant = _variant(name, value)
    if variant.VariantType is not ua.VariantType.Boolean or not isinstance(variant.Value, bool):
        raise MalformedValue(
            f"{name}: expected a Boolean, got {variant.VariantType.name} {variant.Value!r}"
        )
    return variant.Value


def as_bytes(name: str, value: ua.DataValue) -> bytes:
    variant = _variant(name, value)
    if variant.VariantType is not ua.VariantType.ByteString:
        raise MalformedValue(
            f"{name}: expected a ByteString, got {variant.VariantType.name} {variant.Value!r}"
        )
    return bytes(variant.Value) if variant.Value is not None else b""


_E = TypeVar("_E", ProcessState, Mode, AlarmSeverity)


def _enum_value(name: str, enum: type[_E], raw: int) -> _E:
    try:
        return enum(raw)
    except ValueError:
        known = ", ".join(f"{m.value} {m.name}" for m in enum)
        raise MalformedValue(f"{name}: {raw} is not a known {enum.__name__} ({known})") from None


# -- decoding ----------------------------------------------------------------------------------


def decode_status(values: Values) -> ToolStatus:
    """One ToolStatus from the status signals (nodemap.STATUS_SIGNALS)."""
    state = _enum_value("state", ProcessState, as_int("state", values[Signal.STATE]))
    mode = _enum_value("mode", Mode, as_int("mode", values[Signal.MODE]))
    sites_done = as_int("sites_done", values[Signal.SITES_DONE])
    sites_total = as_int("sites_total", values[Signal.SITES_TOTAL])
    if not 0 <= sites_done <= max(sites_total, 0) or sites_total < 0:
        raise MalformedValue(f"progress: {sites_done} of {sites_total} sites is impossible")
    job_id = as_str("job_id", values[Signal.JOB_ID])
    code = as_int("alarm_code", values[Signal.ALARM_CODE])
    alarm = None
    if code != 0:
        severity = _enum_value(
            "alarm_severity", AlarmSeverity, as_int("alarm_severity", values[Signal.ALARM_SEVERITY])
        )
        alarm = Alarm(code, as_str("alarm_text", values[Signal.ALARM_TEXT]), severity)
    return ToolStatus(
        state=state,
        mode=mode,
        sites_done=sites_done,
        sites_total=sites_total,
        job_id=job_id or None,
        alarm=alarm,
        results_waiting=as_bool("results_available", values[Signal.RESULTS_AVAILABLE]),
    )


def decode_identity(tool_id: str, values: Values) -> ToolIdentity:
    raw_class = as_str("equipment_class", values[Signal.EQUIPMENT_CLASS])
    try:
        equipment_class = EquipmentClass(raw_class)
    except ValueError:
        raise MalformedValue(f"equipment_class: {raw_class!r} is not a known class") from None
    return ToolIdentity(
        tool_id=tool_id,
        equipment_class=equipment_class,
        manufacturer=as_str("manufacturer", values[Signal.MANUFACTURER]),
        model=as_str("model", values[Signal.MODEL]),
        serial_number=as_str("serial_number", values[Signal.SERIAL_NUMBER]),
        software_version=as_str("software_version", values[Signal.SOFTWARE_VERSION]),
    )


def decode_recipe(values: Values) -> RecipeInfo | None:
    """The active recipe; None while the tool is IDLE (it holds none)."""
    state = _enum_value("state", ProcessState, as_int("state", values[Signal.STATE]))
    name = as_str("recipe_name", values[Signal.RECIPE_NAME])
    version = as_int("recipe_version", values[Signal.RECIPE_VERSION])
    checksum = as_int("recipe_checksum", values[Signal.RECIPE_CHECKSUM])
    if not 0 <= checksum <= 0xFFFFFFFF:
        raise MalformedValue(f"recipe_checksum: {checksum} is not an unsigned 32-bit value")
    if state is ProcessState.IDLE or not name:
        return None
    return RecipeInfo(name, version, checksum)


def decode_site_map(rows: int, cols: int, codes: bytes) -> SiteMap:
    if rows < 1 or cols < 1:
        raise MalformedValue(f"site map: {rows} x {cols} has no sites")
    if len(codes) != rows * cols:
        raise MalformedValue(
            f"site map: {rows} x {cols} needs {rows * cols} codes, the ByteString holds {len(codes)}"
        )
    return SiteMap(rows, cols, tuple(codes))


def decode_measured(spec: ValueSpec, value: ua.DataValue) -> MeasuredValue:
    if spec.type == "enum":
        word = as_str(spec.name, value)
        assert spec.values is not None
        if word not in spec.values:
            raise MalformedValue(f"{spec.name}: {word!r} is not one of {', '.join(spec.values)}")
        return word
    if spec.type == "int":
        return as_int(spec.name, value)
    return as_float(spec.name, value)


def decode_results(
    values: Values, measured: Mapping[str, ua.DataValue], spec: ClassSpec
) -> JobResults | None:
    """The finished job's results; None when the tool holds none."""
    if not as_bool("results_available", values[Signal.RESULTS_AVAILABLE]):
        return None
    site_map = decode_site_map(
        as_int("results_rows", values[Signal.RESULTS_ROWS]),
        as_int("results_cols", values[Signal.RESULTS_COLS]),
        as_bytes("results_codes", values[Signal.RESULTS_CODES]),
    )
    job_id = as_str("results_job_id", values[Signal.RESULTS_JOB_ID])
    if not job_id:
        raise MalformedValue("results_job_id: results are available but name no job")
    return JobResults(
        job_id=job_id,
        lot_id=as_str("results_lot_id", values[Signal.RESULTS_LOT_ID]),
        step=as_str("results_step", values[Signal.RESULTS_STEP]),
        carrier_id=as_str("results_carrier_id", values[Signal.RESULTS_CARRIER_ID]),
        measured={name: decode_measured(spec.measured[name], dv) for name, dv in measured.items()},
        site_map=site_map,
    )


def decode_refusal(outputs: Sequence[ua.Variant] | None) -> tuple[int, str]:
    """A method's outputs: (RefusalCode Int32, Reason String)."""
    if not outputs or len(outputs) != 2:
        raise MalformedValue(
            f"method outputs: expected RefusalCode and Reason, got {len(outputs or [])} value(s)"
        )
    code, reason = outputs
    if code.VariantType not in _INTEGER_TYPES or not isinstance(code.Value, int):
        raise MalformedValue(f"RefusalCode: expected an integer, got {code.VariantType.name}")
    if reason.VariantType is not ua.VariantType.String:
        raise MalformedValue(f"Reason: expected a String, got {reason.VariantType.name}")
    return code.Value, reason.Value or ""


# -- encoding ----------------------------------------------------------------------------------


def _json_value(value: Any) -> float | int | str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"a recipe value is a number or a word, not {value!r}")
    return value


def encode_load_recipe(recipe: Recipe) -> list[ua.Variant]:
    """LoadRecipe(Name String, Version Int32, Body String: a JSON object of the body values)."""
    body = {key: _json_value(recipe.body[key]) for key in sorted(recipe.body)}
    return [
        ua.Variant(recipe.name, ua.VariantType.String),
        ua.Variant(recipe.version, ua.VariantType.Int32),
        ua.Variant(json.dumps(body, allow_nan=False), ua.VariantType.String),
    ]


def encode_start_job(job: Job) -> list[ua.Variant]:
    """StartJob(JobId, LotId, Step, CarrierId: String, Rows, Cols: UInt16, SiteMap: ByteString)."""
    site_map = job.site_map
    return [
        ua.Variant(job.job_id, ua.VariantType.String),
        ua.Variant(job.lot_id, ua.VariantType.String),
        ua.Variant(job.step, ua.VariantType.String),
        ua.Variant(job.carrier_id, ua.VariantType.String),
        ua.Variant(site_map.rows, ua.VariantType.UInt16),
        ua.Variant(site_map.cols, ua.VariantType.UInt16),
        ua.Variant(bytes(site_map.codes), ua.VariantType.ByteString),
    ]


def encode_job_id(job_id: str) -> list[ua.Variant]:
    return [ua.Variant(job_id, ua.VariantType.String)]


def encode_mode(mode: Mode) -> list[ua.Variant]:
    return [ua.Variant(int(mode), ua.VariantType.Int32)]
