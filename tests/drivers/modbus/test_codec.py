"""The register codec: every value survives a round trip through registers, the layouts are
the documented ones, and registers that hold no valid value raise CodecError."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.codec import (
    BlockCodec,
    CodecError,
    FieldCodec,
    WordOrder,
    decode_float32,
    decode_int,
    decode_string,
    encode_float32,
    encode_int,
    encode_string,
    fit_text,
    int_enum,
    pack_site_codes,
    unpack_site_codes,
)
from drivers.model import ProcessState, Recipe

WORD_ORDERS: list[WordOrder] = ["big", "little"]
INT_RANGES = {
    "uint16": (0, 0xFFFF),
    "int16": (-0x8000, 0x7FFF),
    "uint32": (0, 0xFFFF_FFFF),
    "int32": (-0x8000_0000, 0x7FFF_FFFF),
}
printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=32)
float32s = st.floats(width=32, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("kind", sorted(INT_RANGES))
@pytest.mark.parametrize("word_order", WORD_ORDERS)
@given(data=st.data())
def test_integers_round_trip(kind: str, word_order: WordOrder, data: st.DataObject) -> None:
    low, high = INT_RANGES[kind]
    value = data.draw(st.integers(low, high))
    registers = encode_int(value, kind, word_order)
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert decode_int(registers, 0, kind, word_order) == value


@pytest.mark.parametrize("word_order", WORD_ORDERS)
@given(value=float32s)
def test_float32_round_trips_to_the_same_float32(word_order: WordOrder, value: float) -> None:
    decoded = decode_float32(encode_float32(value, word_order), 0, word_order)
    assert struct.pack(">f", decoded) == struct.pack(">f", value)


@given(value=st.floats(1e-30, 1e30) | st.floats(-1e30, -1e-30))
def test_six_significant_digits_survive_float32_so_recipe_checksums_match(value: float) -> None:
    sent = float(format(value, ".6g"))
    received = decode_float32(encode_float32(sent), 0)
    assert format(received, ".6g") == format(sent, ".6g")
    assert Recipe("r", 1, {"x": received}).checksum() == Recipe("r", 1, {"x": sent}).checksum()


def test_float32_decodes_to_the_shortest_decimal() -> None:
    assert decode_float32(encode_float32(175.1234), 0) == 175.1234
    assert decode_float32(encode_float32(0.1), 0) == 0.1


def test_word_order_puts_the_high_word_first_or_last() -> None:
    assert encode_float32(1.0, "big") == [0x3F80, 0x0000]
    assert encode_float32(1.0, "little") == [0x0000, 0x3F80]
    assert encode_int(0x12345678, "uint32", "big") == [0x1234, 0x5678]
    assert encode_int(0x12345678, "uint32", "little") == [0x5678, 0x1234]
    assert encode_int(-2, "int16") == [0xFFFE]


@given(text=printable)
def test_strings_round_trip(text: str) -> None:
    registers = encode_string(text, 16)
    assert len(registers) == 16
    assert decode_string(registers) == text


def test_strings_have_the_first_character_in_the_high_byte_and_nul_padding() -> None:
    assert encode_string("ABC", 3) == [0x4142, 0x4300, 0x0000]


@given(codes=st.lists(st.integers(0, 255), min_size=1, max_size=300))
def test_site_codes_round_trip(codes: list[int]) -> None:
    registers = pack_site_codes(codes)
    assert len(registers) == (len(codes) + 1) // 2
    assert unpack_site_codes(registers, len(codes)) == tuple(codes)


def test_site_codes_are_packed_two_per_register_high_byte_first() -> None:
    assert pack_site_codes([1, 2, 3]) == [0x0102, 0x0300]


@given(word=st.sampled_from(["gold", "copper", "silver"]))
def test_enum_words_round_trip_through_their_wire_values(word: str) -> None:
    field = FieldCodec(
        "wire_material", 0, "enum", 1, words=(("gold", 0), ("copper", 1), ("silver", 7))
    )
    assert field.decode(field.encode(word)) == word
    assert field.encode("silver") == [7]


@given(tenths=st.integers(-3276, 3276))
def test_scaled_integers_round_trip_in_engineering_units(tenths: int) -> None:
    field = FieldCodec("temperature_c", 0, "int16", 1, scale=0.1)
    value = tenths / 10
    assert field.decode(field.encode(value)) == value


def test_a_block_decodes_each_field_at_its_offset_and_writes_adjacent_fields_together() -> None:
    block = BlockCodec.of(
        "b",
        [
            FieldCodec("state", 10, "uint16", 1),
            FieldCodec("name", 11, "string", 2),
            FieldCodec("value", 20, "float32", 2),
        ],
    )
    assert (block.start, block.count) == (10, 12)
    runs = block.encode_runs({"state": 3, "name": "AB", "value": 1.0})
    assert runs == [(10, [3, 0x4142, 0]), (20, [0x3F80, 0])]
    registers = [3, 0x4142, 0] + [0] * 7 + [0x3F80, 0]
    assert block.decode(registers) == {"state": 3, "name": "AB", "value": 1.0}
    assert block.runs() == [(10, 3), (20, 2)]


# -- malformed values ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_cannot_be_sent(value: float) -> None:
    with pytest.raises(CodecError, match="finite"):
        encode_float32(value)


@pytest.mark.parametrize(
    "registers", [[0x7FC0, 0x0000], [0x7F80, 0x0000], [0xFF80, 0x0000]], ids=["nan", "inf", "-inf"]
)
def test_registers_holding_nan_or_infinity_are_not_a_number(registers: list[int]) -> None:
    field = FieldCodec(
        "force_n", 500, "float32", 2, label="measured.force_n (input registers 500..501)"
    )
    with pytest.raises(
        CodecError, match=r"measured\.force_n \(input registers 500\.\.501\): .*not a number"
    ):
        field.decode(registers)


def test_an_unknown_enum_value_names_the_field_and_the_known_values() -> None:
    field = FieldCodec(
        "wire_material", 0, "enum", 1, label="recipe.wire_material", words=(("gold", 0),)
    )
    with pytest.raises(
        CodecError, match=r"recipe\.wire_material: 5 is not a known value \(0 gold\)"
    ):
        field.decode([5])
    with pytest.raises(CodecError, match="expected one of gold"):
        field.encode("platinum")


def test_an_impossible_state_is_not_a_valid_value() -> None:
    assert int_enum(ProcessState, 3, "status.state") is ProcessState.EXECUTING
    with pytest.raises(CodecError, match=r"status\.state: 9 is not a valid value \(0 IDLE"):
        int_enum(ProcessState, 9, "status.state")


def test_a_boolean_register_holds_zero_or_one() -> None:
    field = FieldCodec("present", 0, "bool", 1)
    assert field.decode([1]) is True
    with pytest.raises(CodecError, match="2 is not a boolean"):
        field.decode([2])


@pytest.mark.parametrize("text", ["Lot-ä", "tab\there", "null\x00"])
def test_non_ascii_or_control_characters_cannot_be_sent(text: str) -> None:
    with pytest.raises(CodecError, match="printable ASCII"):
        encode_string(text, 8)


def test_a_string_longer_than_its_field_cannot_be_sent() -> None:
    with pytest.raises(CodecError, match="has 5 characters; the field holds 4"):
        encode_string("ABCDE", 2)


@pytest.mark.parametrize(
    ("registers", "message"),
    [
        ([0x41C3, 0x0000], "byte 0xc3 at position 1 is not printable ASCII"),
        ([0x4100, 0x4200], "characters after its NUL padding"),
    ],
)
def test_registers_that_hold_no_ascii_string_are_refused(
    registers: list[int], message: str
) -> None:
    with pytest.raises(CodecError, match=message):
        decode_string(registers)


@pytest.mark.parametrize(("value", "kind"), [(70000, "uint16"), (-1, "uint32"), (1 << 31, "int32")])
def test_integers_out_of_range_cannot_be_sent(value: int, kind: str) -> None:
    with pytest.raises(CodecError, match=f"does not fit a {kind}"):
        encode_int(value, kind)


def test_a_fraction_cannot_be_sent_as_an_unscaled_integer() -> None:
    with pytest.raises(CodecError, match="whole number"):
        FieldCodec("count", 0, "int32", 2).encode(2.5)


def test_free_text_is_made_sendable_by_replacing_and_cutting() -> None:
    assert fit_text("Vakuum verloren: Düse 3", 12) == "Vakuum verlo"
    assert fit_text("Düse", 10) == "D?se"
