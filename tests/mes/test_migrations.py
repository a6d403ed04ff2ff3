"""Every schema change is an Alembic revision: up and down on SQLite and PostgreSQL, and the
upgraded schema is exactly what the code's table definitions say."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateIndex

from flows import FlowLibrary
from mes.adapters.database import create_engine
from mes.adapters.migrate import downgrade, head_revision, upgrade
from mes.adapters.schema import (
    SCHEMA_REVISION,
    SchemaMismatch,
    require_current_schema,
    schema_status,
)
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.adapters.tables import metadata
from mes.domain.commands import StartLot
from mes.domain.equipment import ToolRegistration
from mes.equipment import EquipmentService
from mes.service import LotService

DATABASES = ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)]


def test_the_code_needs_the_latest_revision() -> None:
    assert head_revision() == SCHEMA_REVISION


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    if conn.dialect.name != "sqlite":
        return list(compare_metadata(context, metadata))
    # SQLAlchemy does not reflect SQLite's indexes on expressions (and Alembic says it cannot
    # compare them): those are compared here by the SQL that made them instead.
    on_expressions = {
        str(ix.name): ix
        for table in metadata.tables.values()
        for ix in table.indexes
        if not all(isinstance(e, Column) for e in ix.expressions)
    }
    with warnings.catch_warnings():
        for name in on_expressions:
            warnings.filterwarnings(
                "ignore", f"Skipped unsupported reflection of expression-based index {name}$"
            )
            warnings.filterwarnings(
                "ignore",
                f"autogenerate skipping metadata-specified expression-based index '{name}'",
            )
        diff: list[Any] = list(compare_metadata(context, metadata))
    made = dict(
        conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index'")).all()
    )
    for name, ix in on_expressions.items():
        if made.get(name) != str(CreateIndex(ix).compile(dialect=conn.dialect)):
            diff.append(("index differs", name, made.get(name)))
    return diff


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


@pytest.mark.parametrize("database", DATABASES)
async def test_migrations_go_up_and_down_and_match_the_tables(
    request: pytest.FixtureRequest, database: str
) -> None:
    engine = create_engine(request.getfixturevalue(database))
    try:
        assert (await schema_status(engine)).current is None
        with pytest.raises(SchemaMismatch, match="pkgline db upgrade") as refused:
            await require_current_schema(engine)
        # on PostgreSQL the tables' owner upgrades (deploy/postgresql-roles.sql), not the server
        owned = "--as-role pkgline_owner" in refused.value.args[0]
        assert owned == (engine.dialect.name == "postgresql"), refused.value
        await upgrade(engine)
        await require_current_schema(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            assert {
                "lots",
                "carriers",
                "site_rejects",
                "lot_history",
                "outbox",
                "tools",
                "tool_resets",
            } <= await conn.run_sync(_tables)
        await downgrade(engine, "base")
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) <= {"alembic_version"}
        assert (await schema_status(engine)).current is None
        await upgrade(engine)
        await upgrade(engine)  # again: nothing to do
        assert (await schema_status(engine)).up_to_date
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database", DATABASES)
async def test_the_alarm_resets_revision_goes_down_to_the_identity_one_and_up_again(
    request: pytest.FixtureRequest, database: str
) -> None:
    engine = create_engine(request.getfixturevalue(database))
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            assert "tool_resets" in await conn.run_sync(_tables)
        await downgrade(engine, "0005")
        assert (await schema_status(engine)).current == "0005"
        async with engine.connect() as conn:
            tables = await conn.run_sync(_tables)
        assert "tool_resets" not in tables and "tools" in tables
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


def _job_indexes(conn: Connection) -> set[str]:
    return {str(ix["name"]) for ix in inspect(conn).get_indexes("jobs")}


@pytest.mark.parametrize("database", DATABASES)
async def test_the_tool_jobs_index_goes_down_to_the_sessions_revision_and_up_again(
    request: pytest.FixtureRequest, database: str
) -> None:
    """Revision 0016: jobs (tool_id, started_at), for a tool's jobs in a window."""
    engine = create_engine(request.getfixturevalue(database))
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            assert "ix_jobs_tool_started" in await conn.run_sync(_job_indexes)
        await downgrade(engine, "0009")
        assert (await schema_status(engine)).current == "0009"
        async with engine.connect() as conn:
            indexes = await conn.run_sync(_job_indexes)
        assert "ix_jobs_tool_started" not in indexes and "ix_jobs_tool_id" in indexes
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


def _event_indexes(conn: Connection) -> set[str]:
    return {str(ix["name"]) for ix in inspect(conn).get_indexes("security_events")}


@pytest.mark.parametrize("database", DATABASES)
async def test_the_security_log_user_indexes_go_down_to_the_jobs_revision_and_up_again(
    request: pytest.FixtureRequest, database: str
) -> None:
    """Revision 0017: security_events (actor, seq) and (subject, seq), for one user's page."""
    engine = create_engine(request.getfixturevalue(database))
    mine = {"ix_security_events_actor", "ix_security_events_subject"}
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            assert mine <= await conn.run_sync(_event_indexes)
        await downgrade(engine, "0016")
        assert (await schema_status(engine)).current == "0016"
        async with engine.connect() as conn:
            indexes = await conn.run_sync(_event_indexes)
        assert not mine & indexes and "ix_security_events_at" in indexes
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


def _history_indexes(conn: Connection) -> set[str]:
    return {str(ix["name"]) for ix in inspect(conn).get_indexes("lot_history")}


@pytest.mark.parametrize("database", DATABASES)
async def test_the_history_list_indexes_go_down_to_the_security_log_revision_and_up_again(
    request: pytest.FixtureRequest, database: str
) -> None:
    """Revision 0018: lot_history (tool, seq) and (user, seq), for one tool's or person's page."""
    engine = create_engine(request.getfixturevalue(database))
    mine = {"ix_lot_history_tool", "ix_lot_history_user"}
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            assert mine <= await conn.run_sync(_history_indexes)
        await downgrade(engine, "0017")
        assert (await schema_status(engine)).current == "0017"
        async with engine.connect() as conn:
            indexes = await conn.run_sync(_history_indexes)
        assert not mine & indexes and "ix_lot_history_at" in indexes
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database", DATABASES)
async def test_the_history_operation_and_step_indexes_go_down_to_the_security_chain_and_up_again(
    request: pytest.FixtureRequest, database: str
) -> None:
    """Revision 0023: lot_history (operation, seq) and (step, seq), for ``lot history
    --operation`` and ``--step``, and security_events (kind, seq), for ``user events --kind``
    (a page and its count)."""
    engine = create_engine(request.getfixturevalue(database))
    mine = {"ix_lot_history_operation", "ix_lot_history_step"}
    kind = "ix_security_events_kind"
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            assert mine <= await conn.run_sync(_history_indexes)
            assert kind in await conn.run_sync(_security_indexes)
            assert "ix_jobs_lot_id" in await conn.run_sync(_job_indexes)
        await downgrade(engine, "0022")
        assert (await schema_status(engine)).current == "0022"
        async with engine.connect() as conn:
            indexes = await conn.run_sync(_history_indexes)
            security = await conn.run_sync(_security_indexes)
            jobs = await conn.run_sync(_job_indexes)
        assert not mine & indexes and "ix_lot_history_user" in indexes
        assert kind not in security and "ix_security_events_actor" in security
        assert "ix_jobs_lot_id" not in jobs and "ix_jobs_tool_started" in jobs
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


def _one_of_a_kind(conn: Connection) -> set[str]:
    return {
        str(ix["name"])
        for table in ("durables", "materials")
        for ix in inspect(conn).get_indexes(table)
        if ix["unique"]
    }


@pytest.mark.parametrize("database", DATABASES)
async def test_one_of_a_kind_per_tool_goes_down_to_the_list_indexes_and_up_only_when_kept(
    request: pytest.FixtureRequest, database: str
) -> None:
    """Revision 0024: one durable of a kind mounted on a tool, one material lot of a kind
    loaded on it (unique where on a tool). Up refuses a database where a tool has two of a
    kind already (a race before it), naming them, and changes nothing."""
    engine = create_engine(request.getfixturevalue(database))
    mine = {"ux_durables_tool_kind", "ux_materials_tool_kind"}
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_one_of_a_kind) == mine
        tool = ToolRegistration("WB-1", "wire_bonder", "modbus 127.0.0.1:5021", ("WIRE_BOND",))
        await EquipmentService(SqlUnitOfWorkFactory(engine)).register("line-a", [tool])
        await downgrade(engine, "0023")
        async with engine.connect() as conn:
            assert await conn.run_sync(_one_of_a_kind) == set()
            for name in ("CAP-1", "CAP-2", "CAP-3"):  # two on WB-1, as a race left them
                tool = "NULL" if name == "CAP-3" else "'WB-1'"
                await conn.execute(
                    text(
                        "INSERT INTO durables (id, kind, life, warn_permille, count, added_by, "
                        f"added_at, tool_id) VALUES ('{name}', 'capillary', 100, 900, 0, 'e', "
                        f"'2026-12-06 08:00:00+00:00', {tool})"
                    )
                )
            await conn.commit()
        with pytest.raises(RuntimeError, match=r"more: 2 capillary mounted on WB-1\. Expected one"):
            await upgrade(engine)
        assert (await schema_status(engine)).current == "0023"
        async with engine.connect() as conn:
            await conn.execute(text("UPDATE durables SET tool_id = NULL WHERE id = 'CAP-2'"))
            await conn.commit()
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_one_of_a_kind) == mine
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database", DATABASES)
async def test_one_lot_per_tool_goes_down_to_one_of_a_kind_and_up_only_when_kept(
    request: pytest.FixtureRequest, database: str, library: FlowLibrary
) -> None:
    """Revision 0025: one lot tracked in by hand on a tool (unique where by hand; the
    controller's own lots are not in it). Up refuses a database where two lots are tracked in
    by hand on one tool already (a race before it), naming them, and changes nothing."""
    engine = create_engine(request.getfixturevalue(database))
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            indexes = await conn.run_sync(_lot_indexes)
        assert "UNIQUE" in indexes["ux_lots_by_hand_tool"].upper()
        assert "WHERE" in indexes["ux_lots_by_hand_tool"]
        lots = LotService(SqlUnitOfWorkFactory(engine), library)
        for lot_id in ("L1", "L2", "L3"):
            await lots.start(StartLot(lot_id, "fo-organic", "op"))
        await downgrade(engine, "0024")
        async with engine.connect() as conn:
            assert "ux_lots_by_hand_tool" not in await conn.run_sync(_lot_indexes)
            for lot_id, by_hand in (("L1", True), ("L2", True), ("L3", False)):
                # L1 and L2 by hand on DB-1, as a race left them; L3 the controller's
                running = {"tool": "DB-1", "step": "DIE_ATTACH"} | (
                    {"by_hand": True} if by_hand else {}
                )
                await conn.execute(
                    text("UPDATE lots SET running = :running WHERE id = :id"),
                    {"running": json.dumps(running), "id": lot_id},
                )
            await conn.commit()
        with pytest.raises(RuntimeError, match=r"more: DB-1 runs lots L1, L2\. Expected one"):
            await upgrade(engine)
        assert (await schema_status(engine)).current == "0024"
        async with engine.connect() as conn:
            await conn.execute(text("UPDATE lots SET running = NULL WHERE id = 'L2'"))
            await conn.commit()
        await upgrade(engine)
        async with engine.connect() as conn:
            assert "ux_lots_by_hand_tool" in await conn.run_sync(_lot_indexes)
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


def _security_indexes(conn: Connection) -> set[str]:
    return {str(ix["name"]) for ix in inspect(conn).get_indexes("security_events")}


def _lot_indexes(conn: Connection) -> dict[str, str]:
    """The lots' indexes and their SQL, from the catalogue (SQLAlchemy does not reflect
    SQLite's indexes on expressions)."""
    if conn.dialect.name == "sqlite":
        catalogue = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'lots'"
    else:
        catalogue = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'lots'"
    return {str(name): str(sql) for name, sql in conn.execute(text(catalogue)).all()}


@pytest.mark.parametrize("database", DATABASES)
async def test_the_lot_tool_and_step_indexes_go_down_to_the_history_list_revision_and_up_again(
    request: pytest.FixtureRequest, database: str
) -> None:
    """Revision 0019: lots (running tool, ...) and (step, ...), for ``lot list --tool/--step``."""
    engine = create_engine(request.getfixturevalue(database))
    mine = {"ix_lots_tool", "ix_lots_step"}
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            indexes = await conn.run_sync(_lot_indexes)
        assert mine <= indexes.keys()
        # the lots on a tool only (Alembic compares no PostgreSQL index predicate)
        assert "WHERE" in indexes["ix_lots_tool"] and "WHERE" not in indexes["ix_lots_step"]
        await downgrade(engine, "0018")
        assert (await schema_status(engine)).current == "0018"
        async with engine.connect() as conn:
            indexes = await conn.run_sync(_lot_indexes)
        assert not mine & indexes.keys() and "ix_lots_flow" in indexes
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database", DATABASES)
async def test_the_outbox_subject_goes_down_with_the_durables_and_materials_events_and_up_again(
    request: pytest.FixtureRequest, database: str
) -> None:
    """Revision 0020: outbox.subject (lot, durable, material). Down, the rows that are not a
    lot's are deleted (the relay of 0019 would take them for lots' events); the lots' stay."""
    engine = create_engine(request.getfixturevalue(database))
    insert_row = (
        "INSERT INTO outbox (lot_id, kind, payload, created_at, subject) "
        "VALUES (:id, :kind, '{}', '2026-12-04 08:00:00+00:00', :subject)"
    )
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO outbox (lot_id, kind, payload, created_at) "
                    "VALUES ('L1', 'LotStarted', '{}', '2026-12-04 08:00:00+00:00')"
                )
            )
            await conn.execute(
                text(insert_row), {"id": "CAP-1", "kind": "DurableAdded", "subject": "durable"}
            )
            subjects = (await conn.execute(text("SELECT lot_id, subject FROM outbox"))).all()
        assert sorted(map(tuple, subjects)) == [("CAP-1", "durable"), ("L1", "lot")]
        await downgrade(engine, "0019")
        async with engine.connect() as conn:
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("outbox")}
            )
            rows = (await conn.execute(text("SELECT lot_id, kind FROM outbox"))).all()
        assert "subject" not in columns
        assert [tuple(r) for r in rows] == [("L1", "LotStarted")]
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            rows = (await conn.execute(text("SELECT lot_id, subject FROM outbox"))).all()
        assert [tuple(r) for r in rows] == [("L1", "lot")]
    finally:
        await engine.dispose()


TRIGGERS = {
    "sqlite": {
        ("flow_approvals", "flow_approvals_no_delete"),
        ("flow_approvals", "flow_approvals_no_update"),
        ("lot_history", "lot_history_no_delete"),
        ("lot_history", "lot_history_no_update"),
        ("lots", "lot_counts_delete"),
        ("lots", "lot_counts_insert"),
        ("lots", "lot_counts_update"),
        ("material_signatures", "material_signatures_no_delete"),
        ("material_signatures", "material_signatures_no_update"),
        ("security_events", "security_events_no_delete"),
        ("security_events", "security_events_no_update"),
        ("signatures", "signatures_no_delete"),
        ("signatures", "signatures_no_update"),
    },
    "postgresql": {
        ("flow_approvals", "flow_approvals_append_only"),
        ("lot_history", "lot_history_append_only"),
        ("lot_history", "lot_history_no_truncate"),
        ("lots", "lot_counts_delete"),
        ("lots", "lot_counts_insert"),
        ("lots", "lot_counts_update"),
        ("material_signatures", "material_signatures_append_only"),
        ("material_signatures", "material_signatures_no_truncate"),
        ("outbox", "outbox_notify"),
        ("security_events", "security_events_append_only"),
        ("security_events", "security_events_no_truncate"),
        ("signatures", "signatures_append_only"),
        ("signatures", "signatures_no_truncate"),
    },
}
"""What guards the history (append only) and keeps the finished lots' counts, at the head.
A revision that rebuilds a table (SQLite's batch_alter_table copies it, and its triggers do
not follow) must make them again: this catches one that does not."""


def _triggers(conn: Connection) -> set[tuple[str, str]]:
    if conn.dialect.name == "sqlite":
        query = "SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'"
    else:
        query = "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal"
    return {(str(table), str(name)) for table, name in conn.execute(text(query)).all()}


@pytest.mark.parametrize("database", DATABASES)
async def test_the_triggers_that_guard_the_history_are_there_at_the_head(
    request: pytest.FixtureRequest, database: str
) -> None:
    engine = create_engine(request.getfixturevalue(database))
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_triggers) == TRIGGERS[conn.dialect.name]
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database", DATABASES)
async def test_a_downgrade_refused_by_a_revision_undoes_the_revisions_before_it(
    request: pytest.FixtureRequest, database: str
) -> None:
    """Down from the head to 0026: revision 0027 refuses (a material lot is quarantined),
    after 0030 to 0028 went down. Nothing is changed, on SQLite too: there Alembic committed
    each revision on its own, and the refusal left the database at 0027 (the tools' declared
    states dropped) while saying nothing was changed."""
    from datetime import UTC, datetime

    engine = create_engine(request.getfixturevalue(database))
    try:
        await upgrade(engine)
        at = datetime(2026, 12, 1, tzinfo=UTC)
        async with engine.connect() as conn:
            await conn.execute(
                text(
                    "INSERT INTO materials (id, kind, expires_at, thaw_minutes, "
                    "floor_life_minutes, added_by, added_at, quarantine_code, quarantine_reason, "
                    "quarantined_by, quarantined_at, version) VALUES ('W-1', 'wire', :at, 0, 0, "
                    "'qa1', :at, 'RECALL', 'voids', 'qa1', :at, 1)"
                ),
                {"at": at},
            )
            await conn.commit()
        with pytest.raises(RuntimeError, match="quarantined material lots: W-1"):
            await downgrade(engine, "0026")
        assert (await schema_status(engine)).current == head_revision()
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []  # every column of the head still there
    finally:
        await engine.dispose()
