"""``pkgline lot map``: a lot's strip and panel maps out as SEMI E142, and an upstream map in.

Thin: read the file, call :mod:`mes.maps.service`, print. A map that does not parse or does
not fit the lot exits 1 saying what differed, and changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from mes.maps.e142 import MAX_MAP_BYTES, MapRefused
from mes.maps.service import MapExport, MapImport, export_lot_maps, import_lot_map
from pkgline.bootstrap import open_lot_service
from pkgline.cli.common import (
    DbOption,
    JsonOption,
    UserOption,
    current_user,
    err,
    out,
    parse_assignments,
    print_json,
    run,
    usage_error,
)

app = typer.Typer(
    help="Strip and panel maps as SEMI E142 XML: export a lot's, import an upstream one.",
    no_args_is_help=True,
)

FORMATS = ("e142",)

LotArg = Annotated[str, typer.Argument(help="Lot id.", show_default=False)]


@app.command("export")
def export(
    lot: LotArg,
    carrier: Annotated[
        str | None,
        typer.Option("--carrier", help="Only this carrier (id or position); default: every one."),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="Map format: e142 (SEMI E142 XML).")
    ] = "e142",
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write the map to this file (default: standard output).",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    json: JsonOption = False,
) -> None:
    """Write the lot's site maps, one SubstrateMap per carrier, as SEMI E142 XML: layout,
    origin and axes, every site's bin, the bins from the reject codes and their steps."""
    if fmt.lower() not in FORMATS:
        usage_error(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}", as_json=json)

    async def work() -> MapExport:
        async with open_lot_service(db) as service:
            return await export_lot_maps(service, lot, carrier)

    done = run(work, as_json=json, db=db)
    if out_file is None:
        if json:
            print_json({"lot": done.lot_id, "carriers": list(done.carriers), "xml": done.xml})
        else:
            typer.echo(done.xml, nl=False)
        return
    try:
        _write(out_file, done.xml)
    except OSError as exc:
        usage_error(f"--out {out_file}: cannot write it: {exc.strerror or exc}", as_json=json)
    if json:
        print_json({"lot": done.lot_id, "carriers": list(done.carriers), "file": str(out_file)})
    else:
        out.print(
            f"[green]✔[/] lot {done.lot_id}: {len(done.carriers)} carrier map(s) "
            f"({', '.join(done.carriers)}) written to {out_file} as SEMI E142"
        )


def _write(path: Path, text: str) -> None:
    """Write through a temporary file beside it and rename, so a reader never sees half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


@app.command("import")
def import_(
    lot: LotArg,
    file: Annotated[Path, typer.Argument(help="The SEMI E142 map (XML).", show_default=False)],
    carrier: Annotated[
        str | None,
        typer.Option(
            "--carrier",
            help="Apply the map (one SubstrateMap) to this carrier of the lot, whatever "
            "substrate id it names (default: each map goes to the carrier of its id).",
        ),
    ] = None,
    bin_code: Annotated[
        list[str] | None,
        typer.Option(
            "--bin",
            help="The reject code for a failing bin of the map, BIN=CODE (repeatable; "
            "default: the bin's description when it is a reject code).",
        ),
    ] = None,
    db: DbOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Reject the sites an upstream tool or inspection failed in its E142 map, with its bins
    mapped to reject codes. The carrier and its layout must match; a map that does not
    parse or does not fit is refused with what differed, and nothing changes."""
    codes = parse_assignments(bin_code or [], "--bin", as_json=json)
    try:
        if file.stat().st_size > MAX_MAP_BYTES:
            raise MapRefused(f"{file} is larger than {MAX_MAP_BYTES:,} bytes")
        document = file.read_bytes()
    except OSError as exc:
        usage_error(f"{file}: cannot read it: {exc.strerror or exc}", as_json=json)
    except MapRefused as exc:
        usage_error(exc.message, as_json=json)

    async def work() -> MapImport:
        async with open_lot_service(db) as service:
            return await import_lot_map(
                service,
                lot,
                document,
                source=file.name,
                user=current_user(user),
                onto=carrier,
                bin_codes=codes,
            )

    done = run(work, as_json=json, db=db)
    plan = done.plan
    rejected = [f"{r.carrier}:{r.row}:{r.col}:{r.code}" for r in plan.rejects]
    if json:
        print_json(
            {
                "lot": done.lot_id,
                "carriers": dict(plan.carriers),
                "rejected": rejected if done.outcome else [],
                "already_rejected": [str(s) for s in plan.already_rejected],
                "good_sites": None if done.outcome is None else done.outcome.lot.good_sites,
            }
        )
        return
    mapped = ", ".join(f"{k} -> {v}" if k != v else k for k, v in plan.carriers.items())
    if done.outcome is None:
        out.print(f"[green]✔[/] lot {done.lot_id}: map of {mapped} read; no site to reject")
    else:
        lot_now = done.outcome.lot
        out.print(
            f"[green]✔[/] lot {done.lot_id}: map of {mapped} imported, {len(rejected)} site(s) "
            f"rejected; {lot_now.good_sites} of {lot_now.total_sites} good"
        )
    if plan.already_rejected:
        err.print(
            f"  {len(plan.already_rejected)} site(s) the map rejects were rejected already "
            "and stay as they are"
        )
