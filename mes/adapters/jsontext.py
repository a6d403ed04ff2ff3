"""Stored JSON text read back: orjson, with the check below two to six times faster than
the standard library (small texts to large), and the standard library for what orjson
refuses or reads otherwise, so every stored value still reads as it did: NaN and the
infinities (``json.dumps`` writes them; orjson refuses them) and integers past 64 bits
(orjson reads them as floats, losing digits: text with a run of 19 digits or more goes to
the standard library).

Every engine reads its JSON columns with :func:`loads` (``create_engine``'s
``json_deserializer``); values are still written by the standard library's ``json.dumps``,
whose text (and its NaN) the rows already hold."""

from __future__ import annotations

import json
from typing import Any

import orjson

_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19
"""-(2**63) - 1 has 19 digits (2**64, 20); ``json.dumps`` writes a float with at most 17.
Found in the text with every digit made 0 (a search by regular expression took longer than
the standard library's parse)."""


def loads(stored: str) -> Any:
    """``stored`` JSON text as Python values, as ``json.loads`` gives them; anything but text
    goes to ``json.loads`` (SQLAlchemy's SQLite JSON type relies on its TypeError for a
    number that SQLite stored as a number)."""
    if isinstance(stored, str) and _LONG_NUMBER not in stored.encode().translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(stored)
        except orjson.JSONDecodeError:
            pass
    return json.loads(stored)
