"""Values in Modbus registers and back: pure functions, no I/O.

Conventions (docs/equipment.md, "Modbus TCP"):

- A register is 16 bits, its two bytes big-endian (the Modbus standard).
- 32-bit values (uint32, int32, float32, IEEE 754) take two consecutive registers; the word
  order is the map's: ``big`` puts the high word at the lower address (ABCD), ``little`` the
  low word (CDAB).
- Strings are fixed-length printable ASCII, two characters per register, the first character
  in the high byte, NUL padded at the end. Word order does not apply to strings.
- Enumerated values travel as a uint16 wire value (by default the word's index in the class
  catalogue); ``bool`` is a uint16 holding 0 or 1.
- Numbers may be scaled: the engineering value is ``raw * scale`` (e.g. an int16 in tenths of
  a degree has ``scale: 0.1``).
- Site maps are one byte per site, two sites per register::

      register  k:  | bits 15..8      | bits 7..0        |
                    | site 2k         | site 2k+1        |   (0 after the last site)

Anything the registers cannot hold, or registers that do not hold a valid value (NaN, an
unknown enum value, a non-ASCII byte...), raises :class:`CodecError`; the driver turns it into
:class:`~drivers.errors.ProtocolError` (answers) or a refused command (arguments).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal, TypeAlias, TypeVar

FieldKind: TypeAlias = Literal[
    "uint16", "int16", "uint32", "int32", "float32", "bool", "enum", "string"
]
WordOrder: TypeAlias = Literal["big", "little"]
Value: TypeAlias = int | float | str
"""A decoded field value: a number, a word or a text (``bool`` fields give ``bool``)."""

INTEGER_KINDS: frozenset[str] = frozenset({"uint16", "int16", "uint32", "int32"})
NUMERIC_KINDS: frozenset[str] = INTEGER_KINDS | {"float32"}
FIXED_SIZES: dict[str, int] = {
    "uint16": 1,
    "int16": 1,
    "uint32": 2,
    "int32": 2,
    "float32": 2,
    "bool": 1,
    "enum": 1,
}
_INT_RANGES: dict[str, tuple[int, int]] = {
    "uint16": (0, 0xFFFF),
    "int16": (-0x8000, 0x7FFF),
    "uint32": (0, 0xFFFF_FFFF),
    "int32": (-0x8000_0000, 0x7FFF_FFFF),
}
_STRUCT_32 = {
    "uint32": struct.Struct(">I"),
    "int32": struct.Struct(">i"),
    "float32": struct.Struct(">f"),
}
_FLOAT32 = struct.Struct(">f")
_WORDS = struct.Struct(">HH")

MAX_SITE_CODE = 0xFF

E = TypeVar("E", bound=IntEnum)


class CodecError(ValueError):
    """A value cannot be put into registers, or registers do not hold a valid value."""


# -- registers and bytes ---------------------------------------------------------------------


def registers_to_bytes(registers: Sequence[int]) -> bytes:
    """The bytes of ``registers``, each register big-endian."""
    try:
        return struct.pack(f">{len(registers)}H", *registers)
    except struct.error as exc:
        raise CodecError(f"registers are 16-bit values 0..65535: {exc}") from None


def bytes_to_registers(data: bytes) -> list[int]:
    """Registers holding ``data`` (an odd length is padded with a NUL byte)."""
    if len(data) % 2:
        data += b"\x00"
    return list(struct.unpack(f">{len(data) // 2}H", data))


# -- strings ---------------------------------------------------------------------------------


def _is_printable_ascii(byte: int) -> bool:
    return 0x20 <= byte <= 0x7E


def encode_string(text: str, registers: int) -> list[int]:
    """``text`` in ``registers`` registers: printable ASCII, NUL padded."""
    for char in text:
        if not " " <= char <= "~":
            raise CodecError(f"{text!r}: only printable ASCII can be sent, not {char!r}")
    data = text.encode("ascii")
    capacity = 2 * registers
    if len(data) > capacity:
        raise CodecError(f"{text!r} has {len(data)} characters; the field holds {capacity}")
    return bytes_to_registers(data.ljust(capacity, b"\x00"))


def decode_string(registers: Sequence[int]) -> str:
    """The text in ``registers``: printable ASCII up to the first NUL, NULs after it."""
    data = registers_to_bytes(registers)
    end = data.find(b"\x00")
    if end < 0:
        end = len(data)
    elif data[end:].strip(b"\x00"):
        raise CodecError(f"string {data!r} has characters after its NUL padding")
    for position, byte in enumerate(data[:end]):
        if not _is_printable_ascii(byte):
            raise CodecError(
                f"string {data[:end]!r}: byte 0x{byte:02x} at position {position} "
                "is not printable ASCII"
            )
    return data[:end].decode("ascii")


def fit_text(text: str, max_chars: int) -> str:
    """``text`` made sendable as free text: non-printable characters become ``?`` and the
    text is cut to ``max_chars`` (for alarm texts and refusal reasons, never for ids)."""
    cleaned = "".join(c if c.isascii() and _is_printable_ascii(ord(c)) else "?" for c in text)
    return cleaned[:max_chars]


# -- numbers ---------------------------------------------------------------------------------


def _swap(hi: int, lo: int, word_order: WordOrder) -> list[int]:
    return [hi, lo] if word_order == "big" else [lo, hi]


def encode_int(value: int, kind: str, word_order: WordOrder = "big") -> list[int]:
    """An integer as ``kind`` (uint16, int16, uint32, int32)."""
    low, high = _INT_RANGES[kind]
    if not low <= value <= high:
        raise CodecError(f"{value} does not fit a {kind} ({low}..{high})")
    if kind == "uint16":
        return [value]
    if kind == "int16":
        return [value & 0xFFFF]
    hi, lo = _WORDS.unpack(_STRUCT_32[kind].pack(value))
    return _swap(hi, lo, word_order)


def decode_int(registers: Sequence[int], offset: int, kind: str, word_order: WordOrder) -> int:
    """The integer of ``kind`` at ``registers[offset]``."""
    first = registers[offset]
    if kind == "uint16":
        return first
    if kind == "int16":
        return first - 0x10000 if first & 0x8000 else first
    second = registers[offset + 1]
    hi, lo = (first, second) if word_order == "big" else (second, first)
    value: int = _STRUCT_32[kind].unpack(_WORDS.pack(hi, lo))[0]
    return value


def encode_float32(value: float, word_order: WordOrder = "big") -> list[int]:
    """A finite number as an IEEE 754 float32 in two registers."""
    if not math.isfinite(value):
        raise CodecError(f"{value!r} cannot be sent: only finite numbers are allowed")
    try:
        data = _FLOAT32.pack(value)
    except (OverflowError, struct.error):
        raise CodecError(f"{value!r} is out of the float32 range") from None
    hi, lo = _WORDS.unpack(data)
    return _swap(hi, lo, word_order)


def decode_float32(registers: Sequence[int], offset: int, word_order: WordOrder = "big") -> float:
    """The float32 at ``registers[offset]``, as the shortest decimal that is the same float32
    (``175.1234`` comes back as ``175.1234``, not ``175.12339782714844``). NaN and infinities
    are refused: no value of the equipment model is ever one."""
    first, second = registers[offset], registers[offset + 1]
    hi, lo = (first, second) if word_order == "big" else (second, first)
    data = _WORDS.pack(hi, lo)
    value: float = _FLOAT32.unpack(data)[0]
    if not math.isfinite(value):
        raise CodecError(f"float32 registers 0x{hi:04x} 0x{lo:04x} hold {value}, not a number")
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if _FLOAT32.pack(candidate) == data:
            return candidate
    return value  # pragma: no cover - nine digits always round-trip a float32


def int_enum(enum_type: type[E], raw: int, what: str) -> E:
    """``raw`` as a member of ``enum_type``; a value outside it is a CodecError naming it."""
    try:
        return enum_type(raw)
    except ValueError:
        allowed = ", ".join(f"{m.value} {m.name}" for m in enum_type)
        raise CodecError(f"{what}: {raw} is not a valid value ({allowed})") from None


# -- site maps -------------------------------------------------------------------------------


def site_registers(sites: int) -> int:
    """Registers needed for ``sites`` site codes."""
    return (sites + 1) // 2


def pack_site_codes(codes: Iterable[int]) -> list[int]:
    """Site codes (0..255 each, row-major) packed two per register, high byte first."""
    data = bytes(codes) if not isinstance(codes, bytes) else codes
    return bytes_to_registers(data)


def unpack_site_codes(registers: Sequence[int], sites: int) -> tuple[int, ...]:
    """The first ``sites`` site codes packed in ``registers`` (a trailing pad byte is ignored)."""
    if len(registers) < site_registers(sites):
        raise CodecError(
            f"{sites} sites need {site_registers(sites)} registers, got {len(registers)}"
        )
    return tuple(registers_to_bytes(registers)[:sites])


# -- fields and blocks -----------------------------------------------------------------------


def _decimals(scale: float) -> int:
    text = repr(scale)
    if "e" in text or "E" in text:
        return 12
    _, _, fraction = text.partition(".")
    return len(fraction.rstrip("0"))


@dataclass(frozen=True, slots=True)
class FieldCodec:
    """One value in registers: where it is, what type, and how to convert it.

    ``label`` names it in error messages (e.g. ``status.state (input register 0)``).
    ``words`` maps an enum's words to their wire values.
    """

    name: str
    address: int
    kind: FieldKind
    size: int
    label: str = ""
    word_order: WordOrder = "big"
    scale: float = 1.0
    words: tuple[tuple[str, int], ...] = ()
    _by_wire: dict[int, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    _by_word: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _decimals: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fixed = FIXED_SIZES.get(self.kind)
        if fixed is not None and self.size != fixed:
            raise ValueError(f"a {self.kind} takes {fixed} register(s), not {self.size}")
        if self.kind == "string" and self.size < 1:
            raise ValueError("a string takes at least one register")
        if self.scale == 0 or not math.isfinite(self.scale):
            raise ValueError(f"scale must be a finite non-zero number, not {self.scale}")
        if not self.label:
            object.__setattr__(self, "label", self.name)
        for word, wire in self.words:
            self._by_word[word] = wire
            self._by_wire[wire] = word
        object.__setattr__(self, "_decimals", _decimals(self.scale))

    @property
    def end(self) -> int:
        """The address after the field's last register."""
        return self.address + self.size

    @property
    def capacity(self) -> int:
        """Characters a string field holds."""
        return 2 * self.size

    def encode(self, value: Value | bool) -> list[int]:
        """``value`` in this field's registers; CodecError names the field when it cannot."""
        try:
            return self._encode(value)
        except CodecError as exc:
            raise CodecError(f"{self.label}: {exc}") from None

    def _encode(self, value: Value | bool) -> list[int]:
        kind = self.kind
        if kind == "string":
            if not isinstance(value, str):
                raise CodecError(f"expected a text, got {value!r}")
            return encode_string(value, self.size)
        if kind == "enum":
            if not isinstance(value, str) or value not in self._by_word:
                raise CodecError(
                    f"expected one of {', '.join(w for w, _ in self.words)}, got {value!r}"
                )
            return [self._by_word[value]]
        if kind == "bool":
            if value not in (0, 1) or isinstance(value, str):
                raise CodecError(f"expected a boolean, got {value!r}")
            return [int(value)]
        if isinstance(value, str) or not isinstance(value, int | float):
            raise CodecError(f"expected a number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise CodecError(f"{value!r} cannot be sent: only finite numbers are allowed")
        if kind == "float32":
            scaled = value / self.scale if self.scale != 1.0 else value
            return encode_float32(float(scaled), self.word_order)
        raw = value / self.scale if self.scale != 1.0 else value
        if isinstance(raw, float):
            rounded = round(raw)
            if self.scale == 1.0 and rounded != raw:
                raise CodecError(f"expected a whole number, got {value!r}")
            raw = rounded
        return encode_int(int(raw), kind, self.word_order)

    def decode_at(self, registers: Sequence[int], offset: int) -> Value:
        """The value in ``registers[offset : offset + size]``."""
        try:
            return self._decode(registers, offset)
        except CodecError as exc:
            raise CodecError(f"{self.label}: {exc}") from None

    def decode(self, registers: Sequence[int]) -> Value:
        """The value in ``registers`` (exactly this field's registers)."""
        if len(registers) != self.size:
            raise CodecError(f"{self.label}: expected {self.size} registers, got {len(registers)}")
        return self.decode_at(registers, 0)

    def _decode(self, registers: Sequence[int], offset: int) -> Value:
        kind = self.kind
        if kind == "string":
            return decode_string(registers[offset : offset + self.size])
        if kind == "enum":
            raw = registers[offset]
            word = self._by_wire.get(raw)
            if word is None:
                allowed = ", ".join(f"{wire} {w}" for w, wire in self.words)
                raise CodecError(f"{raw} is not a known value ({allowed})")
            return word
        if kind == "bool":
            raw = registers[offset]
            if raw > 1:
                raise CodecError(f"{raw} is not a boolean (0 or 1)")
            return bool(raw)
        if kind == "float32":
            number = decode_float32(registers, offset, self.word_order)
            return number if self.scale == 1.0 else round(number * self.scale, 12)
        integer = decode_int(registers, offset, kind, self.word_order)
        if self.scale == 1.0:
            return integer
        return round(integer * self.scale, self._decimals)


@dataclass(frozen=True, slots=True)
class BlockCodec:
    """Fields read or written together. An input block is read in one request from
    ``start`` for ``count`` registers."""

    name: str
    start: int
    count: int
    fields: tuple[FieldCodec, ...]

    @classmethod
    def of(cls, name: str, fields: Iterable[FieldCodec]) -> BlockCodec:
        ordered = tuple(sorted(fields, key=lambda f: f.address))
        if not ordered:
            return cls(name, 0, 0, ())
        start = ordered[0].address
        return cls(name, start, max(f.end for f in ordered) - start, ordered)

    def field(self, name: str) -> FieldCodec:
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise KeyError(f"block {self.name} has no field {name!r}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def decode(self, registers: Sequence[int]) -> dict[str, Value]:
        """Every field, from the registers of the whole block (``count`` of them)."""
        if len(registers) != self.count:
            raise CodecError(
                f"block {self.name}: expected {self.count} registers, got {len(registers)}"
            )
        start = self.start
        return {f.name: f.decode_at(registers, f.address - start) for f in self.fields}

    def encode_runs(self, values: Mapping[str, Value]) -> list[tuple[int, list[int]]]:
        """``values`` (field name -> value, any subset of the fields) as runs of adjacent
        registers, ``[(address, registers), ...]``: one write request each."""
        runs: list[tuple[int, list[int]]] = []
        for f in self.fields:
            if f.name not in values:
                continue
            regs = f.encode(values[f.name])
            if runs and runs[-1][0] + len(runs[-1][1]) == f.address:
                runs[-1][1].extend(regs)
            else:
                runs.append((f.address, regs))
        return runs

    def runs(self) -> list[tuple[int, int]]:
        """The block's registers as runs of adjacent fields: ``[(address, count), ...]``."""
        spans: list[tuple[int, int]] = []
        for f in self.fields:
            if spans and spans[-1][0] + spans[-1][1] == f.address:
                spans[-1] = (spans[-1][0], spans[-1][1] + f.size)
            else:
                spans.append((f.address, f.size))
        return spans
