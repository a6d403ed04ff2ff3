"""The ``pkgline`` command: one entry point for operators, engineers and the daemon."""

from __future__ import annotations

import typer

from pkgline import __version__
from pkgline.cli import (
    api,
    audit,
    db,
    demo,
    events,
    flow,
    line,
    login,
    lot,
    pki,
    qualify,
    serve,
    sim,
    tool,
    tool_reset,
    user,
)

app = typer.Typer(
    name="pkgline",
    help="Equipment control and lot tracking for a semiconductor packaging line.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.add_typer(audit.app, name="audit")
app.add_typer(flow.app, name="flow")
app.add_typer(lot.app, name="lot")
tool.app.command(name="reset")(tool_reset.reset)
qualify.register(tool.app)
app.add_typer(tool.app, name="tool")
app.add_typer(line.app, name="line")
app.add_typer(user.app, name="user")
app.add_typer(pki.app, name="pki")
app.add_typer(events.app, name="events")
app.command(name="sim")(sim.sim)
app.command(name="serve")(serve.serve)
app.command(name="api")(api.api)
app.command(name="login")(login.login)
app.command(name="logout")(login.logout)
app.command(name="demo")(demo.demo)


@app.command()
def version() -> None:
    """Print pkgline's version."""
    typer.echo(__version__)
