"""Page sizes of the lists that the CLI and the API share, in a module that imports nothing:
a CLI command declares its options with them before it knows whether it runs on the
database or through a server."""

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
