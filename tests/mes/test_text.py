"""Free text people give is one printable line (mes.domain.text); what a tool sends is made
printable instead of refused."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mes.domain.common import require_reason
from mes.domain.errors import InvalidInput
from mes.domain.signatures import check_meaning
from mes.domain.text import blank, one_line, optional_line, printable

BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def _refused(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in BIDI


def _draws_nothing(text: str) -> bool:
    return all(
        c.isspace() or unicodedata.category(c) == "Cf" or c in "\u034f\u115f\u1160\u3164\uffa0"
        for c in text
    )


@given(st.text(max_size=40))
def test_one_line_refuses_exactly_the_unprintable(text: str) -> None:
    stripped = text.strip()
    if any(_refused(c) for c in stripped):
        with pytest.raises(InvalidInput, match="one line of printable text: character"):
            one_line(text, "a reason")
    else:
        assert one_line(text, "a reason") == ("" if _draws_nothing(stripped) else stripped)


@given(st.text(max_size=40))
@example("\xad")  # a soft hyphen alone draws nothing: blank (found by a full run)
def test_printable_text_is_always_taken_and_keeps_its_length(text: str) -> None:
    clean = printable(text)
    assert len(clean) == len(text)
    stripped = clean.strip()
    assert one_line(clean, "an alarm text") == ("" if _draws_nothing(stripped) else stripped)
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


@pytest.mark.parametrize(
    "text",
    [
        "\u200b",  # zero-width space
        "\ufeff",  # byte order mark (zero-width no-break space)
        " \u2060\u00ad\u200b ",  # word joiner, soft hyphen
        "\u200c\u200d",  # zero-width non-joiner and joiner
        "\u3164",  # Hangul filler
        "\u034f",  # combining grapheme joiner
    ],
)
def test_a_text_that_draws_nothing_is_blank(text: str) -> None:
    """A reason, a signature's meaning or a printed name of zero-width characters alone was
    taken as given (the API probe held a lot with reason U+200B, released it signed with the
    meaning U+200B, and added a user whose printed name was U+200B): it is blank, so every
    text that must be given refuses it as it refuses an empty one."""
    assert blank(text)
    assert one_line(text, "a reason") == ""
    assert optional_line(text, "a reason") is None
    with pytest.raises(InvalidInput, match="needs a reason"):
        require_reason(text, "a hold", "L-1")
    with pytest.raises(InvalidInput, match="needs its meaning"):
        check_meaning(text)


def test_text_with_a_zero_width_character_among_visible_ones_is_kept() -> None:
    """Joiners belong inside words of some scripts (and emoji): only a text of them alone is
    blank."""
    for text in ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "a\u200bb", "\u0301"):
        assert not blank(text)
        assert one_line(text, "a reason") == text


def test_a_count_says_its_noun_in_the_singular_for_one() -> None:
    from mes.domain.text import counted

    assert counted(1, "signature") == "1 signature"
    assert counted(0, "signature") == "0 signatures"
    assert counted(2, "entry", "entries") == "2 entries"
    assert counted(1_000, "job") == "1,000 jobs"
