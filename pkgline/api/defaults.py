"""What the server and its clients agree on without importing the server (the CLI reads
these on its start-up path: standard library only)."""

from __future__ import annotations

DEFAULT_SOCKET = "/run/pkgline/api.sock"
"""The server's Unix socket (``[api] socket`` in line.toml): the CLI uses it by default when
it exists (deploy/pkgline-api.service creates /run/pkgline)."""

MAX_BODY_BYTES = 256 * 1024
"""The largest request body the server reads (``[api] max_body_kb``): a lot command's body is
a few hundred bytes; a track-out with every site of a large panel rejected is tens of KB."""

PRINCIPAL_HEADER = "pkgline-principal"
"""The response header naming who the server took the caller for (the CLI says so)."""

MAX_ANCHORS = 3000
"""Anchors one ``POST /audit/verify`` may name (each 64 characters: within the default body
limit of 256 KB); ``audit verify --anchors-from`` through the server sends more in parts."""
