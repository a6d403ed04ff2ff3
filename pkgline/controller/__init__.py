"""The line controller (``pkgline serve``): joins the lot tracker and the equipment.

:mod:`~pkgline.controller.line` owns the tools of one line controller and dispatches lots to
them; :mod:`~pkgline.controller.runner` runs one tool; :mod:`~pkgline.controller.translate`
and :mod:`~pkgline.controller.dispatch` are the pure rules between the two worlds.
"""

HEARTBEAT_S = 5.0
"""How often a line controller records its heartbeat (and its status). Here, apart from
:mod:`~pkgline.controller.line`, because the CLI reads it (a controller is stale after three
missed heartbeats) without importing the controller."""
