"""``pkgline demo``: the whole line on one machine, end to end, in under two minutes.

A fresh SQLite file, the packaged example line (every equipment class, Modbus and OPC UA) on
free loopback ports, and the real programs as child processes: ``pkgline sim`` (the simulated
tools) and ``pkgline serve`` (the line controller). One lot of each of the nine flows is
started; a live view follows them from the database until every lot is completed (or held,
scrapped, or out of time); then the controller and the simulators are stopped with SIGTERM and
a summary per lot is printed, with the commands to look further.

Nothing is left running, whatever happens: the children are stopped in ``finally`` (SIGTERM,
then SIGKILL), and on Linux the kernel sends them SIGTERM if the demo itself dies
(``PR_SET_PDEATHSIG``), so not even ``kill -9`` of the demo leaves an orphan. ``--keep`` is the
exception: the line stays up, for exploring, until you stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live
from rich.text import Text

from flows import Flow
from mes.domain.equipment import CONTROLLER_STOPPED, ToolRecord
from mes.domain.model import Lot, LotState
from mes.service import utc_now
from pkgline.bootstrap import Services, open_engine, open_services, seed_flow_versions
from pkgline.cli import demo_api
from pkgline.cli.common import err, marked, out, usage_error
from pkgline.cli.demo_run import (
    EXIT_INCOMPLETE,
    Demo,
    DemoFailed,
    print_station,
    server,
    start_api,
    start_line,
    stop_line,
    wait_for_controller,
)
from pkgline.cli.demo_view import (
    ENDED,
    live_view,
    lot_number,
    move_line,
    summary_table,
    where,
)
from pkgline.config import LineConfig, load_line_config
from pkgline.controller import STALE_AFTER_S
from pkgline.events.config import EventsConfig

EXAMPLE = "line.example.toml"
"""The example line, packaged with pkgline (deploy/line.example.toml links to it)."""
DEFAULT_DB = Path("pkgline-demo.db")
DEFAULT_TIME_SCALE = 0.05
"""Process times x this: a 4x8 carrier takes 0.05-0.3 s, a recipe setup 0.1-0.5 s."""
TIME_LIMIT_S = 110.0
"""At the default time scale; slower tools get as much more (:func:`time_limit_for`)."""
LOT_PREFIX = "DEMO-"
# One lot per flow, the longest routes most urgent (priority 1 is the most urgent): the line
# finishes soonest when the fan-out lots, which share the RDL cell, start first.
LOTS: tuple[tuple[str, int], ...] = (
    ("fo-metal-recon", 2),
    ("fo-organic-recon", 2),
    ("fo-organic-insulating", 3),
    ("fo-metal", 3),
    ("fo-organic", 3),
    ("fc-stack3-muf", 4),
    ("fc-stack-muf", 5),
    ("fc-heatsink-muf", 5),
    ("stiffener-bga", 6),
)
CARRIERS, SITE_ROWS, SITE_COLS = 2, 4, 8
DEMO_BROKER_PORT = 1883
REFRESH_S = 0.3
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# -- the command ------------------------------------------------------------------------------


def demo(
    db: Annotated[
        Path,
        typer.Option(
            "--db",
            help="The demo's SQLite file; an earlier demo database there is replaced.",
            dir_okay=False,
        ),
    ] = DEFAULT_DB,
    time_scale: Annotated[
        float,
        typer.Option("--time-scale", min=0, help="Process times of every simulated tool x this."),
    ] = DEFAULT_TIME_SCALE,
    reject_rate: Annotated[
        float | None,
        typer.Option(
            "--reject-rate",
            min=0,
            max=1,
            help="Chance that a good site is rejected at a step (default: the example line's, "
            "0.5-1 %).",
            show_default=False,
        ),
    ] = None,
    time_limit: Annotated[
        float | None,
        typer.Option(
            "--time-limit",
            min=5,
            help=f"Give up after this many seconds (default: {TIME_LIMIT_S:g} s at the default "
            "time scale, as many times more as the tools are slower).",
            show_default=False,
        ),
    ] = None,
    keep: Annotated[
        bool,
        typer.Option("--keep", help="Leave the simulated line and its controller running."),
    ] = False,
) -> None:
    """Run a simulated line end to end: one lot of each of the nine flows, with a live view,
    then a summary per lot."""
    started = time.monotonic()
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/", str(db)):  # a URL (Path folds its //)
        usage_error(
            f"--db {str(db)!r}: the demo runs on a SQLite file of its own; give the file's "
            "path (e.g. pkgline-demo.db), not a database URL"
        )
    from simulators.ports import PortRangeError, port_range

    try:
        port_range()  # where the simulated tools' ports are chosen from
    except PortRangeError as exc:
        usage_error(str(exc))
    database = db.expanduser().resolve()
    run = Demo(
        database=database,
        url=f"sqlite:///{database}",
        config_path=database,  # set once written
        config=_example_config(),
        time_scale=time_scale,
        reject_rate=reject_rate,
        keep=keep,
        started=started,
        deadline=started + (time_limit_for(time_scale) if time_limit is None else time_limit),
    )
    code, ran = 0, False
    try:
        code = asyncio.run(_demo(run))
        ran = True
    except DemoFailed as exc:
        err.print(Text.assemble(("error: ", "bold red"), exc.message))
        code = exc.code
    except (KeyboardInterrupt, asyncio.CancelledError):
        err.print("interrupted: stopping the line")
        code = EXIT_INTERRUPTED
    finally:
        # --keep keeps the line of a demo that ran, its lots finished or not (out of time,
        # held: they are there to look at); never one that failed or was interrupted
        kept = keep and ran
        for child in reversed(run.children):  # the controller first, then the simulators
            if not kept:
                child.kill()
        if not kept and run.config_path != database:
            run.config_path.unlink(missing_ok=True)
    if run.children and not kept:
        pids = ", ".join(str(c.pid) for c in run.children)
        out.print(f"nothing left running (child pids {pids} ended)")
    out.print(f"demo finished in {time.monotonic() - started:.1f} s")
    raise typer.Exit(code)


def time_limit_for(time_scale: float) -> float:
    """How long the demo waits for its lots at ``time_scale`` when no ``--time-limit`` is
    given: :data:`TIME_LIMIT_S` at the default scale or faster, as many times more as the
    tools are slower."""
    return TIME_LIMIT_S * max(1.0, time_scale / DEFAULT_TIME_SCALE)


def _example_config() -> LineConfig:
    example = resources.files("pkgline").joinpath(EXAMPLE)
    with resources.as_file(example) as path:
        return load_line_config(path)


async def _demo(run: Demo) -> int:
    task = asyncio.current_task()
    assert task is not None
    # Our own handlers: a demo started in the background by a shell inherits SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
    await _fresh_database(run)
    run.user = await demo_api.add_demo_user(run.url)
    _write_config(run)
    await start_line(run)
    async with open_services(run.url) as services:
        await wait_for_controller(run, services)
        await start_api(run)
        await _equip_line(run)
        await _start_lots(run, services)
        finished = await _follow(run, services)
        if not run.keep:
            await stop_line(run)
        lots = await services.lots.find(limit=1000)
    out.print(summary_table(lots, utc_now()))
    _print_next(run)
    return 0 if finished else EXIT_INCOMPLETE


# -- setting up ---------------------------------------------------------------------------------


def _not_the_demos(path: Path) -> str | None:
    """Why the file at ``path`` is not the demo's to replace (None: empty, or a pkgline
    database holding demo lots only; anything else is never replaced)."""
    if not path.is_file():
        return "is not a file"
    if path.stat().st_size == 0:
        return None
    try:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if "lots" not in tables:
                return "is not a pkgline database" if tables else None
            others = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM lots WHERE substr(id, 1, ?) != ? ORDER BY id LIMIT 4",
                    (len(LOT_PREFIX), LOT_PREFIX),
                )
            ]
    except sqlite3.Error as exc:
        return f"is not a database SQLite can read ({exc})"
    if not others:
        return None
    named = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
    return f"holds lots the demo did not start ({named})"


def _line_still_running(path: Path) -> str | None:
    """Why the demo database at ``path`` is still in use: a line controller of it has not
    recorded its stop and its heartbeat is fresh (a demo kept running, ``--keep``)."""
    try:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if "controllers" not in tables:
                return None
            rows = conn.execute("SELECT pid, heartbeat_at, status FROM controllers").fetchall()
    except sqlite3.Error:
        return None
    now = utc_now()
    for pid, heartbeat_at, status in rows:
        try:
            beat = datetime.fromisoformat(str(heartbeat_at)).replace(tzinfo=UTC)
        except ValueError:
            continue
        age_s = (now - beat).total_seconds()
        if status != CONTROLLER_STOPPED and age_s <= STALE_AFTER_S:
            return f"line controller pid {pid}, last heartbeat {max(age_s, 0):.0f} s ago"
    return None


async def _fresh_database(run: Demo) -> None:
    from mes.adapters.migrate import upgrade  # Alembic: only when migrating

    path = run.database
    if path.exists():
        why = _not_the_demos(path)
        if why is not None:
            raise DemoFailed(
                f"{path} {why}: the demo replaces only a database of its own; choose another "
                "--db, or remove the file if nothing in it is needed",
                EXIT_USAGE,
            )
        running = _line_still_running(path)
        if running is not None:
            raise DemoFailed(
                f"{path} is the database of a demo whose line is still running ({running}; "
                "kept with --keep): stop it first with the kill command that demo printed, or "
                "choose another --db",
                EXIT_USAGE,
            )
        out.print(f"database: {path} (the earlier demo database there is replaced)")
    else:
        out.print(f"database: {path}")
    # An earlier run's spool (killed while the database was busy) holds its tools' states:
    # written into the fresh database, they would be this run's.
    spooled = run.spool_dir / f"{run.config.name}.jsonl"
    for stale in (
        path,
        path.with_name(path.name + "-wal"),
        path.with_name(path.name + "-shm"),
        spooled,
    ):
        stale.unlink(missing_ok=True)
    async with open_engine(run.url) as engine:
        await upgrade(engine)
        await seed_flow_versions(engine)  # as db upgrade: the flows as approved version 1


def _write_config(run: Demo) -> None:
    from pkgline.security import secure_demo_line
    from simulators.line import with_free_ports, write_line_config

    config = demo_line(with_free_ports(run.config), run, _event_feed(run.config.name, run.run_id))
    # The secure configuration, as a line runs it: the controller and the simulators get
    # certificates of their own (kept next to the database) and trust each other's.
    config = secure_demo_line(config, run.database.with_suffix(".pki"))
    run.config_path = write_line_config(config, run.database.with_suffix(".line.toml"))
    run.config = config
    modbus = sum(1 for t in config.tools if t.endpoint.transport == "modbus")
    out.print(
        f"line {config.name}: {len(config.tools)} simulated tools of "
        f"{len({t.equipment_class for t in config.tools})} classes, {modbus} over Modbus TCP and "
        f"{len(config.tools) - modbus} over OPC UA, on free ports of 127.0.0.1 "
        f"({run.config_path.name}); time scale {run.time_scale:g}"
    )
    if config.events is not None:
        feed = config.events
        out.print(
            f"event feed: MQTT broker on 127.0.0.1:{DEMO_BROKER_PORT}, topics "
            f"{feed.root}/{feed.site}/{feed.area}/{config.name}/... (follow it while the demo runs: "
            f"pkgline events tail --config {run.config_path})"
        )


def demo_line(config: LineConfig, run: Demo, feed: EventsConfig | None) -> LineConfig:
    """The example line as ``run`` runs it: on its database, with its event feed (or none),
    and its controller's spool beside the database (a demo neither writes into another
    controller's spool nor reads one: :attr:`Demo.spool_dir`)."""
    controller = config.controller.model_copy(update={"spool_dir": run.spool_dir})
    return config.model_copy(update={"database": run.url, "events": feed, "controller": controller})


def demo_feed(line: str, run_id: str) -> EventsConfig:
    """The event feed of the run ``run_id`` to the broker on 127.0.0.1:1883, its MQTT client
    id (``pkgline-<line>-events-<run>``) and its topic root (``pkgline-demo-<run>``) its own:
    a broker closes a connection when another client connects with the same id, and two
    demos under one topic base would give each other's events the same ids, overwrite each
    other's retained lot and controller states, and one's will would say the other is
    offline."""
    return EventsConfig(
        url=f"mqtt://127.0.0.1:{DEMO_BROKER_PORT}",
        root=f"pkgline-demo-{run_id}",
        client_id=_run_client_id(line, "events", run_id),
    )


def _event_feed(line: str, run_id: str) -> EventsConfig | None:
    """:func:`demo_feed` if a broker answers on 127.0.0.1:1883, else none (said either
    way)."""
    feed = demo_feed(line, run_id)
    try:
        with socket.create_connection(("127.0.0.1", DEMO_BROKER_PORT), timeout=0.5):
            pass
    except OSError:
        out.print(
            f"event feed: no MQTT broker on 127.0.0.1:{DEMO_BROKER_PORT}; the line runs "
            "without one (its events wait in the outbox: pkgline events status)"
        )
        return None
    return feed


def _run_client_id(line: str, role: str, run_id: str) -> str:
    """An MQTT client id unique to the run ``run_id``: the default one and the run's id (the
    whole within MQTT's 64 characters the configuration allows)."""
    suffix = f"-{run_id}"
    return f"pkgline-{line}-{role}"[: 64 - len(suffix)] + suffix


async def _equip_line(run: Demo) -> None:
    """Through the server, as engineering and quality would before a shift: the tools'
    durables and material lots, a catalogue of reason codes, an SPC chart."""
    codes, chart = demo_api.REASON_CODES, demo_api.SPC_CHART
    try:
        equipped = await demo_api.equip_line(server(run), run.config.tools)
        await demo_api.add_reason_codes(server(run), codes)
        await demo_api.chart_spc(server(run), chart)
    except RuntimeError as exc:
        raise DemoFailed(str(exc)) from None
    out.print(
        f"equipped the line through the pkgline server: {equipped.durables} durables mounted "
        f"(capillaries, saw blades, mold chases, stencils, nozzles), {equipped.materials} "
        "material lots loaded (mold compound, die attach film, adhesive, solder balls, wire)"
    )
    out.print(
        "reason codes added through the pkgline server: hold "
        + ", ".join(c.code for c in codes if c.kind == "hold")
        + "; scrap "
        + ", ".join(c.code for c in codes if c.kind == "scrap")
        + " (pkgline reason list)"
    )
    out.print(
        f"SPC chart set through the pkgline server: {chart.step} {chart.value} on {chart.tool} "
        f"(center {chart.center:g}, sigma {chart.sigma:g}; each pass of a lot through {chart.step} adds "
        "a point)"
    )


async def _start_lots(run: Demo, services: Services) -> None:
    who = None
    for number, (flow, priority) in enumerate(LOTS, start=1):
        body = {
            "lot": f"{LOT_PREFIX}{number}",
            "flow": flow,
            "carriers": CARRIERS,
            "rows": SITE_ROWS,
            "cols": SITE_COLS,
            "priority": priority,
        }
        try:
            started, who = await demo_api.start_lot(server(run), body)
        except RuntimeError as exc:
            raise DemoFailed(str(exc)) from None
        lot = await services.lots.get(str(started["id"]))
        run.planned[lot.id] = planned_steps(lot, services.lots.flow_of(lot))
    out.print(
        f"started {len(LOTS)} lots, one per flow, {CARRIERS} carriers of {SITE_ROWS}x{SITE_COLS} "
        f"sites each ({LOT_PREFIX}1 to {LOT_PREFIX}{len(LOTS)}), through the pkgline server "
        f"as {who}"
    )


def planned_steps(lot: Lot, flow: Flow, limit: int = 500) -> int:
    """How many steps the lot will have run when it completes, on the route an unattended
    line takes (the first allowed step each time, as the controller dispatches)."""
    path = list(lot.path)
    for _ in range(limit):
        following = flow.position(path, lot.params).in_flow_order
        if not following:
            break
        path.append(following[0])
    return len(path)


# -- following the line -------------------------------------------------------------------------


async def _follow(run: Demo, services: Services) -> bool:
    """Show the line until every lot has ended (True if all completed) or time is up."""
    serve = run.children[-1]
    lots, tools = await _read(services)
    if out.is_terminal:
        with Live(
            live_view(run.progress(), lots, tools), console=out, refresh_per_second=4
        ) as live:
            while not _all_ended(lots) and time.monotonic() < run.deadline and serve.running():
                await asyncio.sleep(REFRESH_S)
                lots, tools = await _read(services)
                live.update(live_view(run.progress(), lots, tools))
    else:  # a pipe or a file: one line per move instead of a redrawn view
        seen: dict[str, tuple[object, ...]] = {}
        while True:
            for lot in lots:
                key = (lot.state, lot.step, lot.running.tool if lot.running else None)
                if seen.get(lot.id) != key:
                    seen[lot.id] = key
                    out.print(move_line(run.progress(), lot))
            if _all_ended(lots) or time.monotonic() >= run.deadline or not serve.running():
                break
            await asyncio.sleep(REFRESH_S)
            lots, tools = await _read(services)
    if not serve.running():
        err.print(
            marked(
                "the line controller stopped unexpectedly",
                "bold red",
                f"(exit {serve.process.returncode}); {serve.log}:\n{serve.tail()}",
            )
        )
    unfinished = [lot for lot in lots if lot.state is not LotState.COMPLETED]
    if not unfinished:
        out.print(f"all {len(lots)} lots completed after {run.elapsed():.1f} s")
        return True
    timed_out = not _all_ended(lots)
    for lot in unfinished:
        why = f" ({lot.hold.reason})" if lot.hold else ""
        out.print(
            Text(
                f"{lot.id} ({lot.flow}) did not complete: {lot.state.value}{where(lot)}{why}",
                style="bold red",
            )
        )
    if timed_out:
        out.print(
            Text(
                f"out of time after {run.elapsed():.0f} s (give the lots longer with "
                "--time-limit SECONDS)",
                style="bold red",
            )
        )
    return False


async def _read(services: Services) -> tuple[list[Lot], list[ToolRecord]]:
    lots = await services.lots.find(limit=1000)
    return sorted(lots, key=lot_number), await services.equipment.tools()


def _all_ended(lots: Sequence[Lot]) -> bool:
    return bool(lots) and all(lot.state in ENDED for lot in lots)


# -- ending -------------------------------------------------------------------------------------


def _pkgline_command() -> str:
    """How to call pkgline the way this demo was called (``pkgline`` when it is on PATH)."""
    called = Path(sys.argv[0])
    if called.name == "pkgline":
        found = shutil.which("pkgline")
        if found and Path(found).resolve() == called.resolve():
            return "pkgline"
        return _short(called)
    return f"{_short(Path(sys.executable))} -m pkgline"


def _short(path: Path) -> str:
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _print_next(run: Demo) -> None:
    pkgline = _pkgline_command()
    db = f"--db {run.url}"
    tool = "PLATE-1" if any(t.id == "PLATE-1" for t in run.config.tools) else run.config.tools[0].id
    out.print("\nLook further (the database stays):", style="bold")
    # a kept line keeps its server: the commands go through it
    via = f"--server unix://{demo_api.socket_path(run.database)}" if run.keep else db
    spc = demo_api.SPC_CHART
    for line in (
        f"{pkgline} lot list {via}",
        f"{pkgline} lot show {LOT_PREFIX}1 {via}",
        f"{pkgline} line status {via}",
        f"{pkgline} tool show {tool} --window 10m {via}",
        f"{pkgline} lot genealogy {LOT_PREFIX}{len(LOTS)} {via}",
        f"{pkgline} durable list {via}",
        f"{pkgline} spc show {spc.step} {spc.value} --tool {spc.tool} {via}",
        f"{pkgline} events list --limit 20 {via}",
    ):
        out.print(Text(f"  {line}"))
    out.print(
        Text(
            f"  logs: {run.log('serve')} (line controller, JSON lines), {run.log('sim')}",
            style="dim",
        )
    )
    if run.keep:
        print_station(run)
        pids = " ".join(str(c.pid) for c in run.children)
        out.print(
            Text(
                f"The line is still running (--keep): configuration {run.config_path}; "
                f"stop it with: kill {pids}",
                style="yellow",
            )
        )
