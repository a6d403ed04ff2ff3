"""``pkgline serve``: the line controller daemon (run it under systemd: deploy/pkgline.service)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import structlog
import typer

from mes.adapters.database import create_engine, display_url
from mes.adapters.schema import SchemaMismatch, require_current_schema
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.equipment import EquipmentService
from mes.service import LotService
from pkgline.bootstrap import flow_library, resolve_url
from pkgline.cli.common import EXIT_UNAVAILABLE, EXIT_USAGE, DbOption, err
from pkgline.config import ConfigError, LineConfig, load_line_config
from pkgline.controller.line import (
    LineController,
    connections_needed,
    freeze_startup_objects,
)
from pkgline.events.service import event_relay, running_relay
from pkgline.logs import configure_logging
from pkgline.systemd import Notifier

log = structlog.get_logger("pkgline.serve")


def serve(
    config: Annotated[Path, typer.Option("--config", help="The line configuration (line.toml).")],
    db: DbOption = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the line controller: drive this line's tools through each lot's flow."""
    try:
        line = load_line_config(config)
    except ConfigError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    configure_logging(log_level)
    url = resolve_url(db or line.database)
    try:
        code = asyncio.run(_serve(line, url))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        code = 1
    raise typer.Exit(code)


async def _serve(line: LineConfig, url: str) -> int:
    from drivers.factory import DriverFactory  # pymodbus and asyncua: only for this command

    notifier = Notifier.from_environment()
    # The event relay's two connections (its reads and lock, its marks) come on top.
    engine = create_engine(url, pool_size=connections_needed(line) + (2 if line.events else 0))
    drivers = DriverFactory()
    try:
        try:
            await require_current_schema(engine)
        except SchemaMismatch as exc:
            log.error("refusing to start", database=display_url(url), reason=str(exc))
            return EXIT_UNAVAILABLE
        factory = SqlUnitOfWorkFactory(engine)
        lots = LotService(factory, flow_library())
        equipment = EquipmentService(factory)
        relay = event_relay(line, engine, equipment)
        try:
            controller = LineController(
                line,
                lots,
                equipment,
                drivers.create_all(line.tools),
                notifier=notifier,
                before_ready=freeze_startup_objects,
                status_of_parts=[relay.status_line] if relay else [],
            )
        except ConfigError as exc:
            log.error("refusing to start", reason=str(exc))
            return EXIT_USAGE
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, controller.request_stop)
        log.info("database", url=display_url(url))
        async with running_relay(relay):
            await controller.run()
        return 0
    finally:
        await drivers.aclose()
        await engine.dispose()
        notifier.close()
