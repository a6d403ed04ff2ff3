"""``pkgline lot``: the operator's commands. Thin: parse, call the lot service, print.

This command line is a contract: scripts and other systems call it. A refused command exits
non-zero, says what was refused, why (with the claim, for a claimed rule) and what is
allowed, and changes nothing (see :mod:`pkgline.cli.common` for exit codes).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pkgline.cli import loading, lot_history, lot_list, lot_map, lot_migrate, signing
from pkgline.cli.bounds import (
    MAX_CARRIERS,
    MAX_PRIORITY,
    MAX_SITE_COLS,
    MAX_SITE_ROWS,
    MIN_PRIORITY,
)
from pkgline.cli.common import (
    DbOption,
    HistoryOption,
    JsonOption,
    ReasonOption,
    UserOption,
    current_user,
    database_unavailable,
    last_entries,
    parse_assignments,
    parse_sites,
    print_json,
    run,
    usage_error,
)
from pkgline.cli.lot_act import Options, operate, segment
from pkgline.cli.lot_view import print_report
from pkgline.cli.modes import ServerOption, call, say_direct, target
from pkgline.cli.signing import MeaningOption, SecondSignerOption, SignaturesConfigOption
from pkgline.page_sizes import SHOW_HISTORY

# Imported where used: rich where a table or styled text is printed (not for --json), the
# lot tracker and SQLAlchemy in direct mode only (a command through the server imports
# neither: tests/test_imports.py).

app = typer.Typer(
    help="Lots: start, move, hold, release, split, merge and inspect.", no_args_is_help=True
)

app.add_typer(lot_map.app, name="map")
lot_migrate.register(app)

LotArg = Annotated[str, typer.Argument(help="Lot id.", show_default=False)]
LotParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        help="A lot parameter of the flow, NAME=VALUE (repeatable; pkgline flow show FLOW).",
    ),
]
RecipeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        help="A recipe value of the step, NAME=VALUE (repeatable; the flow's default else).",
    ),
]


@app.command()
def start(
    lot: LotArg,
    flow: Annotated[str, typer.Option("--flow", help="Flow name (pkgline flow list).")],
    carriers: Annotated[
        int,
        typer.Option(min=1, max=MAX_CARRIERS, help="Number of carriers (strips or panels)."),
    ] = 2,
    rows: Annotated[int, typer.Option(min=1, max=MAX_SITE_ROWS, help="Site rows per carrier.")] = 4,
    cols: Annotated[
        int, typer.Option(min=1, max=MAX_SITE_COLS, help="Site columns per carrier.")
    ] = 8,
    param: LotParamOption = None,
    priority: Annotated[
        int,
        typer.Option(
            min=MIN_PRIORITY, max=MAX_PRIORITY, help=f"1 (most urgent) to {MAX_PRIORITY}."
        ),
    ] = 5,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Start a lot of a flow, with its carriers and lot parameters."""
    from mes.domain import commands as cmd

    command = cmd.StartLot(
        lot_id=lot,
        flow=flow,
        user=current_user(user),
        carriers=carriers,
        site_rows=rows,
        site_cols=cols,
        params=parse_assignments(param or [], "--param", as_json=json),
        priority=priority,
    )
    operate(
        db,
        server,
        json,
        lambda s: s.start(command),
        (
            "/lots",
            {
                "lot": lot,
                "flow": flow,
                "carriers": carriers,
                "rows": rows,
                "cols": cols,
                "params": dict(command.params),
                "priority": priority,
            },
        ),
        "started",
        options=Options("/lots", {"params": "--param"}),
    )


@app.command("track-in")
def track_in(
    lot: LotArg,
    step: Annotated[str, typer.Option("--step", help="Step code to start.")],
    tool: Annotated[
        str | None,
        typer.Option(
            "--tool",
            help="Tool that runs it: registered, of the step's class, qualified for the step, "
            "in manual, up and free (none: the step is done off the line's tools).",
        ),
    ] = None,
    param: RecipeOption = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Start a step: refused unless the flow allows it now, its values are within limits and
    the tool passes the track-in interlocks (docs/interlocks.md)."""
    from mes.domain import commands as cmd

    command = cmd.TrackIn(
        lot_id=lot,
        step=step,
        user=current_user(user),
        tool=tool,
        values=parse_assignments(param or [], "--param", as_json=json),
    )
    body = {"step": step, "tool": tool, "params": dict(command.values)}
    operate(
        db,
        server,
        json,
        lambda s: s.track_in(command),
        (f"/lots/{segment(lot)}/track-in", body),
        "tracked in",
        held_is_refused=True,
        options=Options("/lots/{lot_id}/track-in", {"params": "--param"}),
    )


@app.command("track-out")
def track_out(
    lot: LotArg,
    step: Annotated[
        str | None,
        typer.Option(
            "--step",
            help="The step being finished: refused if the lot runs another (a script that "
            "retries cannot finish the lot's next step by mistake).",
        ),
    ] = None,
    data: Annotated[
        list[str] | None, typer.Option("--data", help="A measured value, NAME=VALUE (repeatable).")
    ] = None,
    reject: Annotated[
        list[str] | None,
        typer.Option(
            "--reject",
            help="A rejected site, CARRIER:ROW:COL:CODE (carrier id or position; 1-based).",
        ),
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Finish the running step with its measured values and rejected sites."""
    from mes.domain import commands as cmd

    command = cmd.TrackOut(
        lot_id=lot,
        user=current_user(user),
        measured=parse_assignments(data or [], "--data", as_json=json),
        rejects=parse_sites(reject or [], "--reject", with_code=True, as_json=json),
        step=step,
    )
    body = {
        "step": step,
        "data": dict(command.measured),
        "rejects": [
            {"carrier": r.carrier, "row": r.row, "col": r.col, "code": r.code}
            for r in command.rejects
        ],
    }
    operate(
        db,
        server,
        json,
        lambda s: s.track_out(command),
        (f"/lots/{segment(lot)}/track-out", body),
        "tracked out",
        options=Options("/lots/{lot_id}/track-out", {"data": "--data", "rejects": "--reject"}),
    )


@app.command()
def abort(
    lot: LotArg,
    reason: ReasonOption = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Abandon the running step: the lot waits at the same step again."""
    from mes.domain import commands as cmd

    command = cmd.AbortStep(lot, current_user(user), reason)
    remote = (f"/lots/{segment(lot)}/abort", {"reason": reason})
    operate(db, server, json, lambda s: s.abort(command), remote, "aborted")


@app.command()
def hold(
    lot: LotArg,
    reason: ReasonOption = None,
    code: Annotated[
        str | None,
        typer.Option("--code", help="A hold reason code (pkgline reason list --kind hold)."),
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Hold a lot (a --reason, a --code, or both are required). A running step is
    abandoned."""
    from mes.domain import commands as cmd

    command = cmd.HoldLot(lot, current_user(user), reason or "", code=code)
    remote = (f"/lots/{segment(lot)}/hold", {"reason": reason, "code": code})
    operate(db, server, json, lambda s: s.hold(command), remote, "held")


@app.command()
def release(
    lot: LotArg,
    reason: ReasonOption = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    meaning: MeaningOption = None,
    second_signer: SecondSignerOption = None,
    config: SignaturesConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Release a held lot: it waits for its next step again. Signed by you (your OS account
    in direct mode) with --meaning."""
    from mes.domain import commands as cmd
    from mes.domain.authority import Action

    command = cmd.ReleaseLot(lot, current_user(user), reason)
    act = signing.signed(
        lambda s, sig: s.release(command, signatures=sig), Action.RELEASE, meaning, reason
    )
    remote = (f"/lots/{segment(lot)}/release", {"reason": reason})
    operate(
        db,
        server,
        json,
        act,
        remote,
        "released",
        config=config,
        second=second_signer,
        sign=(lot, Action.RELEASE, meaning, reason),
    )


@app.command()
def scrap(
    lot: LotArg,
    reason: ReasonOption = None,
    site: Annotated[
        list[str] | None,
        typer.Option("--site", help="Scrap only this site, CARRIER:ROW:COL (repeatable)."),
    ] = None,
    code: Annotated[
        str | None,
        typer.Option(
            help="A whole lot: a scrap reason code (pkgline reason list --kind scrap). With "
            "--site: the reject code written on the sites (default SCRAP)."
        ),
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    meaning: MeaningOption = None,
    second_signer: SecondSignerOption = None,
    config: SignaturesConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Scrap a whole lot, or some of its sites (--site). A reason (--reason, or for a whole
    lot --code, or both) is required. Signed by you (your OS account in direct mode) with
    --meaning."""
    from mes.domain import commands as cmd
    from mes.domain.authority import Action

    who = current_user(user)
    if site:
        sites = parse_sites(
            site, "--site", with_code=False, default_code=code or "SCRAP", as_json=json
        )
        scrap_sites = cmd.ScrapSites(lot, who, reason or "", sites)
        body = {
            "reason": reason,
            "code": code or "SCRAP",
            "sites": [{"carrier": x.carrier, "row": x.row, "col": x.col} for x in sites],
        }
        act = signing.signed(
            lambda s, sig: s.scrap_sites(scrap_sites, signatures=sig),
            Action.SCRAP_SITES,
            meaning,
            reason,
        )
        remote = (f"/lots/{segment(lot)}/scrap-sites", body)
        operate(
            db,
            server,
            json,
            act,
            remote,
            "sites scrapped",
            config=config,
            second=second_signer,
            sign=(lot, Action.SCRAP_SITES, meaning, reason),
            options=Options("/lots/{lot_id}/scrap-sites", {"sites": "--site"}),
        )
    else:
        scrap_lot = cmd.ScrapLot(lot, who, reason or "", code=code)
        act = signing.signed(
            lambda s, sig: s.scrap(scrap_lot, signatures=sig), Action.SCRAP, meaning, reason
        )
        body = {"reason": reason, "code": code}
        remote = (f"/lots/{segment(lot)}/scrap", body)
        operate(
            db,
            server,
            json,
            act,
            remote,
            "scrapped",
            config=config,
            second=second_signer,
            sign=(lot, Action.SCRAP, meaning, reason),
        )


@app.command()
def split(
    lot: LotArg,
    carriers: Annotated[
        list[str],
        typer.Option("--carriers", help="Carriers to move (ids or positions; comma-separated)."),
    ],
    into: Annotated[str, typer.Option("--into", help="Id of the new child lot.")],
    reason: ReasonOption = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Split some carriers off into a new child lot at the same position."""
    from mes.domain import commands as cmd

    names = tuple(c.strip() for item in carriers for c in item.split(",") if c.strip())
    if not names:
        usage_error("--carriers names no carrier", as_json=json)
    if len(names) > MAX_CARRIERS:
        usage_error(
            f"--carriers names {len(names)} carriers: a lot has at most {MAX_CARRIERS}",
            as_json=json,
        )
    command = cmd.SplitLot(lot, into, names, current_user(user), reason)
    remote = (
        f"/lots/{segment(lot)}/split",
        {"carriers": list(names), "into": into, "reason": reason},
    )
    operate(db, server, json, lambda s: s.split(command), remote, f"split off from {lot}")


@app.command()
def merge(
    lot: Annotated[str, typer.Argument(help="The lot to merge (it ends).", show_default=False)],
    into: Annotated[str, typer.Option("--into", help="The lot that takes its carriers.")],
    reason: ReasonOption = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Merge a lot into another of the same flow at the same position."""
    from mes.domain import commands as cmd

    command = cmd.MergeLots(lot, into, current_user(user), reason)
    remote = (f"/lots/{segment(lot)}/merge", {"into": into, "reason": reason})
    operate(db, server, json, lambda s: s.merge(command), remote, f"took in {lot}")


@app.command()
def rework(
    lot: LotArg,
    step: Annotated[str, typer.Option("--step", help="The reworkable step to go back to.")],
    reason: ReasonOption = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    meaning: MeaningOption = None,
    second_signer: SecondSignerOption = None,
    config: SignaturesConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Send a held lot back to an earlier reworkable step (engineers). Signed by you (your
    OS account in direct mode) with --meaning."""
    from mes.domain import commands as cmd
    from mes.domain.authority import Action

    command = cmd.ReworkLot(lot, step, current_user(user), reason or "")
    act = signing.signed(
        lambda s, sig: s.rework(command, signatures=sig), Action.REWORK, meaning, reason
    )
    remote = (f"/lots/{segment(lot)}/rework", {"step": step, "reason": reason})
    operate(
        db,
        server,
        json,
        act,
        remote,
        "sent back for rework",
        config=config,
        second=second_signer,
        sign=(lot, Action.REWORK, meaning, reason),
    )


@app.command()
def complete(
    lot: LotArg,
    reason: ReasonOption = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """End a lot whose flow may end here (only optional steps remain)."""
    from mes.domain import commands as cmd

    command = cmd.CompleteLot(lot, current_user(user), reason)
    remote = (f"/lots/{segment(lot)}/complete", {"reason": reason})
    operate(db, server, json, lambda s: s.complete(command), remote, "completed")


@app.command()
def show(
    lot: LotArg,
    history: HistoryOption = str(SHOW_HISTORY),
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """State, step, next steps, layer, carriers and site maps, yields, path, and the last
    history entries (--history for more)."""
    last = last_entries(history, as_json=json)
    via = target(server, db, as_json=json)
    if via is not None:
        report: dict[str, Any] = call(via, "GET", f"/lots/{segment(lot)}", as_json=json)
    else:
        say_direct(db)
        with loading():  # a one-shot read, mostly imports (the lot tracker's, asyncpg's)
            from mes.adapters.report_reads import Silent
            from pkgline.direct_reads import lot_report

            try:
                quick = lot_report(db, lot)  # without SQLAlchemy, where it can
            except Silent as exc:
                database_unavailable(db, str(exc), as_json=json)

        async def work() -> dict[str, Any]:
            from mes.domain.report import report_dict
            from pkgline.bootstrap import open_lot_service

            async with open_lot_service(db) as service:
                return report_dict(await service.report(lot))

        report = quick if quick is not None else run(work, as_json=json, db=db)
    if json:
        print_json(report)
        return
    print_report(report, last)


lot_list.register(app)  # after show: the order of ``pkgline lot --help``
lot_history.register(app)
