"""The ``pkgline`` command: one entry point for operators, engineers and the daemon.

Commands are registered lazily (:mod:`pkgline.cli.lazy`): each function below imports its
command's module when the command is used, so that a call pays only for what it runs.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

import typer
import typer.main

from pkgline import __version__
from pkgline.cli.lazy import LazyCommand, LazyGroup


def _sim(app: typer.Typer) -> None:
    from pkgline.cli import sim

    app.command(name="sim")(sim.sim)


def _serve(app: typer.Typer) -> None:
    from pkgline.cli import serve

    app.command(name="serve")(serve.serve)


def _demo(app: typer.Typer) -> None:
    from pkgline.cli import demo

    app.command(name="demo")(demo.demo)


def _api(app: typer.Typer) -> None:
    from pkgline.cli import api

    app.command(name="api")(api.api)


def _login(app: typer.Typer) -> None:
    from pkgline.cli import login

    app.command(name="login")(login.login)


def _logout(app: typer.Typer) -> None:
    from pkgline.cli import login

    app.command(name="logout")(login.logout)


def _version(app: typer.Typer) -> None:
    app.command(name="version")(version)


def _db(app: typer.Typer) -> None:
    from pkgline.cli import db

    app.add_typer(db.app, name="db")


def _audit(app: typer.Typer) -> None:
    from pkgline.cli import audit

    app.add_typer(audit.app, name="audit")


def _flow(app: typer.Typer) -> None:
    from pkgline.cli import flow

    app.add_typer(flow.app, name="flow")


def _lot(app: typer.Typer) -> None:
    app.add_typer(_lot_app(), name="lot")


@cache
def _lot_app() -> typer.Typer:
    """``pkgline lot`` with ``genealogy`` (once per process)."""
    from pkgline.cli import lot, material

    material.register(lot.app)
    return lot.app


def _durable(app: typer.Typer) -> None:
    from pkgline.cli import durable

    app.add_typer(durable.app, name="durable")


@cache
def _material_app() -> typer.Typer:
    """``pkgline material`` with the recall's commands (once per process)."""
    from pkgline.cli import material, material_recall

    material_recall.register(material.app)
    return material.app


def _material(app: typer.Typer) -> None:
    app.add_typer(_material_app(), name="material")


def _reason(app: typer.Typer) -> None:
    from pkgline.cli import reason

    app.add_typer(reason.app, name="reason")


def _spc(app: typer.Typer) -> None:
    from pkgline.cli import spc

    app.add_typer(spc.app, name="spc")


@cache
def _tool_app() -> typer.Typer:
    """``pkgline tool`` with ``reset``, ``down``/``up`` and the qualification commands (once per process)."""
    from pkgline.cli import qualify, tool, tool_down, tool_jobs, tool_reset

    tool.app.command(name="jobs")(tool_jobs.jobs)
    tool.app.command(name="reset")(tool_reset.reset)
    tool.app.command(name="down")(tool_down.down)
    tool.app.command(name="up")(tool_down.up)
    qualify.register(tool.app)
    return tool.app


def _tool(app: typer.Typer) -> None:
    app.add_typer(_tool_app(), name="tool")


def _line(app: typer.Typer) -> None:
    from pkgline.cli import line

    app.add_typer(line.app, name="line")


def _user(app: typer.Typer) -> None:
    from pkgline.cli import user

    app.add_typer(user.app, name="user")


def _pki(app: typer.Typer) -> None:
    from pkgline.cli import pki

    app.add_typer(pki.app, name="pki")


def _events(app: typer.Typer) -> None:
    from pkgline.cli import events

    app.add_typer(events.app, name="events")


class Commands(LazyGroup):
    """pkgline's commands in the order ``pkgline --help`` lists them, each with the first
    paragraph of its help (tests/test_imports.py checks that it is the command's own)."""

    commands_table = (
        LazyCommand(
            "sim",
            "Run the simulated tools of a line (those with a simulation table) on the endpoints "
            "the configuration names, print them, and run until Ctrl-C or SIGTERM.",
            _sim,
        ),
        LazyCommand(
            "serve",
            "Run the line controller: drive this line's tools through each lot's flow.",
            _serve,
        ),
        LazyCommand(
            "demo",
            "Run a simulated line end to end: one lot of each of the nine flows, with a live view, "
            "then a summary per lot.",
            _demo,
        ),
        LazyCommand(
            "api",
            "Run the pkgline server: the lot operations over HTTP on a Unix socket (local users, "
            "known by their OS account) and, when configured, HTTPS and plain HTTP on loopback (the "
            "operator station's pages are at /station/ on either).",
            _api,
        ),
        LazyCommand(
            "login",
            "Log in to a pkgline server over HTTPS: the session (8 h by default) is kept for the "
            "next commands with the same --server.",
            _login,
        ),
        LazyCommand(
            "logout",
            "End the session kept for --server (on the server too) and forget its token.",
            _logout,
        ),
        LazyCommand("version", "Print pkgline's version.", _version),
        LazyCommand("db", "The database: schema upgrades and status.", _db),
        LazyCommand(
            "audit",
            "The audit trail: verify the hash chains of the lot history and the security log.",
            _audit,
        ),
        LazyCommand(
            "flow",
            "Process flows: what each claimed package's line does, and their published versions.",
            _flow,
        ),
        LazyCommand("lot", "Lots: start, move, hold, release, split, merge and inspect.", _lot),
        LazyCommand(
            "tool", "Tools: states, time in state, and automatic or manual dispatch.", _tool
        ),
        LazyCommand(
            "durable",
            "Durables with life counters: add, mount on a tool, unmount, renew, show, list.",
            _durable,
        ),
        LazyCommand(
            "material",
            "Material lots with their clocks: add, thaw, load on a tool, unload, show, list, "
            "where-used, quarantine, release, hold-lots (recalls).",
            _material,
        ),
        LazyCommand(
            "reason", "Hold and scrap reason codes, kept by quality: add, list, retire.", _reason
        ),
        LazyCommand(
            "spc",
            "SPC charts per step, measured value and tool: chart (set one), list, show, clear an "
            "inhibited tool.",
            _spc,
        ),
        LazyCommand("line", "The line at a glance: controllers, tools, lots.", _line),
        LazyCommand(
            "user",
            "Users, roles, passwords and API keys (admins; in direct mode the database's owner).",
            _user,
        ),
        LazyCommand("pki", "Certificates and trust lists of the secure equipment links.", _pki),
        LazyCommand("events", "The event feed to the plant (MQTT).", _events),
    )


app = typer.Typer(
    name="pkgline",
    help="Equipment control and lot tracking for a semiconductor packaging line.",
    cls=Commands,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def version() -> None:
    """Print pkgline's version."""
    typer.echo(__version__)


def main() -> None:
    """Run ``pkgline``. Typer makes a group of an app with more than one command registered;
    this one has them all in :class:`Commands`, so the group is asked for by name."""
    group = typer.main.get_group(app)
    if "--json" not in sys.argv[1:]:
        group()
        return
    # A script that asked for --json reads a malformed command line as JSON too (exit 2), as
    # it reads every other refusal; click's own errors are text otherwise.
    from pkgline.cli.common import print_json

    try:
        code = group.main(standalone_mode=False)
    except _CLICK_ERROR as exc:  # a usage error's exit code is 2 (EXIT_USAGE)
        print_json({"error": "usage", "message": exc.format_message()})  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except typer.Abort:
        sys.stderr.write("Aborted!\n")
        sys.exit(1)
    except BrokenPipeError:  # | head: as click's standalone mode
        sys.stdout = Path(os.devnull).open("w")  # noqa: SIM115 - open until the exit
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


# typer carries its own copy of click: its errors by the classes it exports
_CLICK_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)
