"""The OPC UA codec alone (no server): method arguments carry explicit variant types, and every
value that does not fit the equipment model is refused with a message naming the signal."""

from __future__ import annotations

import json

import pytest
from asyncua import ua

from drivers.catalogue import class_spec
from drivers.model import (
    Alarm,
    AlarmSeverity,
    EquipmentClass,
    Job,
    Mode,
    ProcessState,
    Recipe,
    SiteMap,
    ToolStatus,
)
from drivers.opcua import codec
from drivers.opcua.nodemap import STATUS_SIGNALS, Signal
from drivers.opcua.ua_typed import StatusCodes, status

V = ua.VariantType


def dv(value: object, vtype: ua.VariantType) -> ua.DataValue:
    return ua.DataValue(ua.Variant(value, vtype))


def status_values(**override: ua.DataValue) -> dict[Signal, ua.DataValue]:
    values = {
        Signal.STATE: dv(3, V.Int32),
        Signal.MODE: dv(1, V.Int32),
        Signal.SITES_DONE: dv(2, V.UInt32),
        Signal.SITES_TOTAL: dv(5, V.UInt32),
        Signal.JOB_ID: dv("J-1", V.String),
        Signal.ALARM_CODE: dv(0, V.Int32),
        Signal.ALARM_TEXT: dv("", V.String),
        Signal.ALARM_SEVERITY: dv(0, V.Int32),
        Signal.RESULTS_AVAILABLE: dv(False, V.Boolean),
    }
    values.update({Signal(k): v for k, v in override.items()})
    assert set(values) == set(STATUS_SIGNALS)
    return values


def test_a_status_is_decoded_from_its_signals() -> None:
    assert codec.decode_status(status_values()) == ToolStatus(
        ProcessState.EXECUTING, Mode.PRODUCTION, 2, 5, "J-1", None, False
    )
    alarmed = codec.decode_status(
        status_values(
            state=dv(5, V.Int32),
            alarm_code=dv(12, V.Int32),
            alarm_text=dv("door open", V.String),
            alarm_severity=dv(1, V.Int32),
        )
    )
    assert alarmed.alarm == Alarm(12, "door open", AlarmSeverity.WARNING)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"state": dv("IDLE", V.String)}, "state: expected an integer, got String"),
        ({"state": dv(7, V.Int32)}, "state: 7 is not a known ProcessState"),
        ({"mode": dv(0, V.Int32)}, "mode: 0 is not a known Mode"),
        ({"sites_done": dv(6, V.UInt32)}, "6 of 5 sites is impossible"),
        ({"job_id": dv(5, V.Int32)}, "job_id: expected a String"),
        ({"results_available": dv(1, V.Int32)}, "results_available: expected a Boolean"),
        (
            {"state": ua.DataValue(StatusCode=status(StatusCodes.BadNodeIdUnknown))},
            "state: the server answered BadNodeIdUnknown",
        ),
    ],
)
def test_a_status_that_does_not_fit_the_model_is_refused(
    override: dict[str, ua.DataValue], message: str
) -> None:
    with pytest.raises(codec.MalformedValue, match=message):
        codec.decode_status(status_values(**override))


def test_a_site_map_needs_rows_times_cols_codes() -> None:
    assert codec.decode_site_map(2, 2, b"\0\1\0\3") == SiteMap(2, 2, (0, 1, 0, 3))
    with pytest.raises(codec.MalformedValue, match="needs 4 codes, the ByteString holds 3"):
        codec.decode_site_map(2, 2, b"\0\0\0")
    with pytest.raises(codec.MalformedValue, match="has no sites"):
        codec.decode_site_map(0, 2, b"")


def test_measured_values_are_checked_against_the_catalogue() -> None:
    spec = class_spec(EquipmentClass.BALL_MOUNTER).measured
    assert codec.decode_measured(spec["missing_balls"], dv(2, V.Int32)) == 2
    assert codec.decode_measured(spec["reflow_peak_c"], dv(245.5, V.Double)) == 245.5
    assert codec.decode_measured(spec["bonding_point"], dv("bump", V.String)) == "bump"
    with pytest.raises(codec.MalformedValue, match="'glue' is not one of"):
        codec.decode_measured(spec["bonding_point"], dv("glue", V.String))
    with pytest.raises(codec.MalformedValue, match="expected a number"):
        codec.decode_measured(spec["reflow_peak_c"], dv("hot", V.String))


def test_method_arguments_carry_explicit_variant_types() -> None:
    recipe = Recipe("r", 3, {"b": "epoxy_resin", "a": 175.0})
    name, version, body = codec.encode_load_recipe(recipe)
    assert (name.VariantType, version.VariantType, body.VariantType) == (
        V.String,
        V.Int32,
        V.String,
    )
    assert json.loads(body.Value) == {"a": 175.0, "b": "epoxy_resin"}
    job = Job("J", "L", "S", "C", SiteMap(1, 3, (0, 1, 0)))
    types = [v.VariantType for v in codec.encode_start_job(job)]
    assert types == [V.String] * 4 + [V.UInt16, V.UInt16, V.ByteString]
    assert codec.encode_start_job(job)[-1].Value == b"\0\1\0"
    assert codec.encode_mode(Mode.SETUP)[0] == ua.Variant(3, V.Int32)


def test_method_outputs_are_a_refusal_code_and_a_reason() -> None:
    assert codec.decode_refusal([ua.Variant(1, V.Int32), ua.Variant("busy", V.String)]) == (
        1,
        "busy",
    )
    with pytest.raises(codec.MalformedValue, match="expected RefusalCode and Reason"):
        codec.decode_refusal([ua.Variant(0, V.Int32)])
    with pytest.raises(codec.MalformedValue, match="RefusalCode: expected an integer"):
        codec.decode_refusal([ua.Variant("0", V.String), ua.Variant("", V.String)])
