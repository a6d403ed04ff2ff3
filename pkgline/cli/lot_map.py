"""``pkgline lot map``: a lot's strip and panel maps out as SEMI E142, and an upstream map in.

Thin: read the file, call :mod:`mes.maps.service` (directly, or through the pkgline server's
``/lots/{lot}/maps/e142`` routes: :mod:`pkgline.cli.modes`), print from the JSON both answer
(:mod:`pkgline.map_views`). A map that does not parse or does not fit the lot exits 1 saying
what differed, and changes nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pkgline.cli import signing
from pkgline.cli.common import (
    DbOption,
    JsonOption,
    UserOption,
    current_user,
    err,
    marked,
    noun,
    out,
    parse_assignments,
    print_json,
    run,
    usage_error,
)
from pkgline.cli.modes import Remote, ServerOption, call, either, say_direct, segment, target
from pkgline.cli.signing import MeaningOption, SecondSignerOption, SignaturesConfigOption

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
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """Write the lot's site maps, one SubstrateMap per carrier, as SEMI E142 XML: layout,
    origin and axes, every site's bin, the bins from the reject codes and their steps."""
    from mes.maps.service import export_lot_maps
    from pkgline import map_views as views
    from pkgline.bootstrap import open_lot_service

    if fmt.lower() not in FORMATS:
        usage_error(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}", as_json=json)
    if out_file is not None and (out_file.name in ("", ".", "..") or out_file.is_dir()):
        usage_error(
            f"--out {str(out_file)!r}: expected the name of a file to write, not a directory",
            as_json=json,
        )

    async def direct() -> dict[str, Any]:
        async with open_lot_service(db) as service:
            return views.export_dict(await export_lot_maps(service, lot, carrier))

    query = [("carrier", carrier)] if carrier is not None else None
    remote = Remote("GET", f"/lots/{segment(lot)}/maps/e142", query=query)
    done: dict[str, Any] = either(db, server, json, direct, remote)
    if out_file is None:
        if json:
            print_json(done)
        else:
            typer.echo(done["xml"], nl=False)
        return
    try:
        _write(out_file, done["xml"])
    except OSError as exc:
        usage_error(f"--out {out_file}: cannot write it: {exc.strerror or exc}", as_json=json)
    carriers = done["carriers"]
    if json:
        print_json({"lot": done["lot"], "carriers": carriers, "file": str(out_file)})
    else:
        out.print(
            marked(
                "✔",
                "green",
                f"lot {done['lot']}: {len(carriers)} carrier {noun('maps', len(carriers))} "
                f"({', '.join(carriers)}) written to {out_file} as SEMI E142",
            )
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
    file: Annotated[
        Path,
        typer.Argument(
            help="The SEMI E142 map (XML); - reads it from standard input.", show_default=False
        ),
    ],
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
    meaning: MeaningOption = None,
    second_signer: SecondSignerOption = None,
    config: SignaturesConfigOption = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Reject the sites an upstream tool or inspection failed in its E142 map, with its bins
    mapped to reject codes. The carrier and its layout must match; a map that does not
    parse or does not fit is refused with what differed, and nothing changes. A scrap of
    sites: signed by you with --meaning (your OS account in direct mode; through the
    server, your password given again)."""
    from mes.domain.authority import Action
    from mes.maps.e142 import MAX_MAP_BYTES, MapRefused
    from mes.maps.service import import_lot_map
    from pkgline import map_views as views
    from pkgline.bootstrap import open_lot_service

    codes = parse_assignments(bin_code or [], "--bin", as_json=json)
    stdin = str(file) == "-"
    name = "standard input" if stdin else file.name
    try:
        if stdin:  # a pipe: curl ... | pkgline lot map import L -
            document = sys.stdin.buffer.read(MAX_MAP_BYTES + 1)
        elif not file.exists():
            raise MapRefused(
                f"{file}: no such file; expected an E142 XML file (or - for standard input)"
            )
        elif not file.is_file():  # a device or a directory: /dev/zero would never end
            raise MapRefused(
                f"{file} is not a regular file: expected an E142 XML file (or - for standard input)"
            )
        else:
            with file.open("rb") as f:  # at most one byte past the limit, whatever stat said
                document = f.read(MAX_MAP_BYTES + 1)
        if len(document) > MAX_MAP_BYTES:
            raise MapRefused(f"{name} is larger than {MAX_MAP_BYTES:,} bytes")
    except OSError as exc:
        usage_error(f"{name}: cannot read it: {exc.strerror or exc}", as_json=json)
    except MapRefused as exc:
        usage_error(exc.message, as_json=json)
    reason = f"E142 map import: {name}"
    via = target(server, db, as_json=json)
    if via is not None:
        done = _import_remote(
            via, lot, name, document, carrier, codes, (meaning, second_signer), reason, json
        )
    else:
        signing.no_second_signer_here(second_signer, as_json=json)
        say_direct(db)
        act = signing.signed(
            lambda service, signed: import_lot_map(
                service,
                lot,
                document,
                source=name,
                user=current_user(user),
                onto=carrier,
                bin_codes=codes,
                signatures=signed,
            ),
            Action.SCRAP_SITES,
            meaning,
            reason,
        )

        rules = signing.policy(config, as_json=json)

        async def work() -> dict[str, Any]:
            async with open_lot_service(db, signatures=rules) as service:
                return views.import_dict(await act(service))

        done = run(work, as_json=json, db=db)
    if json:
        print_json(done)
        return
    mapped = ", ".join(f"{k} -> {v}" if k != v else k for k, v in done["carriers"].items())
    if done["good_sites"] is None:
        out.print(
            marked("✔", "green", f"lot {done['lot']}: map of {mapped} read; no site to reject")
        )
    else:
        out.print(
            marked(
                "✔",
                "green",
                f"lot {done['lot']}: map of {mapped} imported, "
                f"{len(done['rejected'])} {noun('sites', len(done['rejected']))} rejected; "
                f"{done['good_sites']} of "
                f"{done['total_sites']} good",
            )
        )
    if again := done["already_rejected"]:
        err.print(
            f"  rejected by the map and already before it, left as they were: {len(again)} "
            f"{noun('sites', len(again))}"
        )


def _import_remote(
    via: Any,
    lot: str,
    source: str,
    document: bytes,
    carrier: str | None,
    codes: dict[str, str],
    signers: tuple[str | None, str | None],
    reason: str,
    as_json: bool,
) -> dict[str, Any]:
    """The import through the server: the map's text in the body, signed with the password
    given again for the lot's version as the signer saw it (as ``lot scrap --site``);
    ``signers``: the meaning, and the second signer where two sign."""
    from mes.domain.authority import Action

    try:
        text = document.decode("utf-8")
    except UnicodeDecodeError:
        usage_error(
            f"{source}: the map is not UTF-8 text (through the server a map is sent as UTF-8)",
            as_json=as_json,
        )
    meaning, second = signers
    given = signing.server_signatures(
        via, lot, Action.SCRAP_SITES, meaning, reason, second, as_json=as_json
    )
    body: dict[str, Any] = {"xml": text, "source": source, "bins": codes}
    if carrier is not None:
        body["carrier"] = carrier
    if given:
        body["signatures"] = given
    path = f"/lots/{segment(lot)}/maps/e142"
    answer: dict[str, Any] = call(
        via, "POST", path, body, as_json=as_json, hint=signing.second_signer_hint(second)
    )
    return answer
