"""How many rows a list counts beside its page. A list says how many rows its filters select
(``total``) and whether that count is exact (``total_exact``): the store counts up to
:data:`COUNTED_UP_TO` and stops, so that a list of a plant's months of history (millions of
entries) answers in bounded time; beyond it the total says "more than" that many, and the
rows themselves are paged as ever. Pure, no I/O."""

from __future__ import annotations

COUNTED_UP_TO = 10_000
"""The most rows a list's count reads: a total above it is given as "more than 10,000"
(``total`` = 10,000, ``total_exact`` false). Counting up to it costs a few milliseconds
along an index; counting 8 million history entries took 1 to 2 s (issue 20)."""


def bounded_total(counted: int) -> tuple[int, bool]:
    """``(total, exact)`` from a count that read at most ``COUNTED_UP_TO + 1`` rows: the
    count itself when it stayed within the bound, else the bound and False (more than it)."""
    if counted > COUNTED_UP_TO:
        return COUNTED_UP_TO, False
    return counted, True
