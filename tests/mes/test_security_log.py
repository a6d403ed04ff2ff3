"""The security log a page at a time (``user events``, ``GET /security/events``): newest
first by seq, each event once across pages while events are added, how many match and
whether more follow, filters by user (who acted or was acted upon), kind and time window, in
SQL; a cursor naming no event, a bad window or limit refused; an admin's only. On SQLite and
PostgreSQL, and on PostgreSQL a user's page walks its index, not the log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.passwords import Argon2Passwords
from mes.adapters.sql_identity import SqlIdentityStore, event_page_statements
from mes.domain.authority import Action, AuthMethod, NotAuthorized, Principal, Role
from mes.domain.errors import InvalidInput
from mes.domain.identity import EventKind, LoginRefused, SecurityEventQuery
from mes.identity import IdentityService
from mes.security_reads import SecurityLogReads
from tests.mes.conftest import Clock

DATABASES = ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)]
ADMIN = Principal.file_owner("root-owner")
PASSWORD = "correct horse battery"


@pytest.fixture(params=DATABASES)
async def identity(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[IdentityService]:
    engine = create_engine(request.getfixturevalue(request.param))
    try:
        await upgrade(engine)
        passwords = Argon2Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        yield IdentityService(SqlIdentityStore(engine), passwords, clock)
    finally:
        await engine.dispose()


async def _fill(identity: IdentityService) -> None:
    """alice and bob added (2 events), 3 failed logins of alice, bob disabled: 6 events."""
    for name in ("alice", "bob"):
        await identity.add_user(ADMIN, name, name.title(), {Role.OPERATOR}, password=PASSWORD)
    for _ in range(3):
        with pytest.raises(LoginRefused):
            await identity.login("alice", "wrong password")
    await identity.set_disabled(ADMIN, "bob", True, "left")


async def _seqs(identity: IdentityService, query: SecurityEventQuery) -> tuple[list[int], int]:
    seen: list[int] = []
    total = -1
    while True:
        page = await identity.event_page(ADMIN, query)
        total = page.total if total < 0 else total
        seen += [e.seq or 0 for e in page.events]
        if not page.more:
            return seen, total
        query = SecurityEventQuery(
            query.user, query.kind, query.since, query.until, seen[-1], query.limit
        )


async def test_pages_show_each_event_once_newest_first_while_events_are_added(
    identity: IdentityService,
) -> None:
    await _fill(identity)
    everything = [e.seq for e in await identity.events(ADMIN, 1000)][::-1]
    first = await identity.event_page(ADMIN, SecurityEventQuery(limit=2))
    assert [e.seq for e in first.events] == everything[:2]
    assert (first.total, first.more) == (len(everything), True)
    await identity.add_user(ADMIN, "carol", "Carol", {Role.QUALITY}, password=PASSWORD)
    rest, _ = await _seqs(identity, SecurityEventQuery(after=everything[1], limit=2))
    assert [e.seq for e in first.events] + rest == everything  # carol's is before: not here
    newest = await identity.event_page(ADMIN, SecurityEventQuery(limit=1))
    assert newest.events[0].kind is EventKind.USER_ADDED and newest.events[0].subject == "carol"


async def test_filters_by_user_kind_and_window_in_sql(
    identity: IdentityService, clock: Clock
) -> None:
    await _fill(identity)
    alice, total = await _seqs(identity, SecurityEventQuery(user="alice", limit=2))
    kinds = {e.seq: e for e in await identity.events(ADMIN, 1000)}
    assert total == 4 and len(alice) == 4  # added (subject) and 3 failed logins (actor)
    assert all("alice" in (kinds[s].actor, kinds[s].subject) for s in alice)
    failed = await identity.event_page(
        ADMIN, SecurityEventQuery(kind=EventKind.LOGIN_FAILED, limit=10)
    )
    assert failed.total == 3 and {e.kind for e in failed.events} == {EventKind.LOGIN_FAILED}
    every = sorted(kinds.values(), key=lambda e: e.seq or 0)
    middle = every[3].at
    since = await identity.event_page(ADMIN, SecurityEventQuery(since=middle, limit=100))
    until = await identity.event_page(ADMIN, SecurityEventQuery(until=middle, limit=100))
    newest_first = [e.seq for e in every][::-1]
    assert [e.seq for e in since.events] + [e.seq for e in until.events] == newest_first
    assert since.total + until.total == len(every)
    assert all(e.at >= middle for e in since.events) and all(e.at < middle for e in until.events)
    nobody = await identity.event_page(ADMIN, SecurityEventQuery(user="nobody"))
    assert (nobody.events, nobody.total, nobody.more) == ([], 0, False)


async def test_a_bad_cursor_window_or_limit_is_refused_and_only_an_admin_reads(
    identity: IdentityService, clock: Clock
) -> None:
    await _fill(identity)
    with pytest.raises(InvalidInput, match="--after 999999: expected the seq of an event"):
        await identity.event_page(ADMIN, SecurityEventQuery(after=999999))
    with pytest.raises(InvalidInput, match="expected a window whose start"):
        await identity.event_page(
            ADMIN, SecurityEventQuery(since=clock.now, until=clock.now - timedelta(hours=1))
        )
    with pytest.raises(InvalidInput, match="a limit of 1 or more"):
        await identity.event_page(ADMIN, SecurityEventQuery(limit=0))
    operator = await identity.login("alice", PASSWORD)
    before = (await identity.event_page(ADMIN, SecurityEventQuery())).total
    with pytest.raises(NotAuthorized):
        await identity.event_page(operator, SecurityEventQuery())
    after = await identity.event_page(ADMIN, SecurityEventQuery(limit=1))
    assert after.total == before + 1 and after.events[0].kind is EventKind.REFUSED


async def test_engineering_changes_are_read_by_who_makes_and_reviews_them_the_rest_by_admins(
    identity: IdentityService,
) -> None:
    """Engineers, technicians and quality read the engineering changes (quality reviews
    them); the rest of the log (logins, users, refusals) stays the admins'. Every refusal is
    recorded."""
    await _fill(identity)
    changes = SecurityEventQuery(kind=EventKind.ENGINEERING_CHANGE)
    for role in (Role.ENGINEER, Role.TECHNICIAN, Role.QUALITY):
        reader = Principal(f"r-{role.value}", frozenset({role}), AuthMethod.PASSWORD)
        assert (await identity.event_page(reader, changes)).events == []
        for query in (SecurityEventQuery(), SecurityEventQuery(kind=EventKind.LOGIN_FAILED)):
            with pytest.raises(NotAuthorized):
                await identity.event_page(reader, query)
    refused = await identity.event_page(ADMIN, SecurityEventQuery(kind=EventKind.REFUSED))
    assert refused.total == 6
    assert {e.actor for e in refused.events} == {"r-engineer", "r-technician", "r-quality"}
    operator = Principal("op", frozenset({Role.OPERATOR}), AuthMethod.PASSWORD)
    with pytest.raises(NotAuthorized, match="read the engineering changes"):
        await identity.event_page(operator, changes)


async def test_a_refused_read_of_the_whole_log_says_so_and_points_reviewers_to_the_changes(
    identity: IdentityService,
) -> None:
    """Found by a quality engineer's walkthrough: `pkgline user events` as quality was
    refused with "may not manage users and API keys", which they had not asked to do, and
    did not say that their role reads the engineering changes. The refusal, shown and
    recorded, names the read; a reviewer is pointed to the kind they may read."""
    await _fill(identity)
    quality = Principal("qa", frozenset({Role.QUALITY}), AuthMethod.SESSION)
    with pytest.raises(NotAuthorized) as refused:
        await identity.event_page(quality, SecurityEventQuery())
    said = refused.value.message
    assert said.startswith("qa (quality) may not read the security log: that needs the role admin")
    assert "may read its engineering changes alone (the kind engineering_change)" in said
    assert refused.value.to_dict()["allowed"] == ["admin"]
    operator = Principal("op", frozenset({Role.OPERATOR}), AuthMethod.SESSION)
    with pytest.raises(NotAuthorized) as plain:
        await identity.event_page(operator, SecurityEventQuery())
    assert plain.value.message == (
        "op (operator) may not read the security log: that needs the role admin"
    )
    recorded = await identity.event_page(ADMIN, SecurityEventQuery(kind=EventKind.REFUSED))
    assert [e.detail["message"] for e in recorded.events] == [plain.value.message, said]
    assert {e.action for e in recorded.events} == {"users"}


@pytest.mark.postgres
async def test_one_users_page_walks_its_indexes_not_the_log(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO security_events"
                    " (at, kind, actor, method, subject, detail, prev_hash, hash)"
                    " SELECT now() - n * interval '1 second', 'login', 'u' || (n % 2000),"
                    " 'password', 'u' || (n % 2000), '{}'::jsonb,"
                    " repeat('0', 64), repeat('0', 64)"  # the plan, not the chain, is tested
                    " FROM generate_series(1, 200000) AS n"
                )
            )
            await conn.execute(text("ANALYZE security_events"))
            page, _ = event_page_statements(SecurityEventQuery(user="u7", limit=50))
            sql = page.compile(engine.sync_engine, compile_kwargs={"literal_binds": True})
            plan = "\n".join(r[0] for r in await conn.execute(text(f"EXPLAIN {sql}")))
    finally:
        await engine.dispose()
    assert "Seq Scan on security_events" not in plan, plan
    assert "ix_security_events_actor" in plan and "ix_security_events_subject" in plan, plan


@pytest.mark.postgres
async def test_one_kinds_page_and_count_walk_its_index_not_the_log(postgres_url: str) -> None:
    """``user events --kind`` (revision 0023): the failed logins among 200,000 logins, their
    page and their count along ix_security_events_kind, not a scan of the whole log."""
    engine = create_engine(postgres_url)
    plans = []
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO security_events"
                    " (at, kind, actor, method, subject, detail, prev_hash, hash)"
                    " SELECT now() - n * interval '1 second',"
                    " CASE WHEN n % 5000 = 0 THEN 'login_failed' ELSE 'login' END,"
                    " 'u' || (n % 2000), 'password', 'u' || (n % 2000), '{}'::jsonb,"
                    " repeat('0', 64), repeat('0', 64)"  # the plan, not the chain, is tested
                    " FROM generate_series(1, 200000) AS n"
                )
            )
            await conn.execute(text("ANALYZE security_events"))
            query = SecurityEventQuery(kind=EventKind.LOGIN_FAILED, limit=50)
            for statement in event_page_statements(query):
                sql = statement.compile(engine.sync_engine, compile_kwargs={"literal_binds": True})
                plans.append("\n".join(r[0] for r in await conn.execute(text(f"EXPLAIN {sql}"))))
    finally:
        await engine.dispose()
    for plan in plans:
        assert "Seq Scan on security_events" not in plan, plan
        assert "ix_security_events_kind" in plan, plan


async def test_the_log_reads_stand_alone_asking_their_authority_first(
    identity: IdentityService,
) -> None:
    """mes.security_reads reads the log for the identity service: on the same store it
    reads what the service answers, having asked ``authorize`` for the action each read
    needs (a refusal reads nothing)."""
    await _fill(identity)
    asked: list[Action] = []

    async def authorize(by: Principal, action: Action) -> Action:
        asked.append(action)
        if by.name != ADMIN.name:
            raise NotAuthorized(f"{by.name} may not", needed=[Role.ADMIN], action=action)
        return action

    reads = SecurityLogReads(identity._store, authorize)
    page = await reads.event_page(ADMIN, SecurityEventQuery(limit=3))
    assert page == await identity.event_page(ADMIN, SecurityEventQuery(limit=3))
    assert {e.seq for e in await reads.events(ADMIN, 2)} == {e.seq for e in page.events[:2]}
    changes = SecurityEventQuery(kind=EventKind.ENGINEERING_CHANGE)
    assert (await reads.event_page(ADMIN, changes)).events == []
    assert asked == [Action.USERS, Action.USERS, Action.CHANGES]
    with pytest.raises(NotAuthorized):
        await reads.event_page(Principal.file_owner("someone"), SecurityEventQuery(after=999999))
