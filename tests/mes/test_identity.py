"""Users and their roles in the database: added, changed, disabled by an admin only (a
refusal recorded, nothing changed), password logins with lockout, API keys for systems; every
change a security event. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.passwords import Argon2Passwords
from mes.adapters.sql_identity import SqlIdentityStore
from mes.domain.authority import AuthMethod, NotAuthorized, Principal, Role
from mes.domain.errors import InvalidInput, RecordExists
from mes.domain.identity import (
    LOCKOUT,
    MAX_FAILED_ATTEMPTS,
    EventKind,
    LoginRefused,
    UnknownUser,
    UserExists,
    UserKind,
)
from mes.identity import IdentityService
from tests.mes.conftest import Clock

DATABASES = ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)]
ADMIN = Principal.file_owner("root-owner")
PASSWORD = "correct horse battery"


@pytest.fixture(params=DATABASES)
async def identity(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[IdentityService]:
    engine = create_engine(request.getfixturevalue(request.param))
    try:
        await upgrade(engine)
        # argon2id with a small cost: the tests hash and check many passwords
        passwords = Argon2Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        yield IdentityService(SqlIdentityStore(engine), passwords, clock)
    finally:
        await engine.dispose()


async def _kinds(identity: IdentityService) -> list[EventKind]:
    return [e.kind for e in await identity.events(ADMIN)]


async def test_the_controller_has_its_system_identity_from_the_start(
    identity: IdentityService,
) -> None:
    controller = await identity.user(ADMIN, "controller")
    assert controller.kind is UserKind.SYSTEM and controller.roles == {Role.CONTROLLER}
    assert controller.password_hash is None


async def test_an_admin_adds_a_user_with_an_argon2id_hash_and_it_is_recorded(
    identity: IdentityService, clock: Clock
) -> None:
    added = await identity.add_user(
        ADMIN, "alice", "Alice Martin", {Role.OPERATOR}, password=PASSWORD
    )
    shown = await identity.user(ADMIN, "alice")
    assert shown == added
    assert shown.password_hash is not None and shown.password_hash.startswith("$argon2id$")
    assert PASSWORD not in shown.password_hash
    assert "password_hash" not in shown.to_dict(clock.now)
    assert [u.username for u in await identity.users(ADMIN)] == ["alice", "controller"]
    events = await identity.events(ADMIN)
    assert events[-1].kind is EventKind.USER_ADDED
    assert (events[-1].actor, events[-1].method, events[-1].subject) == (
        "root-owner",
        AuthMethod.FILE_OWNER,
        "alice",
    )
    with pytest.raises(UserExists):
        await identity.add_user(ADMIN, "alice", "Another Alice", {Role.QUALITY})


async def test_a_non_admin_is_refused_user_changes_and_the_refusal_is_recorded(
    identity: IdentityService,
) -> None:
    await identity.add_user(ADMIN, "bob", "Bob Stone", {Role.OPERATOR, Role.ENGINEER})
    bob = (await identity.user(ADMIN, "bob")).principal(AuthMethod.PASSWORD)
    with pytest.raises(NotAuthorized, match="needs the role admin"):
        await identity.change_roles(bob, "bob", {Role.QUALITY}, ())
    with pytest.raises(NotAuthorized):
        await identity.add_user(bob, "mallory", "Mallory", {Role.ADMIN})
    assert (await identity.user(ADMIN, "bob")).roles == {Role.OPERATOR, Role.ENGINEER}
    with pytest.raises(UnknownUser):
        await identity.user(ADMIN, "mallory")
    events = await identity.events(ADMIN)
    refused = [e for e in events if e.kind is EventKind.REFUSED]
    assert [(e.actor, e.action, e.detail["needed"]) for e in refused] == [
        ("bob", "users", ["admin"]),
        ("bob", "users", ["admin"]),
    ]


async def test_roles_are_added_and_removed_and_bad_ones_refused_with_the_allowed_list(
    identity: IdentityService,
) -> None:
    await identity.add_user(ADMIN, "carol", "Carol Wu", {Role.OPERATOR})
    changed = await identity.change_roles(ADMIN, "carol", {Role.QUALITY}, {Role.OPERATOR})
    assert changed.user.roles == {Role.QUALITY} and changed.changed
    with pytest.raises(InvalidInput, match="controller role") as refused:
        await identity.change_roles(ADMIN, "carol", {Role.CONTROLLER}, ())
    assert "controller" not in refused.value.allowed
    with pytest.raises(InvalidInput, match="at least one role"):  # disable instead (probe)
        await identity.change_roles(ADMIN, "carol", (), {Role.QUALITY})
    assert (await identity.user(ADMIN, "carol")).roles == {Role.QUALITY}
    assert (await _kinds(identity))[-1] is EventKind.ROLES_CHANGED


async def test_bad_names_and_short_passwords_are_refused_and_nothing_is_added(
    identity: IdentityService,
) -> None:
    with pytest.raises(InvalidInput, match="not valid"):
        await identity.add_user(ADMIN, "Alice Smith", "Alice", {Role.OPERATOR})
    with pytest.raises(InvalidInput, match="at least 10"):
        await identity.add_user(ADMIN, "dave", "Dave", {Role.OPERATOR}, password="short")
    assert [u.username for u in await identity.users(ADMIN)] == ["controller"]


async def test_a_password_login_gives_the_users_principal(identity: IdentityService) -> None:
    await identity.add_user(ADMIN, "erin", "Erin Ito", {Role.QUALITY}, password=PASSWORD)
    principal = await identity.login("erin", PASSWORD)
    assert principal == Principal(
        "erin", frozenset({Role.QUALITY}), AuthMethod.PASSWORD, "Erin Ito"
    )
    assert (await _kinds(identity))[-1] is EventKind.LOGIN


async def test_repeated_wrong_passwords_lock_the_account_until_the_lockout_ends(
    identity: IdentityService, clock: Clock
) -> None:
    await identity.add_user(ADMIN, "frank", "Frank Ode", {Role.OPERATOR}, password=PASSWORD)
    for _ in range(MAX_FAILED_ATTEMPTS):
        with pytest.raises(LoginRefused):
            await identity.login("frank", "wrong password!")
    with pytest.raises(LoginRefused):  # locked: even the right password is refused
        await identity.login("frank", PASSWORD)
    events = await identity.events(ADMIN)
    assert [e.kind for e in events].count(EventKind.LOCKED_OUT) == 1
    assert events[-1].detail == {"why": "locked"}
    assert (await identity.user(ADMIN, "frank")).locked(clock.now)
    clock.now += LOCKOUT + timedelta(seconds=1)
    assert (await identity.login("frank", PASSWORD)).name == "frank"


async def test_an_admin_password_reset_unlocks_and_a_disabled_user_cannot_log_in(
    identity: IdentityService,
) -> None:
    await identity.add_user(ADMIN, "gina", "Gina Ruiz", {Role.ENGINEER}, password=PASSWORD)
    for _ in range(MAX_FAILED_ATTEMPTS):
        with pytest.raises(LoginRefused):
            await identity.login("gina", "not the password")
    await identity.set_password(ADMIN, "gina", "a new password set by admin")
    assert (await identity.login("gina", "a new password set by admin")).name == "gina"
    await identity.set_disabled(ADMIN, "gina", True, reason="left the company")
    with pytest.raises(LoginRefused):
        await identity.login("gina", "a new password set by admin")
    assert (await _kinds(identity))[-2:] == [EventKind.USER_DISABLED, EventKind.LOGIN_FAILED]


async def test_an_unknown_name_is_refused_like_a_wrong_password(identity: IdentityService) -> None:
    with pytest.raises(LoginRefused) as refused:
        await identity.login("nobody", PASSWORD)
    assert "wrong user name or password" in refused.value.message
    event = (await identity.events(ADMIN))[-1]
    assert (event.kind, event.actor, event.detail) == (
        EventKind.LOGIN_FAILED,
        "nobody",
        {"why": "unknown user"},
    )


async def test_an_api_key_identifies_its_system_until_revoked_and_is_stored_hashed(
    identity: IdentityService, request: pytest.FixtureRequest
) -> None:
    key, token = await identity.issue_api_key(ADMIN, "controller", "line 1 controller")
    principal = await identity.authenticate_api_key(token)
    assert (principal.name, principal.roles, principal.method) == (
        "controller",
        {Role.CONTROLLER},
        AuthMethod.API_KEY,
    )
    secret = token.removeprefix(f"pkl_{key.key_id}_")  # the secret may hold "_"
    assert secret not in key.key_hash
    with pytest.raises(LoginRefused):
        await identity.authenticate_api_key(token[:-1] + ("A" if token[-1] != "A" else "B"))
    await identity.revoke_api_key(ADMIN, key.key_id)
    with pytest.raises(LoginRefused):
        await identity.authenticate_api_key(token)
    await identity.add_user(ADMIN, "hank", "Hank Po", {Role.OPERATOR})
    with pytest.raises(InvalidInput, match="API keys are for systems"):
        await identity.issue_api_key(ADMIN, "hank", "no")


async def test_a_system_has_one_live_key_per_label_and_its_keys_are_listed(
    identity: IdentityService,
) -> None:
    """A key request sent again after its answer was lost (its token held by nobody) issues
    no second live key: refused naming the live one, nothing written; once that one is
    revoked the label is free again. The list shows every key, the newest first."""
    first, _ = await identity.issue_api_key(ADMIN, "controller", "line 1")
    events = len(await identity.events(ADMIN))
    with pytest.raises(RecordExists, match=f"labelled 'line 1' already: {first.key_id}") as taken:
        await identity.issue_api_key(ADMIN, "controller", "line 1")
    assert taken.value.allowed == (first.key_id,)
    assert "pkgline user revoke-key" in taken.value.message
    assert len(await identity.events(ADMIN)) == events  # nothing recorded, nothing issued
    other, _ = await identity.issue_api_key(ADMIN, "controller", "line 2")
    await identity.revoke_api_key(ADMIN, first.key_id)
    again, _ = await identity.issue_api_key(ADMIN, "controller", "line 1")
    listed = await identity.api_keys(ADMIN, "controller")
    assert [(k.key_id, k.label, k.revoked_at is not None) for k in listed] == [
        (again.key_id, "line 1", False),
        (other.key_id, "line 2", False),
        (first.key_id, "line 1", True),
    ]
    with pytest.raises(UnknownUser):
        await identity.api_keys(ADMIN, "nobody")
    operator = Principal("olga", frozenset({Role.OPERATOR}), AuthMethod.SESSION)
    with pytest.raises(NotAuthorized):
        await identity.api_keys(operator, "controller")
    assert (await identity.events(ADMIN))[-1].kind is EventKind.REFUSED


async def test_keys_of_one_label_issued_at_once_give_one_live_key(
    identity: IdentityService,
) -> None:
    results = await asyncio.gather(
        *(identity.issue_api_key(ADMIN, "controller", "at once") for _ in range(4)),
        return_exceptions=True,
    )
    issued = [r for r in results if not isinstance(r, BaseException)]
    assert len(issued) == 1, results
    assert all(isinstance(r, RecordExists) for r in results if isinstance(r, BaseException))
    assert len(await identity.api_keys(ADMIN, "controller")) == 1


async def test_the_security_log_is_append_only(identity: IdentityService) -> None:
    await identity.add_user(ADMIN, "ivan", "Ivan Roe", {Role.OPERATOR})
    engine = identity._store._engine  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="append-only"):
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM security_events"))
    assert EventKind.USER_ADDED in await _kinds(identity)


async def test_the_same_change_of_ones_own_password_sent_again_is_done_already(
    identity: IdentityService,
) -> None:
    """The probe's: the station's Password form sent twice (a double click, the browser's
    back button and the form again) changed the password, then answered the second "login
    refused: wrong user name or password", recorded a failed login and counted it towards
    the lockout, as if someone had guessed. The same change again is done already: nothing
    is written, nothing counted."""
    await identity.add_user(ADMIN, "hana", "Hana Sato", {Role.OPERATOR}, password=PASSWORD)
    for _ in range(2):
        await identity.change_own_password("hana", PASSWORD, "hana's own secret")
    assert (await identity.user(ADMIN, "hana")).failed_attempts == 0
    kinds = await _kinds(identity)
    assert kinds.count(EventKind.PASSWORD_CHANGED) == 1 and EventKind.LOGIN_FAILED not in kinds
    assert (await identity.login("hana", "hana's own secret")).name == "hana"
    with pytest.raises(LoginRefused):  # a wrong current password is still refused, counted
        await identity.change_own_password("hana", "not the password", "another secret!")
    assert (await identity.user(ADMIN, "hana")).failed_attempts == 1


async def test_a_locked_account_learns_nothing_from_a_change_whose_new_password_is_right(
    identity: IdentityService, clock: Clock
) -> None:
    """ "Done already" is no way round the lockout: on a locked account (guessed at from a
    session left open), a change whose new password happens to be the account's is refused
    like any other, not answered as done."""
    await identity.add_user(ADMIN, "ines", "Ines Mota", {Role.OPERATOR}, password=PASSWORD)
    for _ in range(MAX_FAILED_ATTEMPTS):
        with pytest.raises(LoginRefused):
            await identity.change_own_password("ines", "a guess", "another guess!")
    assert (await identity.user(ADMIN, "ines")).locked(clock.now)
    with pytest.raises(LoginRefused):
        await identity.change_own_password("ines", "a guess", PASSWORD)
    assert (await _kinds(identity))[-1] is EventKind.LOGIN_FAILED


class _BothAtOnce:
    """Passwords whose first two checks wait for each other (a barrier), so that two changes
    each read and check the current password before either writes: a double click's two
    requests, each checking for about half a second at argon2id's cost."""

    def __init__(self, inner: Argon2Passwords):
        self._inner = inner
        self._barrier = threading.Barrier(2, timeout=60)
        self._calls = 0
        self._lock = threading.Lock()

    def hash(self, password: str) -> str:
        return self._inner.hash(password)

    def verify(self, hashed: str, password: str) -> bool:
        with self._lock:
            self._calls += 1
            first_two = self._calls <= 2
        if first_two:
            self._barrier.wait()
        return self._inner.verify(hashed, password)


async def test_the_same_change_of_ones_own_password_sent_twice_at_once_is_written_once(
    sqlite_url: str, clock: Clock
) -> None:
    """Both requests of a double click checked the current password before either wrote:
    both changed it, two password_changed events and the person's sessions ended twice."""
    engine = create_engine(sqlite_url)
    try:
        await upgrade(engine)
        fast = Argon2Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        setup = IdentityService(SqlIdentityStore(engine), fast, clock)
        await setup.add_user(ADMIN, "ivo", "Ivo Berg", {Role.OPERATOR}, password=PASSWORD)
        identity = IdentityService(SqlIdentityStore(engine), _BothAtOnce(fast), clock)
        await asyncio.gather(
            *(identity.change_own_password("ivo", PASSWORD, "ivo's own secret") for _ in "ab")
        )
        kinds = await _kinds(identity)
        assert kinds.count(EventKind.PASSWORD_CHANGED) == 1, kinds
        assert EventKind.LOGIN_FAILED not in kinds
        assert (await identity.user(ADMIN, "ivo")).failed_attempts == 0
        assert (await identity.login("ivo", "ivo's own secret")).name == "ivo"
    finally:
        await engine.dispose()
