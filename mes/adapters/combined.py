"""Several SELECTs sent to PostgreSQL as one statement: one round trip where they would take
one each (:class:`mes.adapters.driver.FetchAll`, the reads of a :class:`mes.ports.Together`).

Each statement becomes a column of one row, an array of its rows as anonymous records
(``ARRAY(SELECT q FROM (...) AS q)``), which asyncpg decodes with the same codecs as the
statement's own columns: the values come back as they would from the statement alone. The
statements' ``$n`` parameters are numbered on, one after the other. An array keeps the order
its subquery gives, so a statement's ORDER BY holds. At most :data:`MAX_COMBINED` reads go
in one statement.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

_PARAMETER = re.compile(r"\$(\d+)")

MAX_COMBINED = 100
"""The most reads one statement combines; more go as several, this many each. PostgreSQL
takes at most 1,664 columns in a select list, and a dispatch pass over hundreds of idle tools
reads four or five things a lot."""


@lru_cache(maxsize=256)
def combined_sql(statements: tuple[str, ...], counts: tuple[int, ...]) -> str:
    """One SELECT of ``statements`` (asyncpg's ``$n`` style; ``counts``: how many parameters
    each takes), each as an array column ``r0``, ``r1``, ...; the parameters of the second
    follow those of the first, and so on."""
    columns: list[str] = []
    offset = 0
    for i, (sql, count) in enumerate(zip(statements, counts, strict=True)):
        shifted = _PARAMETER.sub(_shift(offset), sql) if offset else sql
        columns.append(f"ARRAY(SELECT q FROM ({shifted}) AS q) AS r{i}")
        offset += count
    return "SELECT " + ", ".join(columns)


def _shift(offset: int) -> Callable[[re.Match[str]], str]:
    def renumber(match: re.Match[str]) -> str:
        return f"${int(match.group(1)) + offset}"

    return renumber
