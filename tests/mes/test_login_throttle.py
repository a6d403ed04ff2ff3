"""The identity service throttles password checks per place a request came from: after
``limit`` failed checks from one host (wrong passwords, unknown names, at any accounts), its
next logins, signatures and password changes are refused before any hash is computed, each
refusal recorded; other places, and direct mode (no place), go on. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from argon2 import PasswordHasher

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.passwords import Argon2Passwords
from mes.adapters.sql_identity import SqlIdentityStore
from mes.domain.authority import Action, Principal, Role
from mes.domain.identity import EventKind, LoginRefused, TooManyFailures
from mes.domain.throttle import FailureThrottle
from mes.guard import REQUEST_PLACE
from mes.identity import IdentityService
from tests.mes.conftest import Clock

DATABASES = ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)]
ADMIN = Principal.file_owner("root-owner")
PASSWORD = "correct horse battery"
LIMIT = 3
WINDOW = timedelta(minutes=10)


class CountingPasswords(Argon2Passwords):
    """argon2id at a small cost, counting the checks (each one the CPU a flood spends)."""

    def __init__(self) -> None:
        super().__init__(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        self.checks = 0

    def verify(self, hashed: str, password: str) -> bool:
        self.checks += 1
        return super().verify(hashed, password)


@pytest.fixture
def passwords() -> CountingPasswords:
    return CountingPasswords()


@pytest.fixture(params=DATABASES)
async def identity(
    request: pytest.FixtureRequest, clock: Clock, passwords: CountingPasswords
) -> AsyncIterator[IdentityService]:
    engine = create_engine(request.getfixturevalue(request.param))
    try:
        await upgrade(engine)
        throttle = FailureThrottle(LIMIT, WINDOW)
        service = IdentityService(SqlIdentityStore(engine), passwords, clock, throttle)
        for name in ("olga", "piet"):
            await service.add_user(ADMIN, name, name.title(), {Role.QUALITY}, password=PASSWORD)
            await service.set_password(ADMIN, name, "set by the admin")
            await service.change_own_password(name, "set by the admin", PASSWORD)
        yield service
    finally:
        await engine.dispose()


@pytest.fixture
def place() -> Iterator[None]:
    """The requests of the test come from one host, as the server says for each."""
    token = REQUEST_PLACE.set("host 10.0.4.33")
    yield
    REQUEST_PLACE.reset(token)


async def _fail_from_here(identity: IdentityService) -> None:
    """``LIMIT`` failed checks at different accounts, none of them locked."""
    for name in ("olga", "nobody", "piet")[:LIMIT]:
        with pytest.raises(LoginRefused):
            await identity.login(name, "a guess")


@pytest.mark.usefixtures("place")
async def test_a_host_past_the_limit_has_no_password_checked_and_each_refusal_is_recorded(
    identity: IdentityService, passwords: CountingPasswords, clock: Clock
) -> None:
    await _fail_from_here(identity)
    checks = passwords.checks
    with pytest.raises(TooManyFailures) as refused:  # the right password: not even checked
        await identity.login("piet", PASSWORD)
    assert passwords.checks == checks
    assert "too many failed password checks from host 10.0.4.33 (3 in 10 minutes)" in str(
        refused.value
    )
    assert refused.value.kind == "too_many_failures"
    assert 0 < refused.value.retry_after_seconds <= WINDOW.total_seconds()
    event = (await identity.events(ADMIN))[-1]
    assert (event.kind, event.actor, event.subject) == (EventKind.LOGIN_FAILED, "piet", None)
    assert event.detail["why"] == "too many failed password checks from here: not checked"
    assert event.detail["failures"] == LIMIT
    assert not (await identity.user(ADMIN, "piet")).locked(clock.now)  # no account's count

    token = REQUEST_PLACE.set("host 10.0.4.34")  # another host logs in as ever
    try:
        assert (await identity.login("piet", PASSWORD)).name == "piet"
    finally:
        REQUEST_PLACE.reset(token)

    clock.now += WINDOW  # the failures age out: the host logs in again
    assert (await identity.login("piet", PASSWORD)).name == "piet"


@pytest.mark.usefixtures("place")
async def test_signatures_and_password_changes_from_a_throttled_host_are_refused_unchecked(
    identity: IdentityService, passwords: CountingPasswords
) -> None:
    await _fail_from_here(identity)
    checks = passwords.checks
    with pytest.raises(TooManyFailures):
        await identity.verify_signer("olga", PASSWORD, action=Action.RELEASE, lot_id="L-7")
    with pytest.raises(TooManyFailures):
        await identity.change_own_password("olga", PASSWORD, "olga's next secret")
    assert passwords.checks == checks
    refusals = (await identity.events(ADMIN))[-2:]
    assert [(e.kind, e.action, e.lot_id) for e in refusals] == [
        (EventKind.SIGNATURE_FAILED, Action.RELEASE.value, "L-7"),
        (EventKind.LOGIN_FAILED, None, None),
    ]
    assert refusals[1].detail["purpose"] == "passwd"


async def test_direct_mode_has_no_place_and_only_the_lockout_counts(
    identity: IdentityService,
) -> None:
    """The CLI on the database's host: the OS account is the whole story (no request, no
    place); failures at several accounts throttle nothing."""
    await _fail_from_here(identity)
    await _fail_from_here(identity)
    assert (await identity.login("piet", PASSWORD)).name == "piet"
