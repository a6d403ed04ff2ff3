"""An independent reader and writer of Sparkplug B payloads for the tests: the protobuf wire
format done by hand from the field numbers of sparkplug_b.proto, sharing nothing with
pkgline.sparkplug (neither its codec nor the generated module nor the protobuf library).

    Payload: 1 timestamp (varint), 2 metrics (message, repeated), 3 seq (varint)
    Metric:  1 name (string), 2 alias, 3 timestamp, 4 datatype, 7 is_null (varints);
             10 int_value, 11 long_value (varint), 12 float_value (fixed32),
             13 double_value (fixed64), 14 boolean_value (varint), 15 string_value (string)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

INT64, UINT32, INT32, DOUBLE, BOOLEAN, STRING, DATETIME = 4, 7, 3, 10, 11, 12, 13


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, raw value) in order: varints as int, fixed as bytes,
    length-delimited as bytes."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        else:
            raise ValueError(f"wire type {wire} not expected in a Sparkplug payload")
        if pos > len(data):
            raise ValueError("truncated field")
        out.append((number, wire, value))
    return out


@dataclass
class WireMetric:
    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None
    datatype: int | None = None
    is_null: bool = False
    value: Any = None


@dataclass
class WirePayload:
    timestamp: int | None = None
    seq: int | None = None
    metrics: list[WireMetric] = field(default_factory=list)

    def by_name(self) -> dict[str, WireMetric]:
        return {m.name: m for m in self.metrics if m.name is not None}

    def by_alias(self) -> dict[int, WireMetric]:
        return {m.alias: m for m in self.metrics if m.alias is not None}


def _metric(data: bytes) -> WireMetric:
    metric = WireMetric()
    for number, _, value in fields(data):
        if number == 1:
            metric.name = value.decode("utf-8")
        elif number == 2:
            metric.alias = value
        elif number == 3:
            metric.timestamp = value
        elif number == 4:
            metric.datatype = value
        elif number == 7:
            metric.is_null = bool(value)
        elif number in (10, 11):
            metric.value = value
        elif number == 12:
            metric.value = struct.unpack("<f", value)[0]
        elif number == 13:
            metric.value = struct.unpack("<d", value)[0]
        elif number == 14:
            metric.value = bool(value)
        elif number == 15:
            metric.value = value.decode("utf-8")
    if metric.datatype == INT32 and isinstance(metric.value, int) and metric.value >> 31:
        metric.value -= 1 << 32
    return metric


def read_payload(data: bytes) -> WirePayload:
    payload = WirePayload()
    for number, _, value in fields(data):
        if number == 1:
            payload.timestamp = value
        elif number == 2:
            payload.metrics.append(_metric(value))
        elif number == 3:
            payload.seq = value
    return payload


def _key(number: int, wire: int) -> bytes:
    return _put_varint((number << 3) | wire)


def _put_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _string(number: int, text: str) -> bytes:
    raw = text.encode("utf-8")
    return _key(number, 2) + _put_varint(len(raw)) + raw


def command_payload(timestamp_ms: int, name: str, value: bool) -> bytes:
    """An NCMD payload with one Boolean metric (how a host application asks for a rebirth)."""
    metric = (
        _string(1, name) + _key(4, 0) + _put_varint(BOOLEAN) + _key(14, 0) + _put_varint(int(value))
    )
    return _key(1, 0) + _put_varint(timestamp_ms) + _key(2, 2) + _put_varint(len(metric)) + metric
