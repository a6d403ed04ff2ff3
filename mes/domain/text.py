"""Free text that people give (a reason, a note, a name, a signature's meaning): one line
of printable characters.

A reason is stored in the history and printed by the CLI, the station and every report
that reads it. A control character in it (an escape sequence, a carriage return, a
newline) would reach whoever prints it: a terminal that takes ``ESC [2J`` clears the
screen, a carriage return overwrites the line it is on, a newline makes a fake history
row, and a right-to-left override reverses what the reader sees. Such text is refused
where it comes in, saying which character and where, and nothing is changed.

Text a tool sends (an alarm text) is not refused, which would lose the tool's word (and the
hold it causes): the line controller makes it printable where it takes it (:func:`printable`).
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime

from mes.domain.errors import InvalidInput

_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
"""Marks and overrides that reorder what a reader sees (Unicode TR 9), the "trojan source"
characters."""


def _unprintable(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI_CONTROLS


_FILLERS = frozenset("\u034f\u115f\u1160\u3164\uffa0")
"""Letters and marks that draw nothing (the combining grapheme joiner, the Hangul fillers)."""


def blank(value: str) -> bool:
    """True when ``value`` shows nothing: only blanks and characters that draw nothing, the
    format characters (zero-width space, zero-width joiner, word joiner, byte order mark, soft
    hyphen) and fillers. A reason, a meaning or a printed name made of them alone would be
    recorded as given while the reader sees none."""
    return all(
        char.isspace() or unicodedata.category(char) == "Cf" or char in _FILLERS for char in value
    )


def _name(char: str) -> str:
    code = f"U+{ord(char):04X}"
    name = unicodedata.name(char, "")
    if not name and unicodedata.category(char) == "Cc":
        name = _C0_NAMES.get(ord(char), "control character")
    return f"{code} ({name.lower()})" if name else code


_C0_NAMES = {
    0x00: "null",
    0x07: "bell",
    0x08: "backspace",
    0x09: "tab",
    0x0A: "line feed",
    0x0B: "vertical tab",
    0x0C: "form feed",
    0x0D: "carriage return",
    0x1B: "escape",
    0x7F: "delete",
}


TEXT_MAX = 2000
"""The longest one-line text kept (a reason, a meaning, a description): what the API's
bodies take too."""


def one_line(value: str, what: str, *, lot_id: str | None = None) -> str:
    """``value`` without its surrounding blanks, refused (InvalidInput) if a character in it
    is a control character, a line or paragraph separator or a bidirectional control, or if
    it is longer than :data:`TEXT_MAX` characters; empty when it shows nothing
    (:func:`blank`), so that a caller that needs a text refuses it as it refuses ``""``."""
    text = value.strip()
    if len(text) > TEXT_MAX:
        raise InvalidInput(
            f"{what} is at most {TEXT_MAX} characters (got {len(text)}); shorten it",
            lot_id=lot_id,
        )
    for at, char in enumerate(text, start=1):
        if _unprintable(char):
            raise InvalidInput(
                f"{what} is one line of printable text: character {at} is {_name(char)}; "
                "write it without control characters (no tab, newline or escape)",
                lot_id=lot_id,
            )
    return "" if blank(text) else text


def optional_line(value: str | None, what: str, *, lot_id: str | None = None) -> str | None:
    """:func:`one_line` of a text that may be left out: None or blank (:func:`blank`) is
    None."""
    if value is None or blank(value):
        return None
    return one_line(value, what, lot_id=lot_id)


def printable(value: str) -> str:
    """``value`` with each character :func:`one_line` refuses replaced by U+FFFD, for text
    that must be kept though it is not clean (what a tool sent)."""
    if value.isprintable():
        return value
    return "".join("\ufffd" if _unprintable(char) else char for char in value)


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``1 signature``, ``2 signatures``: a number and its noun, as a message says them
    (``plural`` where it is not ``singular`` + s)."""
    return f"{count:,} {singular if count == 1 else plural or singular + 's'}"


def utc_stamp(at: datetime, *, seconds: bool = False) -> str:
    """``at`` as the lot tracker words it in a message: UTC, said so, the year in four
    digits (``2027-01-31 13:00 UTC``)."""
    utc = at.astimezone(UTC) if at.tzinfo is not None else at
    clock = f"{utc:%H:%M:%S}" if seconds else f"{utc:%H:%M}"
    return f"{utc.year:04d}-{utc:%m-%d} {clock} UTC"
