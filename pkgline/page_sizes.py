"""Page sizes of the lists that the CLI and the API share, and the shape of a page's answer,
in a module that imports nothing: a CLI command declares its options with them before it
knows whether it runs on the database or through a server."""

from typing import Any

LOT_PAGE = 50
"""Lots per page (``lot list`` as a table, ``GET /lots``): most urgent first."""
MAX_LOT_PAGE = 1000
"""The most one page holds (``lot list --json`` reads every lot this many at a time)."""
HISTORY_PAGE = 50
"""History entries per page (``lot history``, ``GET /history``)."""
MAX_HISTORY_PAGE = 10000
FEED_PAGE = 100
"""Events of the feed per page (``events list``, ``GET /events``): oldest first, by id."""
MAX_FEED_PAGE = 10000
MATERIAL_PAGE = 100
"""Material lots per page (``material list``, ``GET /materials``): by id."""
MAX_MATERIAL_PAGE = 1000
"""The most one page holds (``material list --json`` reads every lot this many at a time)."""
DURABLE_PAGE = 100
"""Durables per page (``durable list``, ``GET /durables``): by id."""
MAX_DURABLE_PAGE = 1000
"""The most one page holds (``durable list --json`` reads every durable this many at a time)."""
MAX_CURSOR = 2**63 - 1
"""The largest id or seq a cursor (``--after``, ``?after=``) may name: the stores keep them
as 64-bit integers, and a larger one is refused as the malformed value it is."""
SHOW_HISTORY = 20
"""History entries a ``show`` prints by default (``lot show``, ``durable show``, ``material
show``: ``--history N`` or ``all`` for more; ``--json`` has every one)."""
SHOW_LOTS = 10
"""Lots a durable's or a material lot's ``show`` names by default (the last it served)."""


def page_answer(
    items: list[dict[str, Any]], name: str, key: str, total: int, more: bool, exact: bool
) -> dict[str, Any]:
    """A list's answer, in the CLI (``--json``) as in the API: ``{name: items, "total",
    "total_exact", "shown", "more", "next_after"}``. ``total`` is how many the filters
    select; ``total_exact`` false says more than that many (a count stops at
    :data:`mes.domain.paging.COUNTED_UP_TO`); the next page is the same request with
    ``after`` = ``next_after`` (the last item's ``key``), None on the last page."""
    return {
        name: items,
        "total": total,
        "total_exact": exact,
        "shown": len(items),
        "more": more,
        "next_after": items[-1][key] if more and items else None,
    }
