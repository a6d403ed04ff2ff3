"""Hold and scrap reason codes, kept by quality: a hold or scrap names a code of the right
kind, active, beside its free text (which alone keeps working); a bad code is refused
saying what was expected, changing nothing; a hold whose code names who may release it is
released by them only, and a refusal is recorded as a security event. Every store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flows import FlowLibrary
from mes.domain import commands as cmd
from mes.domain.authority import Action, AuthMethod, NotAuthorized, Principal, Role
from mes.domain.errors import InvalidInput, OperationNotAllowed
from mes.domain.identity import EventKind, SecurityEvent
from mes.domain.model import LotState
from mes.domain.reasons import ReasonCode, ReasonKind, check_release, releases
from mes.domain.signatures import SignatureGiven
from mes.ports import UnitOfWorkFactory
from mes.reasons import ReasonService
from mes.service import LotService
from tests.mes.conftest import Clock
from tests.mes.signers import Signers, signed


def _person(name: str, *roles: Role) -> Principal:
    return Principal(name, frozenset(roles), AuthMethod.PASSWORD)


QUALITY = _person("q1", Role.QUALITY)
OPERATOR = _person("op1", Role.OPERATOR)
ENGINEER = _person("eng1", Role.ENGINEER)


class Log:
    def __init__(self) -> None:
        self.events: list[SecurityEvent] = []

    async def record(self, event: SecurityEvent) -> None:
        self.events.append(event)


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def reasons(store: UnitOfWorkFactory, clock: Clock, log: Log) -> ReasonService:
    return ReasonService(store, clock, principal=QUALITY, security=log)


@pytest.fixture
def lots(store: UnitOfWorkFactory, library: FlowLibrary, clock: Clock, log: Log) -> LotService:
    signers = Signers([OPERATOR, QUALITY, ENGINEER])
    return LotService(store, library, clock, principal=OPERATOR, security=log, verifier=signers)


@pytest.fixture
async def catalogue(reasons: ReasonService) -> None:
    await reasons.add("VOID", "hold", "voids seen at X-ray", "q1", release_roles=["engineer"])
    await reasons.add("INSP", "hold", "incoming inspection", "q1")
    await reasons.add("DROP", "scrap", "dropped carrier", "q1")


@pytest.mark.usefixtures("catalogue")
async def test_a_hold_names_a_code_beside_its_free_text_and_reason_alone_still_works(
    lots: LotService,
) -> None:
    await lots.start(cmd.StartLot("L1", "fo-organic", "op1"))
    held = await lots.hold(cmd.HoldLot("L1", "op1", "carrier 2, corner", code="INSP"))
    assert held.lot.hold is not None and held.lot.hold.code == "INSP"
    assert held.lot.hold.reason == "INSP incoming inspection: carrier 2, corner"
    assert held.entries[0].data["code"] == "INSP"
    await lots.release(cmd.ReleaseLot("L1", "op1"), signatures=signed(OPERATOR, held.lot))
    plain = await lots.hold(cmd.HoldLot("L1", "op1", "looks odd"))
    assert plain.lot.hold is not None and plain.lot.hold.code is None
    assert plain.lot.hold.reason == "looks odd"


@pytest.mark.usefixtures("catalogue")
@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("NOPE", "there is no hold reason code NOPE; expected one of the catalogue"),
        ("DROP", "reason code DROP is a scrap code; expected a hold code"),
    ],
)
async def test_a_hold_with_an_unknown_or_scrap_code_is_refused_changing_nothing(
    lots: LotService, code: str, says: str
) -> None:
    await lots.start(cmd.StartLot("L1", "fo-organic", "op1"))
    before = await lots.get("L1")
    with pytest.raises(InvalidInput, match=says):
        await lots.hold(cmd.HoldLot("L1", "op1", "", code=code))
    assert await lots.get("L1") == before


@pytest.mark.usefixtures("catalogue")
async def test_a_misspelt_code_is_refused_naming_the_closest_active_code_of_its_kind(
    lots: LotService, reasons: ReasonService
) -> None:
    lot = (await lots.start(cmd.StartLot("L1", "fo-organic", "op1"))).lot
    before = await lots.get("L1")
    with pytest.raises(InvalidInput, match=r"hold reason code VIOD \(did you mean VOID\?\)") as e:
        await lots.hold(cmd.HoldLot("L1", "op1", "", code="VIOD"))
    assert e.value.allowed == ("INSP", "VOID")
    with pytest.raises(InvalidInput, match=r"scrap reason code DORP \(did you mean DROP\?\)"):
        await lots.acting_as(QUALITY).scrap(
            cmd.ScrapLot("L1", "q1", "", code="DORP"), signatures=signed(QUALITY, lot)
        )
    # only a code that may be given: no scrap code for a hold, no retired one
    await reasons.retire("INSP", "q1", "replaced")
    with pytest.raises(InvalidInput) as e:
        await lots.hold(cmd.HoldLot("L1", "op1", "", code="DRP"))
    assert "did you mean" not in e.value.message and e.value.allowed == ("VOID",)
    with pytest.raises(InvalidInput) as e:
        await lots.hold(cmd.HoldLot("L1", "op1", "", code="INPS"))
    assert "did you mean" not in e.value.message
    assert await lots.get("L1") == before


@pytest.mark.usefixtures("catalogue")
async def test_a_retired_code_is_refused_and_retiring_twice_is_refused(
    lots: LotService, reasons: ReasonService
) -> None:
    retired = await reasons.retire("INSP", "q1", "replaced by INSP2")
    assert not retired.active
    assert [r.code for r in await reasons.find(kind=ReasonKind.HOLD)] == ["VOID"]
    assert len(await reasons.find(retired=True)) == 3
    await lots.start(cmd.StartLot("L1", "fo-organic", "op1"))
    with pytest.raises(InvalidInput, match="INSP was retired"):
        await lots.hold(cmd.HoldLot("L1", "op1", "", code="INSP"))
    with pytest.raises(OperationNotAllowed, match="retired already"):
        await reasons.retire("INSP", "q1", "again")


@pytest.mark.usefixtures("catalogue")
async def test_a_hold_whose_code_names_engineering_is_released_by_engineering_only(
    lots: LotService, log: Log
) -> None:
    await lots.start(cmd.StartLot("L1", "fo-organic", "op1"))
    held = (await lots.hold(cmd.HoldLot("L1", "op1", "", code="VOID"))).lot
    with pytest.raises(NotAuthorized, match="its hold, code VOID, is released by engineer"):
        await lots.release(cmd.ReleaseLot("L1", "op1"), signatures=signed(OPERATOR, held))
    assert (await lots.get("L1")).state is LotState.HOLD
    assert log.events[-1].action == Action.RELEASE.value and log.events[-1].lot_id == "L1"
    released = await lots.release(
        cmd.ReleaseLot("L1", "eng1"), by=ENGINEER, signatures=signed(ENGINEER, held)
    )
    assert released.lot.state is LotState.WAITING


@pytest.mark.usefixtures("catalogue")
async def test_a_code_refuses_a_release_before_the_signatures_password_is_checked(
    lots: LotService, log: Log
) -> None:
    """Quality, whom the table lets release an operator's hold but the code VOID does not,
    signing with a wrong password: refused for the code (not_authorized, recorded), not for
    the password (which would count towards quality's own lockout)."""
    await lots.start(cmd.StartLot("L1", "fo-organic", "op1"))
    held = (await lots.hold(cmd.HoldLot("L1", "op1", "", code="VOID"))).lot
    wrong = (SignatureGiven("q1", "approved", password="not-it", lot_version=held.version),)
    for signatures in (wrong, signed(QUALITY, held), ()):
        with pytest.raises(NotAuthorized, match="code VOID, is released by engineer") as e:
            await lots.release(cmd.ReleaseLot("L1", "q1"), by=QUALITY, signatures=signatures)
        assert e.value.allowed == ("engineer",)
        refused = log.events[-1]
        assert refused.kind is EventKind.REFUSED and refused.actor == "q1"
        assert refused.action == Action.RELEASE.value and refused.lot_id == "L1"
        assert refused.detail["needed"] == ["engineer"]
    assert (await lots.get("L1")).state is LotState.HOLD


@pytest.mark.usefixtures("catalogue")
async def test_a_refusal_of_a_role_that_releases_nothing_names_who_releases_that_hold(
    lots: LotService, log: Log
) -> None:
    """An ERP key (viewer) refused the release of a lot held with VOID is told engineer, not
    every role that releases some hold; signed or not."""
    erp = Principal("erp", frozenset({Role.VIEWER}), AuthMethod.API_KEY)
    await lots.start(cmd.StartLot("L1", "fo-organic", "op1"))
    held = (await lots.hold(cmd.HoldLot("L1", "op1", "", code="VOID"))).lot
    for signatures in ((), signed(erp, held)):
        with pytest.raises(NotAuthorized) as e:
            await lots.release(cmd.ReleaseLot("L1", "erp"), by=erp, signatures=signatures)
        assert e.value.allowed == ("engineer",), e.value.message
        assert log.events[-1].detail["needed"] == ["engineer"]


@pytest.mark.usefixtures("catalogue")
async def test_a_scrap_names_a_scrap_code(lots: LotService, library: FlowLibrary) -> None:
    quality = lots.acting_as(QUALITY)
    lot = (await lots.start(cmd.StartLot("L1", "fo-organic", "op1"))).lot
    with pytest.raises(InvalidInput, match="VOID is a hold code; expected a scrap code"):
        await quality.scrap(
            cmd.ScrapLot("L1", "q1", "", code="VOID"), signatures=signed(QUALITY, lot)
        )
    scrapped = await quality.scrap(
        cmd.ScrapLot("L1", "q1", "", code="DROP"), signatures=signed(QUALITY, lot)
    )
    assert scrapped.lot.state is LotState.SCRAPPED
    assert scrapped.entries[0].reason == "DROP dropped carrier"
    assert scrapped.entries[0].data["code"] == "DROP"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("v", "hold", "x"), "is not valid"),
        (("V", "pause", "x"), "expected hold or scrap"),
        (("V", "hold", " "), "needs a text"),
    ],
)
async def test_a_bad_code_kind_or_text_is_refused(
    reasons: ReasonService, args: tuple[str, str, str], says: str
) -> None:
    with pytest.raises(InvalidInput, match=says):
        await reasons.add(*args, "q1")
    with pytest.raises(InvalidInput, match="'boss' is not a role"):
        await reasons.add("V", "hold", "x", "q1", release_roles=["boss"])
    with pytest.raises(InvalidInput, match="a scrap is not released"):
        await reasons.add("V", "scrap", "x", "q1", release_roles=["quality"])
    assert await reasons.find(retired=True) == []


@pytest.mark.parametrize("role", ["viewer", "admin", "controller", "technician"])
async def test_a_hold_code_released_by_a_role_that_releases_no_lot_is_refused(
    reasons: ReasonService, role: str
) -> None:
    """A hold code whose --release-by names only roles that may release no lot (a viewer
    reads, an admin keeps accounts) was added, and every lot held with it could be released
    by no one: check_release asks for that role, the roles table refuses it the release."""
    with pytest.raises(InvalidInput, match=rf"--release-by {role}: that role releases no lot"):
        await reasons.add("STUCK", "hold", "x", "q1", release_roles=[role, "quality"])
    assert await reasons.find(retired=True) == []
    await reasons.add("OK", "hold", "x", "q1", release_roles=["operator", "quality"])


async def test_only_quality_keeps_the_catalogues(reasons: ReasonService, log: Log) -> None:
    with pytest.raises(NotAuthorized) as refused:
        await reasons.acting_as(ENGINEER).add("V", "hold", "x", "eng1")
    assert refused.value.allowed == ("quality",)
    assert log.events[-1].action == Action.REASONS.value


@pytest.mark.parametrize("named", [frozenset(), frozenset({Role.ENGINEER}), frozenset(Role)])
def test_releases_answers_as_check_release_for_every_role(named: frozenset[Role]) -> None:
    """What the station offers (``releases``) is what the service allows (``check_release``)
    for a hold placed with a code naming ``named`` (none: as the table says)."""
    at = datetime(2026, 12, 1, tzinfo=UTC)
    code = ReasonCode("VOID", ReasonKind.HOLD, "voids", "quinn", at, release_roles=named)
    for role in Role:
        who = Principal("p", frozenset({role}), AuthMethod.SESSION)
        try:
            check_release(who, "L1", code)
            allowed = True
        except NotAuthorized:
            allowed = False
        assert releases(who, code) is allowed, role
        assert releases(who, None)
