"""``pkgline serve``: the line controller daemon (run it under systemd: deploy/pkgline.service)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import structlog
import typer

from drivers.errors import ConfigurationError
from mes.adapters.database import DatabaseUrlError, create_engine, display_url, usable_url
from mes.adapters.errors import DatabaseUnavailable, classify
from mes.adapters.health import DatabaseHealth
from mes.adapters.outbox import OutboxSignal
from mes.adapters.schema import SchemaMismatch, require_current_schema
from mes.domain.authority import CONTROLLER
from mes.domain.errors import LineHeld, ToolOwnedElsewhere
from pkgline.bootstrap import flow_library, load_versions, resolve_url, services_for
from pkgline.cli.common import (
    EXIT_CONFLICT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    DbOption,
    LogLevel,
    LogLevelOption,
    err,
    marked,
)
from pkgline.config import ConfigError, LineConfig, load_line_config
from pkgline.controller.line import (
    STOP_RESERVE_S,
    LineController,
    connections_needed,
    freeze_startup_objects,
)
from pkgline.events.service import event_relay, running_relay
from pkgline.logs import configure_logging
from pkgline.sparkplug.config import SparkplugError
from pkgline.systemd import Notifier

if TYPE_CHECKING:
    from pkgline.sparkplug.node import EdgeNode

log = structlog.get_logger("pkgline.serve")

CLOSE_S = 2.0
"""On the way out: how long closing the tools' connections, and the database's, may take
(within the reserve the controller leaves of its stop timeout)."""


def serve(
    config: Annotated[Path, typer.Option("--config", help="The line configuration (line.toml).")],
    db: DbOption = None,
    log_level: LogLevelOption = LogLevel.INFO,
) -> None:
    """Run the line controller: drive this line's tools through each lot's flow."""
    try:
        line = load_line_config(config)
    except ConfigError as exc:
        err.print(marked("error:", "bold red", str(exc)))
        raise typer.Exit(EXIT_USAGE) from None
    configure_logging(log_level.value)
    url = resolve_url(db or line.database)
    try:
        usable_url(url)  # a URL no driver takes is a usage error, before anything starts
    except DatabaseUrlError as exc:
        err.print(marked("error:", "bold red", str(exc)))
        raise typer.Exit(EXIT_USAGE) from None
    try:
        code = asyncio.run(_serve(line, url))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        code = 1
    raise typer.Exit(code)


def _edge_node(line: LineConfig) -> EdgeNode | None:
    """The Sparkplug B edge node of ``[sparkplug]``, if the line has one."""
    if line.sparkplug is None:
        return None
    from pkgline.sparkplug.node import EdgeNode  # aiomqtt and protobuf: only when configured

    tools = [(t.id, t.equipment_class) for t in line.tools]
    return EdgeNode(line.sparkplug, line.sparkplug.node_id(line.name), tools)


async def _serve(line: LineConfig, url: str) -> int:
    from drivers.factory import DriverFactory  # pymodbus and asyncua: only for this command

    notifier = Notifier.from_environment()
    # (The event relay has an engine of its own, on its own thread: pkgline.events.service.)
    engine = create_engine(
        url,
        pool_size=connections_needed(line),
        timeouts=line.database_timeouts.timeouts(),
    )
    drivers = DriverFactory()
    try:
        try:
            await require_current_schema(engine)
        except SchemaMismatch as exc:
            log.error("refusing to start", database=display_url(url), reason=str(exc))
            return EXIT_UNAVAILABLE
        except DatabaseUrlError as exc:  # settings the driver refused as it connected
            log.error("refusing to start", database=display_url(url), reason=str(exc))
            return EXIT_USAGE
        except Exception as exc:
            unavailable = _unavailable(exc)
            log.error(
                "refusing to start: the database is not usable",
                database=display_url(url),
                reason=unavailable.reason,
            )
            return EXIT_UNAVAILABLE
        # The controller logs an outage on its edges itself (with what it spools meanwhile):
        # the store's health only tells its STATUS line how long the database has been away.
        health = DatabaseHealth(log_edges=False)
        committed = OutboxSignal()  # the relay publishes the controller's moves at once
        # its identity, its role only
        services = services_for(engine, CONTROLLER, health=health, outbox=committed)
        lots, equipment = services.lots, services.equipment
        await load_versions(services, every=True)  # built once, for as long as it runs
        for difference in await services.flow_versions.drift(flow_library()):
            log.warning("flow files differ from the active version", detail=difference)
        relay = event_relay(
            line, url, equipment, committed, timeouts=line.database_timeouts.timeouts()
        )
        try:
            edge_node = _edge_node(line)
            controller = LineController(
                line,
                lots,
                equipment,
                drivers.create_all(line.tools),
                notifier=notifier,
                before_ready=freeze_startup_objects,
                feed=edge_node,
                database=health,
                status_of_parts=[relay.relay.status_line] if relay else [],
            )
        except (ConfigError, SparkplugError, ConfigurationError) as exc:
            # ConfigurationError: a tool's map file (its path:line, the tool's id)
            log.error("refusing to start", reason=str(exc))
            return EXIT_USAGE
        log.info("database", url=display_url(url))
        try:  # before the event feed connects as this line (its client id is the line's)
            await controller.claim_line()  # the start's first write
        except (LineHeld, DatabaseUnavailable) as exc:
            return _ended("refusing to start", exc, url)
        from pkgline.sparkplug.node import running

        async with running(edge_node), running_relay(relay):
            return await _run(controller, line, url)
    finally:
        await _close(drivers.aclose(), "the tools' connections")
        await _close(engine.dispose(), "the database connections")
        notifier.close()


async def _run(controller: LineController, line: LineConfig, url: str) -> int:
    """Run the controller until it is asked to stop (SIGTERM, SIGINT): 0 then, also when the
    stop had to cancel what hung; EXIT_UNAVAILABLE when the database fails it at start.
    SIGHUP (a closed terminal, a reload asked by habit) is logged and ignored."""
    loop = asyncio.get_running_loop()
    running = asyncio.create_task(controller.run(), name="line-controller")

    def stop() -> None:
        controller.request_stop()
        if not controller.ready.is_set():
            # Still starting (connecting, recovering), where the stop is not looked at: end
            # it now; what the recovery records meanwhile is finished as on any stop.
            running.cancel()
        # Whatever still waits at the stop's deadline is cancelled (run() keeps to it itself;
        # this is for a part that does not).
        loop.call_later(line.controller.stop_timeout_s - STOP_RESERVE_S + 1.0, running.cancel)

    def hang_up() -> None:
        # not a stop: systemd takes an exit by SIGHUP for a clean one and would not start
        # the controller again (found by the probe); nor a reload: the configuration is read
        # at start only
        log.warning(
            "SIGHUP ignored: the line controller reads its configuration at start only; "
            "restart it to apply a change (systemctl restart pkgline)"
        )

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    loop.add_signal_handler(signal.SIGHUP, hang_up)
    try:
        await running
    except asyncio.CancelledError:
        this = asyncio.current_task()
        if this is not None and this.cancelling():
            raise  # not the controller's cancellation: ours
        log.info("line controller stopped before it was ready, or at the stop's deadline")
    except (DatabaseUnavailable, LineHeld) as exc:  # LineHeld: taken over after a stall
        return _ended("line controller stopped", exc, url)
    except ToolOwnedElsewhere as exc:  # line.toml names another line's tool
        log.error("refusing to start: a tool of line.toml is another line's", reason=exc.message)
        return EXIT_USAGE
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    return 0


def _ended(what: str, exc: DatabaseUnavailable | LineHeld, url: str) -> int:
    """Log why the controller does not (or no longer) run, in one line; its exit code."""
    if isinstance(exc, LineHeld):  # one controller a line
        event = f"{what}: another controller drives the line"
        log.error(event, reason=exc.message)
        return EXIT_CONFLICT
    event = f"{what}: the database is not usable"
    log.error(
        event,
        database=display_url(url),
        kind=exc.kind,
        reason=exc.reason,
    )
    return EXIT_UNAVAILABLE


def _unavailable(exc: Exception) -> DatabaseUnavailable:
    """``exc`` from the start's first database call, as the store classifies it; a bug is
    raised as it is."""
    found = classify(exc)
    if isinstance(found, DatabaseUnavailable):
        return found
    raise exc


async def _close(closing: Awaitable[None], what: str) -> None:
    try:
        async with asyncio.timeout(CLOSE_S):
            await closing
    except TimeoutError:
        log.warning("stopping without closing them: no answer in time", what=what)
