"""A material lot's release from quarantine is electronically signed, as a hold's release
is: refused without the signature (recorded as a refusal of authority), and with one given
for another version of the material lot (a replay: the release bumped it); the signature
recorded with the ``released`` event, on every store; on SQLite and PostgreSQL a row of
``material_signatures`` too, which ``audit verify`` checks against the event."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mes.adapters.audit import guard_names, verify_history
from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain.audit import Finding
from mes.domain.authority import AuthMethod, Principal, Role
from mes.domain.identity import EventKind
from mes.domain.signatures import (
    SignatureMethod,
    SignaturePolicy,
    SignatureRefused,
    SignatureRequired,
    SignatureStale,
)
from mes.materials import MaterialService
from mes.ports import UnitOfWorkFactory
from mes.reasons import ReasonService
from tests.mes.conftest import Clock
from tests.mes.signers import Signers, signed
from tests.mes.test_service_authority import Log

QUALITY = Principal("qa1", frozenset({Role.QUALITY}), AuthMethod.SESSION, printed_name="Q. One")
SECOND = Principal("qa2", frozenset({Role.QUALITY}), AuthMethod.SESSION)
ENGINEER = Principal("pe1", frozenset({Role.ENGINEER}), AuthMethod.SESSION)


def _service(
    store: UnitOfWorkFactory, clock: Clock, log: Log, policy: SignaturePolicy | None = None
) -> MaterialService:
    return MaterialService(
        store,
        clock,
        principal=QUALITY,
        security=log,
        signatures=policy,
        verifier=Signers([QUALITY, SECOND, ENGINEER]),
    )


async def _quarantined(store: UnitOfWorkFactory, materials: MaterialService, clock: Clock) -> None:
    await ReasonService(store, clock).add("RECALL", "hold", "Material recall", "qa1")
    await materials.add("W-1", "wire", clock.now + timedelta(days=90), "qa1")
    await materials.quarantine("W-1", "RECALL", "kinks", "qa1")


async def test_a_release_from_quarantine_is_signed_and_a_replay_changes_nothing(
    store: UnitOfWorkFactory, clock: Clock
) -> None:
    log = Log()
    materials = _service(store, clock, log)
    await _quarantined(store, materials, clock)
    seen = (await materials.show("W-1")).material
    assert seen.version == 2  # added, quarantined

    with pytest.raises(SignatureRequired) as required:
        await materials.release("W-1", "supplier cleared it", "qa1")
    assert required.value.message.startswith(
        "The release of material lot W-1 from quarantine must be signed by one person"
    )
    assert required.value.meaning == "approved release from quarantine"
    with pytest.raises(SignatureRefused, match="the first signature must be that of qa1"):
        await materials.release("W-1", "cleared", "qa1", signatures=signed(SECOND, seen))
    assert (await materials.show("W-1")).material == seen  # nothing changed

    signature = signed(QUALITY, seen, "approved release: supplier cleared it")
    released = await materials.release("W-1", "supplier cleared it", "qa1", signatures=signature)
    assert released.quarantine is None and released.version == 3
    shown = await materials.show("W-1")
    assert shown.material == released
    event = shown.events[-1]
    assert (event.event.value, event.version) == ("released", 3)
    assert [(s.signer, s.printed_name, s.meaning, s.method, s.at) for s in event.signatures] == [
        (
            "qa1",
            "Q. One",
            "approved release: supplier cleared it",
            SignatureMethod.PASSWORD,
            event.at,
        )
    ]

    await materials.quarantine("W-1", "RECALL", "kinks again", "qa1")
    with pytest.raises(SignatureStale) as stale:  # the same signed request, sent again
        await materials.release("W-1", "supplier cleared it", "qa1", signatures=signature)
    assert "given for material lot W-1 at version 2; the material lot is at version 4" in (
        stale.value.message
    )
    assert (await materials.show("W-1")).material.quarantine is not None

    refused = [e for e in log.events if e.kind is EventKind.SIGNATURE_REFUSED]
    assert [(e.actor, e.action, e.lot_id, e.detail["error"]) for e in refused] == [
        ("qa1", "material_release", "W-1", "signature_required"),
        ("qa1", "material_release", "W-1", "signature_refused"),
        ("qa1", "material_release", "W-1", "signature_stale"),
    ]


async def test_two_signers_where_the_configuration_asks_and_a_signer_needs_quality(
    store: UnitOfWorkFactory, clock: Clock
) -> None:
    log = Log()
    materials = _service(store, clock, log, SignaturePolicy.from_names(["material_release"]))
    await _quarantined(store, materials, clock)
    seen = (await materials.show("W-1")).material
    with pytest.raises(SignatureRequired, match="must be signed by two different people"):
        await materials.release("W-1", "cleared", "qa1", signatures=signed(QUALITY, seen))
    with pytest.raises(SignatureRefused, match="pe1 may not sign the release of material lot"):
        await materials.release(
            "W-1", "cleared", "qa1", signatures=signed(QUALITY, seen) + signed(ENGINEER, seen)
        )
    both = signed(QUALITY, seen) + signed(SECOND, seen)
    released = await materials.release("W-1", "cleared", "qa1", signatures=both)
    assert released.quarantine is None
    last = (await materials.show("W-1")).events[-1]
    assert [s.signer for s in last.signatures] == ["qa1", "qa2"]


@pytest.mark.parametrize(
    "database", ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)]
)
async def test_audit_verify_checks_a_release_signature_against_its_event(
    request: pytest.FixtureRequest, database: str, clock: Clock
) -> None:
    engine = create_engine(request.getfixturevalue(database))
    try:
        await upgrade(engine)
        store = SqlUnitOfWorkFactory(engine)
        materials = _service(store, clock, Log())
        await _quarantined(store, materials, clock)
        seen = (await materials.show("W-1")).material
        await materials.release("W-1", "cleared", "qa1", signatures=signed(QUALITY, seen))
        rows = await _rows(
            engine, "SELECT material_id, material_version, signer FROM material_signatures"
        )
        assert rows == [("W-1", 3, "qa1")]
        found = await verify_history(engine)
        assert found.problem is None and found.signatures == 1

        async with engine.begin() as conn:  # the guards first, as one who changes it would
            for name in guard_names("material_signatures", engine.dialect.name):
                on = " ON material_signatures" if engine.dialect.name == "postgresql" else ""
                await conn.execute(text(f"DROP TRIGGER {name}{on}"))
            await conn.execute(text("UPDATE material_signatures SET meaning = 'approved, really'"))
        found = await verify_history(engine)
        assert found.problem is not None
        assert found.problem.finding is Finding.SIGNATURE_CHANGED
        assert found.problem.message.startswith("material lot signatures: signature 1")

        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM material_signatures"))
        found = await verify_history(engine)
        assert found.problem is not None and found.problem.finding is Finding.SIGNATURE_MISSING
    finally:
        await engine.dispose()


async def _rows(engine: AsyncEngine, query: str) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(text(query))]
