"""Stored JSON read back by orjson reads as the standard library reads it, what orjson refuses
included (mes.adapters.jsontext)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mes.adapters import jsontext

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 10, max_value=2**80)
    | st.integers(min_value=-(2**80), max_value=-(2**63) + 10)
    | st.floats()
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@given(JSON_VALUES)
def test_what_json_dumps_wrote_reads_as_json_loads_reads_it(value: object) -> None:
    stored = json.dumps(value)
    assert _same(jsontext.loads(stored), json.loads(stored))


@pytest.mark.parametrize(
    "stored",
    [
        '{"t": NaN}',
        "[Infinity, -Infinity]",
        str(2**70),
        str(2**64),
        str(-(2**63) - 1),
        '{"a": 1, "a": 2}',
        '"\\ud83d\\ude00"',
    ],
)
def test_what_orjson_refuses_or_reads_otherwise_is_read_by_the_standard_library(
    stored: str,
) -> None:
    assert _same(jsontext.loads(stored), json.loads(stored))


def test_text_that_is_not_json_is_refused() -> None:
    with pytest.raises(ValueError):
        jsontext.loads("{not json")


@pytest.mark.parametrize("stored", [3.5, 7, None])
def test_what_is_not_text_fails_as_the_standard_library_fails(stored: object) -> None:
    """SQLAlchemy's SQLite JSON type gives back, as it is, a number SQLite stored as one:
    it relies on json.loads's TypeError."""
    with pytest.raises(TypeError):
        jsontext.loads(stored)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        json.loads(stored)  # type: ignore[arg-type]
