"""``pkgline material quarantine|release|hold-lots``: quality's material recall. A
quarantined material lot is not loaded and no track-in runs on a tool where it is loaded;
the recall's holds put every product lot still on the line that got it (as far as
``material where-used`` reaches) on hold with the reason code. Thin: parse, one call of the
material service through the pkgline server or directly (:func:`pkgline.cli.modes.served`),
print its JSON (:mod:`mes.domain.material_quarantine` has the rules)."""

from __future__ import annotations

from types import ModuleType
from typing import Annotated, Any

import typer

from pkgline.cli import signing
from pkgline.cli.common import (
    DbOption,
    JsonOption,
    UserOption,
    current_user,
    out,
    print_json,
    run,
)
from pkgline.cli.modes import Remote, ServerOption, call, say_direct, segment, served, target

MaterialArg = Annotated[str, typer.Argument(help="Material lot id.", show_default=False)]
CodeOption = Annotated[
    str,
    typer.Option(
        "--code",
        help="A hold reason code (pkgline reason list --kind hold); the recall's holds carry "
        "it too.",
        show_default=False,
    ),
]


def _views() -> ModuleType:
    import pkgline.interlock_views

    return pkgline.interlock_views


def _path(material: str, action: str) -> str:
    return f"/materials/{segment(material)}/{action}"


def _print_recall(recall: dict[str, Any]) -> None:
    """What a recall's holds did: the lots held, and those left as they were."""
    held = [r["lot"] for r in recall["held"]]
    material = recall["material"]
    out.print(
        f"held {len(held)} lot(s) that got material lot {material}: {', '.join(held)}"
        if held
        else f"no lot held: no lot that got material lot {material} is waiting or running"
    )
    if recall["on_hold"]:
        lots = ", ".join(r["lot"] for r in recall["on_hold"])
        roles = recall.get("release_by")  # absent from an older server's answer
        if roles:
            out.print(
                f"on hold already, not touched: {lots}; while {material} is quarantined, "
                f"their release and rework need {' or '.join(roles)}"
            )
        else:
            out.print(f"on hold already, not touched: {lots}")
    if recall["off_line"]:
        lots = ", ".join(f"{r['lot']} ({r['state'] or '?'})" for r in recall["off_line"])
        out.print(f"off the line, not held: {lots}")


def quarantine(
    material: MaterialArg,
    code: CodeOption,
    reason: Annotated[
        str, typer.Option("--reason", help="What is wrong with it.", show_default=False)
    ],
    hold_lots: Annotated[
        bool,
        typer.Option(
            "--hold-lots",
            help="Hold the product lots still on the line that got it too (in the same "
            "transaction).",
        ),
    ] = False,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Quarantine a material lot (quality): it cannot be loaded, and no track-in runs on a tool
    where it is loaded, until quality releases it."""
    who = current_user(user)
    body = {"code": code, "reason": reason, "hold_lots": hold_lots}
    answer = served(
        db,
        server,
        json,
        Remote("POST", _path(material, "quarantine"), body),
        lambda s: s.materials.quarantine(material, code, reason, who, hold_lots=hold_lots),
        lambda done: _views().quarantined_dict(done),
    )
    if json:
        print_json(answer)
        return
    loaded = f"; loaded on {answer['tool']}: unload it" if answer["tool"] else ""
    out.print(f"✔ {answer['kind']} {answer['id']} quarantined ({code}){loaded}")
    if answer["recall"] is not None:
        _print_recall(answer["recall"])
    else:
        out.print(
            f"the lots that got it are not held: pkgline material hold-lots {material} "
            f"--code {code}"
        )


def release(
    material: MaterialArg,
    reason: Annotated[
        str,
        typer.Option("--reason", help="Why it may be used again.", show_default=False),
    ],
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    meaning: signing.MeaningOption = None,
    second_signer: signing.SecondSignerOption = None,
    config: signing.SignaturesConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Lift a material lot's quarantine (quality), signed by you (your OS account in direct
    mode; through the server, your password given again) with --meaning. The lots a recall
    held stay held."""
    from mes.domain.authority import Action

    who = current_user(user)
    row = Action.MATERIAL_RELEASE
    body: dict[str, Any] = {"reason": reason}
    via = target(server, db, as_json=json)
    if via is not None:
        given = signing.server_signatures(
            via, material, row, meaning, reason, second_signer, as_json=json, subject="material lot"
        )
        answer = call(
            via,
            "POST",
            _path(material, "release"),
            {**body, "signatures": given} if given else body,
            as_json=json,
            hint=signing.second_signer_hint(second_signer),
        )
    else:
        signing.no_second_signer_here(second_signer, as_json=json)
        rules = signing.policy(config, as_json=json)
        say_direct(db)

        async def direct() -> Any:
            from pkgline.bootstrap import open_services

            signature = signing.os_signature(row, meaning, reason)
            async with open_services(db, signatures=rules) as services:
                found = await signing.direct_mode_says(
                    services.materials.release(material, reason, who, signatures=(signature,))
                )
                return _views().material_dict(found)

        answer = run(direct, as_json=json, db=db)
    if json:
        print_json(answer)
        return
    out.print(f"✔ {answer['kind']} {answer['id']} released from quarantine")


def hold_lots(
    material: MaterialArg,
    code: CodeOption,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (beside the material lot's id).")
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Hold every product lot still on the line that got this material lot (a recall, as
    far as where-used reaches), in one transaction; lots on hold already or off the line are
    reported, not touched."""
    who = current_user(user)
    answer = served(
        db,
        server,
        json,
        Remote("POST", _path(material, "hold-lots"), {"code": code, "reason": reason}),
        lambda s: s.materials.hold_lots(material, code, reason, who),
        lambda done: _views().recall_dict(done),
    )
    if json:
        print_json(answer)
        return
    _print_recall(answer)


def register(material_app: typer.Typer) -> None:
    """Add ``quarantine``, ``release`` and ``hold-lots`` to ``pkgline material``."""
    material_app.command("quarantine")(quarantine)
    material_app.command("release")(release)
    material_app.command("hold-lots")(hold_lots)
