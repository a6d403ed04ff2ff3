"""Free text people give is one printable line (mes.domain.text); what a tool sends is made
printable instead of refused."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mes.domain.errors import InvalidInput
from mes.domain.text import one_line, optional_line, printable

BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def _refused(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in BIDI


@given(st.text(max_size=40))
def test_one_line_refuses_exactly_the_unprintable(text: str) -> None:
    stripped = text.strip()
    if any(_refused(c) for c in stripped):
        with pytest.raises(InvalidInput, match="one line of printable text: character"):
            one_line(text, "a reason")
    else:
        assert one_line(text, "a reason") == stripped


@given(st.text(max_size=40))
def test_printable_text_is_always_taken_and_keeps_its_length(text: str) -> None:
    clean = printable(text)
    assert len(clean) == len(text)
    assert one_line(clean, "an alarm text") == clean.strip()
    assert all(a == b or _refused(b) for a, b in zip(clean, text, strict=True))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("bad\x1b[2J", "character 4 is U+001B (escape)"),
        ("a\tb", "character 2 is U+0009 (tab)"),
        ("x\x00", "character 2 is U+0000 (null)"),
        ("x\x85y", "character 2 is U+0085"),
        ("x\u2028y", "character 2 is U+2028 (line separator)"),
        ("\u202eabc", "character 1 is U+202E (right-to-left override)"),
    ],
)
def test_the_refusal_names_the_character_and_where(text: str, says: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        one_line(text, "a reason", lot_id="L-1")
    assert says in refused.value.message
    assert refused.value.lot_id == "L-1"


def test_blank_and_surrounding_blanks() -> None:
    assert one_line("  held for voids \n", "a reason") == "held for voids"
    assert optional_line(None, "a reason") is None
    assert optional_line("  ", "a reason") is None
    assert optional_line(" ok ", "a reason") == "ok"
    assert one_line("température 250 °C, 日本語, emoji 🙂", "a reason")


def test_a_count_says_its_noun_in_the_singular_for_one() -> None:
    from mes.domain.text import counted

    assert counted(1, "signature") == "1 signature"
    assert counted(0, "signature") == "0 signatures"
    assert counted(2, "entry", "entries") == "2 entries"
    assert counted(1_000, "job") == "1,000 jobs"
