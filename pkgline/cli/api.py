"""``pkgline api``: the pkgline server, a unit of its own beside the line controller
(deploy/pkgline-api.service; docs/api.md, docs/architecture.md for why it is apart)."""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import structlog
import typer

from pkgline.cli.common import (
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    DbOption,
    LogLevel,
    LogLevelOption,
    err,
    marked,
)

if TYPE_CHECKING:
    from mes.adapters.database import DatabaseTimeouts
    from mes.domain.signatures import SignaturePolicy
    from pkgline.config import ApiConfig

log = structlog.get_logger("pkgline.api")


def api(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="The line configuration (line.toml): [api], database."),
    ] = None,
    db: DbOption = None,
    socket: Annotated[
        Path | None,
        typer.Option("--socket", help="The Unix socket to serve on (default: [api] socket)."),
    ] = None,
    http_port: Annotated[
        int | None,
        typer.Option(
            "--http-port",
            min=1,
            max=65535,
            help="Also serve plain HTTP on 127.0.0.1:PORT, for a browser on this host (the "
            "operator station: /station/; default: [api.http]).",
        ),
    ] = None,
    log_level: LogLevelOption = LogLevel.INFO,
    print_openapi: Annotated[
        bool, typer.Option("--print-openapi", help="Print the OpenAPI document and exit.")
    ] = False,
) -> None:
    """Run the pkgline server: the lot operations over HTTP on a Unix socket (local users,
    known by their OS account) and, when configured, HTTPS and plain HTTP on loopback (the
    operator station's pages are at /station/ on either)."""
    if print_openapi:
        import json

        from pkgline.api.app import openapi_document

        typer.echo(json.dumps(openapi_document(), indent=2, ensure_ascii=False))
        return
    from pkgline.config import ApiConfig, ConfigError, load_line_config
    from pkgline.logs import configure_logging

    database: str | None = None
    timeouts = None
    api_config = ApiConfig()
    policy = None
    if config is not None:
        try:
            line = load_line_config(config)
        except ConfigError as exc:
            err.print(marked("error:", "bold red", str(exc)))
            raise typer.Exit(EXIT_USAGE) from None
        api_config, database, timeouts = line.api, line.database, line.database_timeouts
        policy = line.signatures.policy()
    if socket is not None:
        api_config = api_config.model_copy(update={"socket": socket.absolute()})
    if http_port is not None:
        from pkgline.config import LoopbackHttpConfig

        api_config = api_config.model_copy(update={"http": LoopbackHttpConfig(port=http_port)})
    configure_logging(log_level.value)
    from mes.adapters.database import DatabaseUrlError, usable_url
    from pkgline.bootstrap import resolve_url

    try:
        usable_url(resolve_url(db or database))  # a URL no driver takes: before anything starts
    except DatabaseUrlError as exc:
        err.print(marked("error:", "bold red", str(exc)))
        raise typer.Exit(EXIT_USAGE) from None
    code = asyncio.run(
        _run(api_config, db or database, timeouts.timeouts() if timeouts else None, policy)
    )
    raise typer.Exit(code)


async def _run(
    config: ApiConfig,
    url: str | None,
    timeouts: DatabaseTimeouts | None,
    policy: SignaturePolicy | None = None,
) -> int:
    from mes.adapters.database import DEFAULT_TIMEOUTS, display_url
    from mes.adapters.errors import DatabaseUnavailable, classify
    from mes.adapters.schema import SchemaMismatch
    from pkgline.api.server import ApiError, open_state, serve_api
    from pkgline.bootstrap import resolve_url
    from pkgline.systemd import Notifier

    limits = timeouts or DEFAULT_TIMEOUTS
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    where = display_url(resolve_url(url))
    with Notifier.from_environment() as notifier:
        try:
            lifetime = timedelta(hours=config.session_hours)
            async with open_state(
                url, timeouts=limits, session_lifetime=lifetime, signatures=policy
            ) as state:
                log.info("database", url=where)
                await serve_api(state, config, stop, notifier=notifier)
        except SchemaMismatch as exc:
            log.error("refusing to start", database=where, reason=str(exc))
            return EXIT_UNAVAILABLE
        except ApiError as exc:
            log.error("refusing to start", reason=str(exc))
            return EXIT_USAGE
        except Exception as exc:
            found = classify(exc)
            if isinstance(found, DatabaseUnavailable):
                log.error(
                    "refusing to start: the database is not usable",
                    database=where,
                    reason=found.reason,
                )
                return EXIT_UNAVAILABLE
            raise
    return 0
