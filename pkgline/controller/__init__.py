"""The line controller (``pkgline serve``): joins the lot tracker and the equipment.

:mod:`~pkgline.controller.line` owns the tools of one line controller and dispatches lots to
them; :mod:`~pkgline.controller.runner` runs one tool; :mod:`~pkgline.controller.translate`
and :mod:`~pkgline.controller.dispatch` are the pure rules between the two worlds.
"""

HEARTBEAT_S = 5.0
"""How often a line controller records its heartbeat (and its status). Here, apart from
:mod:`~pkgline.controller.line`, because the CLI reads it (a controller is stale after three
missed heartbeats) without importing the controller."""

STALE_AFTER_S = 3 * HEARTBEAT_S
"""A line controller whose last heartbeat is older than this is taken for not running: the
CLI shows it so, and another controller may take its line."""
