"""Sparkplug B payloads and topics: metrics to protobuf bytes and back.

The bytes are the specification's protobuf (``sparkplug_b.proto`` of Eclipse Tahu, compiled
into ``sparkplug_b_pb2``; see ``generate.sh``). Which value field a metric uses follows its
datatype (Sparkplug 3.0, "Payloads"):

    Int8/16/32, UInt8/16/32   int_value (uint32; negative numbers as two's complement)
    Int64, UInt64, DateTime   long_value (uint64; negative numbers as two's complement)
    Float / Double            float_value / double_value
    Boolean                   boolean_value
    String, Text              string_value
    no value                  is_null = true (and no value field)

Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeAlias

from google.protobuf.message import DecodeError

from pkgline.sparkplug import sparkplug_b_pb2 as pb
from pkgline.sparkplug.config import NAMESPACE

MetricValue: TypeAlias = bool | int | float | str | None


class DataType(IntEnum):
    """The scalar Sparkplug datatypes (numbers as in ``sparkplug_b.proto``)."""

    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14


_INT32 = frozenset(
    {
        DataType.Int8,
        DataType.Int16,
        DataType.Int32,
        DataType.UInt8,
        DataType.UInt16,
        DataType.UInt32,
    }
)
_INT64 = frozenset({DataType.Int64, DataType.UInt64, DataType.DateTime})
_SIGNED = frozenset({DataType.Int8, DataType.Int16, DataType.Int32, DataType.Int64})


class PayloadError(ValueError):
    """Bytes that are not a Sparkplug B payload, or a metric whose value does not fit its type."""


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric of a payload: by name (births), by alias (data and commands), or both."""

    datatype: int
    value: MetricValue
    name: str | None = None
    alias: int | None = None
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Payload:
    timestamp_ms: int | None
    seq: int | None
    metrics: tuple[Metric, ...]


def encode(timestamp_ms: int, metrics: Iterable[Metric], *, seq: int | None) -> bytes:
    """A payload's bytes. ``seq`` None: no sequence number (NDEATH only)."""
    message = pb.Payload()
    message.timestamp = timestamp_ms
    if seq is not None:
        if not 0 <= seq <= 255:
            raise PayloadError(f"seq is 0..255, not {seq}")
        message.seq = seq
    for metric in metrics:
        _fill(message.metrics.add(), metric)
    return message.SerializeToString()


def _fill(out: pb.Payload.Metric, metric: Metric) -> None:
    if metric.name is not None:
        out.name = metric.name
    if metric.alias is not None:
        out.alias = metric.alias
    if metric.timestamp_ms is not None:
        out.timestamp = metric.timestamp_ms
    out.datatype = metric.datatype
    value = metric.value
    if value is None:
        out.is_null = True
        return
    kind = metric.datatype
    what = metric.name or f"alias {metric.alias}"
    if kind == DataType.Boolean:
        if not isinstance(value, bool):
            raise PayloadError(f"{what}: expected a boolean, got {value!r}")
        out.boolean_value = value
    elif kind in _INT32 or kind in _INT64:
        if isinstance(value, bool) or not isinstance(value, int):
            raise PayloadError(f"{what}: expected a whole number, got {value!r}")
        if kind in _INT32:
            out.int_value = value & 0xFFFFFFFF
        else:
            out.long_value = value & 0xFFFFFFFFFFFFFFFF
    elif kind in (DataType.Float, DataType.Double):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PayloadError(f"{what}: expected a number, got {value!r}")
        if kind == DataType.Float:
            out.float_value = float(value)
        else:
            out.double_value = float(value)
    elif kind in (DataType.String, DataType.Text):
        if not isinstance(value, str):
            raise PayloadError(f"{what}: expected text, got {value!r}")
        out.string_value = value
    else:
        raise PayloadError(f"{what}: datatype {kind} is not one pkgline writes")


def decode(data: bytes) -> Payload:
    """A payload from its bytes (commands from host applications). Raises PayloadError."""
    message = pb.Payload()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise PayloadError(f"not a Sparkplug B payload: {exc}") from None
    return Payload(
        timestamp_ms=message.timestamp if message.HasField("timestamp") else None,
        seq=message.seq if message.HasField("seq") else None,
        metrics=tuple(_read(m) for m in message.metrics),
    )


def _read(metric: pb.Payload.Metric) -> Metric:
    field = metric.WhichOneof("value")
    value: MetricValue = None
    if metric.is_null or field is None:
        value = None
    elif field == "int_value":
        raw = metric.int_value
        value = _signed(raw, 32) if metric.datatype in _SIGNED else raw
    elif field == "long_value":
        raw = metric.long_value
        value = _signed(raw, 64) if metric.datatype in _SIGNED else raw
    elif field in ("float_value", "double_value", "boolean_value", "string_value"):
        value = getattr(metric, field)
    else:
        raise PayloadError(f"metric {metric.name or metric.alias}: {field} values are not read")
    return Metric(
        datatype=metric.datatype,
        value=value,
        name=metric.name if metric.HasField("name") else None,
        alias=metric.alias if metric.HasField("alias") else None,
        timestamp_ms=metric.timestamp if metric.HasField("timestamp") else None,
    )


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one edge node (``spBv1.0/GROUP/VERB/NODE[/DEVICE]``)."""

    group_id: str
    edge_node_id: str

    def node(self, verb: str) -> str:
        return f"{NAMESPACE}/{self.group_id}/{verb}/{self.edge_node_id}"

    def device(self, verb: str, device_id: str) -> str:
        return f"{NAMESPACE}/{self.group_id}/{verb}/{self.edge_node_id}/{device_id}"


def state_topic(host_id: str) -> str:
    """Where a primary host application publishes its STATE (3.0: JSON, retained, QoS 1)."""
    return f"{NAMESPACE}/STATE/{host_id}"
