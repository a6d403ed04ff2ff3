"""The application factory: the routes, the refusal handlers and the body limit around the
services that :mod:`pkgline.api.server` (or a test) opened."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from pkgline import __version__
from pkgline.api import errors, lots
from pkgline.api.auth import ApiState
from pkgline.api.defaults import MAX_BODY_BYTES
from pkgline.api.limits import BodyLimit

DESCRIPTION = """The pkgline server: the lot tracker's reads and operations, with the same
rules, service layer, JSON and refusals as the `pkgline` CLI (docs/api.md). Local clients on
the Unix socket are known by their OS account; remote ones send `Authorization: Bearer`
with an API key. Refusals: 401 credentials, 403 role, 404 unknown, 409 state or conflict,
413 body too large, 422 invalid value, 503 database unavailable; the body says what was
refused, why, the claim and what is allowed."""


def create_app(state: ApiState, *, max_body_bytes: int = MAX_BODY_BYTES) -> Any:
    """The ASGI application serving ``state`` (wrapped in the body limit)."""
    app = FastAPI(
        title="pkgline",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )
    app.state.pkgline = state
    errors.install(app)
    app.include_router(lots.router)

    @app.get("/health", tags=["server"], summary="The server answers (no credentials needed)")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    return app
