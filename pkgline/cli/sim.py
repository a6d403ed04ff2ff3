"""``pkgline sim``: a simulated line from a line configuration, until Ctrl-C or SIGTERM.

Thin: the line itself is :class:`simulators.line.SimulatedLine`. Exit codes: 0 stopped on
request; 1 a server cannot listen (its address is taken); 2 the configuration is missing,
invalid, or simulates no tool.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from drivers.pki import PkiError
from pkgline.cli.common import LogLevel, LogLevelOption, err, marked, out, usage_error
from pkgline.config import ConfigError, load_line_config

if TYPE_CHECKING:  # imported when the command runs: other commands need no asyncua or pymodbus
    from simulators.line import SimulatedLine

EXIT_CANNOT_LISTEN = 1

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        help="The line configuration (line.toml; see deploy/line.example.toml).",
        show_default=False,
    ),
]
TimeScaleOption = Annotated[
    float | None,
    typer.Option(
        "--time-scale",
        min=0,
        help="Multiply every tool's process times by this (0: instantaneous), overriding "
        "each tool's simulation.time_scale.",
        show_default=False,
    ),
]
RejectRateOption = Annotated[
    float | None,
    typer.Option(
        "--reject-rate",
        min=0,
        max=1,
        help="Chance (0-1) that a good site is rejected, for every tool, overriding each "
        "tool's simulation.reject_rate.",
        show_default=False,
    ),
]


def sim(
    config: ConfigOption,
    time_scale: TimeScaleOption = None,
    reject_rate: RejectRateOption = None,
    log_level: LogLevelOption = LogLevel.INFO,
) -> None:
    """Run the simulated tools of a line (those with a simulation table) on the endpoints
    the configuration names, print them, and run until Ctrl-C or SIGTERM."""
    try:
        line_config = load_line_config(config)
        from simulators.line import SimulatedLine

        line = SimulatedLine(line_config, time_scale=time_scale, reject_rate=reject_rate)
    except ConfigError as exc:
        message = str(exc)
        named = message if message.startswith(str(config)) else f"{config}: {message}"
        usage_error(named)
    if not line.tool_ids:
        usage_error(f"{config}: no tool has a [tools.simulation] table; nothing to simulate")
    from pkgline.logs import configure_logging

    configure_logging(log_level.value)  # the simulators' and libraries' lines, as `serve` logs its
    try:
        asyncio.run(_run(line))
    except (PkiError, ConfigError) as exc:  # the simulators' certificate, a credentials file
        usage_error(f"{config}: {exc}")
    except OSError as exc:
        err.print(marked("error:", "bold red", str(exc)))
        raise typer.Exit(EXIT_CANNOT_LISTEN) from None


async def _run(line: SimulatedLine) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with line:  # a signal during start-up stops the line as soon as it is up
            _print_endpoints(line)
            await stop.wait()
            out.print("stopping the simulated line")
    finally:
        for signum in signals:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)


def _print_endpoints(line: SimulatedLine) -> None:
    table = Table(title=f"Simulated line {line.config.name}", box=box.SIMPLE_HEAD)
    for name in ("tool", "class", "transport", "address", "object"):
        table.add_column(name, overflow="fold")
    table.add_column("time scale", justify="right")
    for endpoint in line.endpoints():
        table.add_row(
            endpoint.tool_id,
            endpoint.equipment_class.value,
            endpoint.transport,
            endpoint.address,
            f"Tools/{endpoint.object_name}" if endpoint.object_name else "",
            f"{line.tool(endpoint.tool_id).settings.time_scale:g}",
        )
    out.print(table)  # into a pipe or the journal: whole (pkgline.cli.common.PIPE_WIDTH)
    real = [tool.id for tool in line.config.tools if tool.simulation is None]
    if real:
        out.print(f"not simulated (no simulation table): {', '.join(real)}")
    pki = line.config.security.simulator_pki
    if pki is not None and any(line.secure_endpoints()):
        out.print(
            f"secure OPC UA endpoints, certificate {pki}/own/certs/cert.der: give it to the "
            f"controller (`pkgline pki trust`), and trust the controller's in {pki}/trusted/certs"
        )
    out.print(
        f"simulated line {line.config.name} is running: {len(line.tool_ids)} tools; "
        "Ctrl-C or SIGTERM stops it"
    )
