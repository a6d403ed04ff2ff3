"""``pkgline db``: create and upgrade the database schema, and say where the database is."""

from __future__ import annotations

from typing import Annotated

import typer

from mes.adapters.database import display_url
from mes.adapters.schema import SchemaStatus, schema_status
from pkgline.bootstrap import MIGRATION_TIMEOUTS, open_engine, resolve_url, seed_flow_versions
from pkgline.cli.common import DbOption, JsonOption, out, print_json, run

app = typer.Typer(help="The database: schema upgrades and status.", no_args_is_help=True)

AsRoleOption = Annotated[
    str | None,
    typer.Option(
        "--as-role",
        help="PostgreSQL: act as this role (SET ROLE at connection), the tables' owner "
        "(pkgline_owner, deploy/postgresql-roles.sql); the login role must be a member of "
        "it or a superuser.",
        show_default=False,
    ),
]


@app.command()
def upgrade(db: DbOption = None, json: JsonOption = False, as_role: AsRoleOption = None) -> None:
    """Create the schema or bring it to this pkgline's revision (safe to run again)."""

    from mes.adapters.migrate import upgrade as migrate_up  # Alembic: only when migrating

    async def work() -> tuple[SchemaStatus, list[str]]:
        async with open_engine(db, timeouts=MIGRATION_TIMEOUTS, role=as_role) as engine:
            await migrate_up(engine)
            return await schema_status(engine), await seed_flow_versions(engine)

    status, seeded = run(work, as_json=json, db=db)
    _report(db, status, json, seeded)


@app.command()
def status(db: DbOption = None, json: JsonOption = False) -> None:
    """Where the database is and which schema revision it has."""

    async def work() -> SchemaStatus:
        async with open_engine(db, must_exist=True) as engine:
            return await schema_status(engine)

    current = run(work, as_json=json, db=db)
    _report(db, current, json)


@app.command()
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, or 'base' for no schema.")],
    db: DbOption = None,
    json: JsonOption = False,
    as_role: AsRoleOption = None,
) -> None:
    """Take the schema back to an earlier revision (engineers only: drops data)."""

    from mes.adapters.migrate import downgrade as migrate_down

    async def work() -> SchemaStatus:
        async with open_engine(
            db, timeouts=MIGRATION_TIMEOUTS, must_exist=True, role=as_role
        ) as engine:
            await migrate_down(engine, revision)
            return await schema_status(engine)

    _report(db, run(work, as_json=json, db=db), json)


def _report(
    db: str | None, status: SchemaStatus, as_json: bool, seeded: list[str] | None = None
) -> None:
    url = display_url(resolve_url(db))
    if as_json:
        print_json(
            {
                "database": url,
                "revision": status.current,
                "head": status.head,
                "up_to_date": status.up_to_date,
                **({"flows_published": seeded} if seeded is not None else {}),
            }
        )
        return
    if seeded:
        out.print(
            f"flows published and approved as version 1 (the packaged files): {', '.join(seeded)}"
        )
    out.print(f"database: {url}")
    state = (
        "up to date"
        if status.up_to_date
        else f"needs 'pkgline db upgrade' (code is at {status.head})"
    )
    out.print(f"schema revision: {status.current or 'none'} ({state})")
