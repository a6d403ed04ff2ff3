"""The lot tracker's bounds on what a command gives, for its options (typer ``min``/``max``)
and its own parsing (sites): checked before anything is sent, so that a value out of range
is the same usage error (exit 2) in direct mode and through a server, whose API bounds its
bodies by the same constants. They are the lot tracker's (mes.domain), repeated in a module
that imports nothing: a command through a server imports no mes (tests/test_imports.py);
tests/cli/test_bounds_cli.py checks that they are the lot tracker's."""

MAX_CARRIERS = 100
"""Carriers of a lot (``lot start --carriers``, those ``lot split`` names): 1 to this
(mes.domain.model.MAX_CARRIERS)."""
MAX_SITE_ROWS = 128
"""Site rows of a carrier (``lot start --rows``, a site's ROW): 1 to this
(mes.domain.model.MAX_SITE_ROWS)."""
MAX_SITE_COLS = 128
"""Site columns of a carrier (``lot start --cols``, a site's COL): 1 to this
(mes.domain.model.MAX_SITE_COLS)."""
MIN_PRIORITY, MAX_PRIORITY = 1, 9
"""A lot's priority, most urgent first (mes.domain.model.PRIORITY_RANGE)."""
MAX_CLOCK_MINUTES = 1_000_000
"""A material lot's thaw time and floor life (``material add --thaw-hours``,
``--floor-life-hours``), in minutes: at most this (mes.domain.materials.MAX_CLOCK_MINUTES).
"""
MAX_LIFE = 10**12
"""A durable's life (``durable add --life``): 1 to this (mes.domain.durables.MAX_LIFE)."""
