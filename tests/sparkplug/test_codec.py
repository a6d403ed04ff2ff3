"""Payloads as the specification's protobuf: what pkgline's codec writes, the tests' own wire
reader reads back field by field (and the other way round for commands); values that do not
fit their datatype and bytes that are not a payload are refused with a clear error."""

from __future__ import annotations

import pytest

from pkgline.sparkplug import sparkplug_b_pb2 as pb
from pkgline.sparkplug.codec import DataType, Metric, PayloadError, Topics, decode, encode
from tests.sparkplug.wire import command_payload, read_payload


def test_every_datatype_of_the_codec_has_the_number_the_proto_gives_it() -> None:
    for kind in DataType:
        assert pb.DataType.Value(kind.name) == kind.value


def test_a_payload_reads_back_with_an_independent_wire_reader() -> None:
    metrics = [
        Metric(DataType.String, "EXECUTING", name="Process/State", alias=2, timestamp_ms=7),
        Metric(DataType.Int32, -5, name="Alarm/Code", alias=3),
        Metric(DataType.UInt32, 0xFFFFFFFF, alias=4),
        Metric(DataType.Int64, -2, alias=5),
        Metric(DataType.UInt64, 2**63, alias=6),
        Metric(DataType.Double, 12.25, alias=7),
        Metric(DataType.Float, 0.5, alias=8),
        Metric(DataType.Boolean, True, alias=9),
        Metric(DataType.String, None, name="Recipe/Name", alias=10),
    ]
    payload = read_payload(encode(1_700_000_000_123, metrics, seq=255))
    assert payload.timestamp == 1_700_000_000_123 and payload.seq == 255
    got = payload.metrics
    assert (got[0].name, got[0].alias, got[0].timestamp, got[0].datatype, got[0].value) == (
        "Process/State", 2, 7, 12, "EXECUTING"
    )  # fmt: skip
    assert got[1].value == -5
    assert got[2].value == 0xFFFFFFFF
    assert got[3].value == 2**64 - 2  # two's complement in a uint64, as the spec says
    assert got[4].value == 2**63
    assert got[5].value == 12.25 and got[6].value == 0.5 and got[7].value is True
    assert got[8].is_null and got[8].value is None and got[8].datatype == 12
    assert [m.name for m in got[2:8]] == [None] * 6


def test_a_death_payload_has_no_seq() -> None:
    payload = read_payload(encode(1, [Metric(DataType.Int64, 3, name="bdSeq")], seq=None))
    assert payload.seq is None and payload.metrics[0].value == 3


def test_a_command_written_by_hand_decodes_to_its_metric() -> None:
    command = decode(command_payload(42, "Node Control/Rebirth", True))
    assert command.timestamp_ms == 42 and command.seq is None
    (metric,) = command.metrics
    assert (metric.name, metric.datatype, metric.value) == ("Node Control/Rebirth", 11, True)


def test_signed_values_decode_back_to_negative_numbers() -> None:
    data = encode(
        1, [Metric(DataType.Int32, -7, alias=1), Metric(DataType.Int64, -9, alias=2)], seq=0
    )
    assert [m.value for m in decode(data).metrics] == [-7, -9]


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        (Metric(DataType.Boolean, 1, name="x"), "expected a boolean"),
        (Metric(DataType.Int32, 1.5, name="x"), "expected a whole number"),
        (Metric(DataType.Int64, True, name="x"), "expected a whole number"),
        (Metric(DataType.Double, "1", name="x"), "expected a number"),
        (Metric(DataType.String, 3, name="x"), "expected text"),
        (Metric(16, 3, name="x"), "datatype 16 is not one pkgline writes"),
    ],
)
def test_a_value_that_does_not_fit_its_datatype_is_refused(metric: Metric, expected: str) -> None:
    with pytest.raises(PayloadError, match=expected):
        encode(1, [metric], seq=0)


def test_seq_outside_0_to_255_is_refused() -> None:
    with pytest.raises(PayloadError, match=r"seq is 0\.\.255"):
        encode(1, [], seq=256)


def test_bytes_that_are_not_a_payload_are_refused() -> None:
    with pytest.raises(PayloadError, match="not a Sparkplug B payload"):
        decode(b"\xff\xff\xff")


def test_topics_follow_the_namespace() -> None:
    topics = Topics("packaging", "line-1")
    assert topics.node("NBIRTH") == "spBv1.0/packaging/NBIRTH/line-1"
    assert topics.device("DDATA", "DB-1") == "spBv1.0/packaging/DDATA/line-1/DB-1"
