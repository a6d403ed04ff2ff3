"""Users, logins and API keys: the identity service. Each call is one transaction, with the
security event it makes; a call refused for want of authority records a ``refused`` event
(in a transaction of its own) and changes nothing else.

Passwords are never stored or logged: argon2id hashes only (:class:`mes.ports_identity.Passwords`). An admin who
sets a password chooses it and gives it on; the service keeps only its hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime

from mes.domain.authority import (
    Action,
    AuthMethod,
    Context,
    NotAuthorized,
    Principal,
    Role,
    effective_action,
    may,
)
from mes.domain.errors import InvalidInput, RecordExists
from mes.domain.identity import (
    ApiKey,
    ApiKeyRefused,
    CurrentPasswordRefused,
    EventKind,
    LoginRefused,
    SecurityEvent,
    SecurityEventPage,
    SecurityEventQuery,
    UnknownApiKey,
    UnknownUser,
    User,
    UserKind,
    UserUpdate,
    check_password,
    check_roles,
    check_username,
)
from mes.domain.signatures import SignatureMethod, SignatureRefused, Signer
from mes.domain.text import one_line, optional_line
from mes.domain.throttle import FailureThrottle
from mes.domain.tokens import API_KEY_PREFIX, split_api_key
from mes.guard import Guard
from mes.password_checks import ChangedMeanwhile, DoneAlready, PasswordChecks
from mes.ports_identity import IdentityStore, IdentityTransaction, Passwords
from mes.security_reads import SecurityLogReads, log_refused


def _refuse_label_taken(keys: Iterable[ApiKey], username: str, label: str) -> None:
    """RecordExists when a live key of ``username`` has ``label``: a key is issued once per
    purpose, so that a request sent again after its answer was lost (whose token nobody
    holds) issues no second live key."""
    for key in keys:
        if key.revoked_at is None and key.label == label:
            raise RecordExists(
                f"{username} has a live API key labelled {label!r} already: {key.key_id}, "
                f"issued {key.created_at.isoformat(timespec='seconds')} by {key.created_by} "
                f"(if its token was lost, revoke it: pkgline user revoke-key {key.key_id}, "
                "then issue again; or give another label); nothing was issued",
                allowed=(key.key_id,),
            )


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


_CHANGE_TRIES = 3
"""How often a change of one's own password checks again when the password changed while
it was checked (another request of the same change: it finds it done then)."""


class IdentityService:
    def __init__(
        self,
        store: IdentityStore,
        passwords: Passwords,
        clock: Callable[[], datetime] = _utc_now,
        throttle: FailureThrottle | None = None,
    ):
        self._store = store
        self._passwords = passwords
        self._clock = clock
        self._checks = PasswordChecks(store, passwords, clock, throttle)
        self._guard = Guard(None, self, clock)
        self._log = SecurityLogReads(store, self._allow_log_read)
        self.generation = 0
        """Counts the changes of users' roles and of their being disabled made through this
        service: what a caller keeps of a user (the server's principals) is stale once it
        moves."""

    # -- authority ---------------------------------------------------------------------------

    async def authorize(
        self, by: Principal, action: Action, context: Context | None = None
    ) -> Action:
        """:func:`mes.domain.authority.authorize`, recording a refusal as a security event."""
        await self._guard.allow(by, action, context)
        return effective_action(action, context or Context())

    async def record(self, event: SecurityEvent) -> None:
        async with self._store.transaction() as tx:
            await tx.add_event(event)

    # -- users ----------------------------------------------------------------------------

    async def add_user(
        self,
        by: Principal,
        username: str,
        full_name: str,
        roles: Iterable[Role],
        *,
        kind: UserKind = UserKind.PERSON,
        password: str | None = None,
    ) -> User:
        await self.authorize(by, Action.USERS)
        check_username(username)
        if not one_line(full_name, "a user's printed name"):
            raise InvalidInput("a user needs their printed (full) name (--name)")
        wanted = frozenset(roles)
        check_roles(kind, wanted)
        if kind is UserKind.SYSTEM and password is not None:
            raise InvalidInput("a system has no password: issue it an API key")
        hashed = None
        if password is not None:
            check_password(password)
            hashed = await asyncio.to_thread(self._passwords.hash, password)
        now = self._clock()
        user = User(
            username=username,
            full_name=full_name.strip(),
            kind=kind,
            roles=wanted,
            created_at=now,
            created_by=by.name,
            updated_at=now,
            password_hash=hashed,
            password_changed_at=now if hashed else None,
            password_set_by=by.name if hashed else None,
        )
        async with self._store.transaction() as tx:
            await tx.add_user(user)
            await tx.add_event(
                self._event(
                    by,
                    EventKind.USER_ADDED,
                    username,
                    roles=sorted(r.value for r in wanted),
                    user_kind=kind.value,
                )
            )
        return user

    async def users(self, by: Principal) -> list[User]:
        await self.authorize(by, Action.READ)
        async with self._store.transaction(readonly=True) as tx:
            return await tx.users()

    async def user(self, by: Principal, username: str) -> User:
        await self.authorize(by, Action.READ)
        async with self._store.transaction(readonly=True) as tx:
            return await _existing(tx, username)

    async def change_roles(
        self, by: Principal, username: str, add: Iterable[Role], remove: Iterable[Role]
    ) -> UserUpdate:
        """Give and take away roles; roles the user holds already are left (``changed``)."""
        await self.authorize(by, Action.USERS)
        added, removed = frozenset(add), frozenset(remove)
        if added & removed:
            both = ", ".join(sorted(r.value for r in added & removed))
            raise InvalidInput(f"role {both} is both added and removed")
        try:
            return await self._change_roles(by, username, added, removed)
        finally:
            self.generation += 1

    async def _change_roles(
        self, by: Principal, username: str, added: frozenset[Role], removed: frozenset[Role]
    ) -> UserUpdate:
        async with self._store.transaction() as tx:
            user = await _existing(tx, username)
            roles = (user.roles | added) - removed
            check_roles(user.kind, roles)
            if roles == user.roles:
                return UserUpdate(user, changed=False)
            changed = replace(user, roles=roles, updated_at=self._clock())
            await tx.update_user(changed)
            await tx.add_event(
                self._event(
                    by,
                    EventKind.ROLES_CHANGED,
                    username,
                    before=sorted(r.value for r in user.roles),
                    after=sorted(r.value for r in roles),
                )
            )
            return UserUpdate(changed, changed=True)

    async def set_disabled(
        self, by: Principal, username: str, disabled: bool, reason: str | None = None
    ) -> UserUpdate:
        """Disable or enable a user; one already so is left as it is (``changed`` False)."""
        await self.authorize(by, Action.USERS)
        try:
            async with self._store.transaction() as tx:
                reason = optional_line(reason, "the reason")
                user = await _existing(tx, username)
                if user.disabled == disabled:
                    return UserUpdate(user, changed=False)
                now = self._clock()
                changed = replace(user, disabled=disabled, updated_at=now)
                await tx.update_user(changed)
                if disabled:  # its sessions end: enabled again, it logs in again
                    ended = await tx.end_sessions(username, now)
                    await tx.add_event(
                        self._event(
                            by,
                            EventKind.USER_DISABLED,
                            username,
                            reason=reason,
                            sessions_ended=ended,
                        )
                    )
                else:
                    await tx.add_event(self._event(by, EventKind.USER_ENABLED, username))
                return UserUpdate(changed, changed=True)
        finally:
            self.generation += 1

    async def set_password(self, by: Principal, username: str, password: str) -> User:
        """Set a person's password (an admin's reset, or a new one); unlocks the account."""
        await self.authorize(by, Action.USERS)
        check_password(password)
        hashed = await asyncio.to_thread(self._passwords.hash, password)
        try:
            return await self._set_password(by, username, hashed)
        finally:
            self.generation += 1

    async def _set_password(self, by: Principal, username: str, hashed: str) -> User:
        async with self._store.transaction() as tx:
            user = await _existing(tx, username)
            if user.kind is UserKind.SYSTEM:
                raise InvalidInput(f"{username} is a system: it has no password, only API keys")
            now = self._clock()
            changed = replace(
                user,
                password_hash=hashed,
                password_changed_at=now,
                password_set_by=by.name,
                failed_attempts=0,
                locked_until=None,
                updated_at=now,
            )
            await tx.update_user(changed)
            ended = await tx.end_sessions(username, now)  # whoever knew the old one is out
            await tx.add_event(
                self._event(by, EventKind.PASSWORD_SET, username, sessions_ended=ended)
            )
            return changed

    # -- logins and keys ----------------------------------------------------------------------

    async def login(self, username: str, password: str) -> Principal:
        """A person's password login: their principal, or LoginRefused (the same refusal
        whether the name, the password, or the account's state was wrong; the security event
        says which). Failures count towards a lockout."""
        user = await self._checks.attempt(
            username, password, failed=EventKind.LOGIN_FAILED, succeeded=EventKind.LOGIN
        )
        return user.principal(AuthMethod.PASSWORD)

    async def verify_signer(
        self, username: str, password: str, *, action: Action, lot_id: str | None = None
    ) -> Signer:
        """The signer a password signature proves (21 CFR 11.200: both components, the user
        name and the password, given again): a wrong password counts towards the lockout like
        a failed login and is recorded (``signature_failed``); a disabled or locked user, or
        a system, cannot sign. A person whose password someone else set (an admin's reset)
        must change it first (``pkgline user passwd --own``): whoever set it knows it."""
        user = await self._checks.attempt(
            username,
            password,
            failed=EventKind.SIGNATURE_FAILED,
            succeeded=None,
            action=action.value,
            lot_id=lot_id,
        )
        if user.password_set_by != user.username:
            setter = user.password_set_by or "an earlier pkgline (unknown)"
            await self.record(
                self._event_as(
                    username,
                    EventKind.SIGNATURE_REFUSED,
                    action=action.value,
                    lot_id=lot_id,
                    why=f"password set by {setter}",
                )
            )
            raise SignatureRefused(
                f"{username} cannot sign with a password someone else set ({setter}): change "
                "it first (the operator station's Password page, or 'pkgline user passwd "
                "--own'), then sign",
                signer=username,
                action=action,
                lot_id=lot_id,
            )
        return Signer(username, user.full_name, user.roles, SignatureMethod.PASSWORD)

    async def change_own_password(
        self,
        username: str,
        current: str,
        new: str,
        *,
        by: Principal | None = None,
        keep_session: str | None = None,
    ) -> User:
        """A person changes their own password, proving the current one (a wrong one counts
        towards the lockout). Only a password the person set themselves signs. ``by``: who
        asks (the server's principal): only ``username`` themselves may; anyone else is
        refused, recorded, before the password is looked at (an admin sets it instead:
        :meth:`set_password`). The person's other sessions end (``keep_session``: the id of
        the one asking, which goes on)."""
        if by is not None and by.name != username:
            refusal = NotAuthorized(
                f"{by.name} may not change the password of {username} as their own: only "
                f"{username} may (an admin sets another's with user passwd)",
                needed=(),
                action=Action.USERS,
            )
            await self._guard.refused(by, refusal)
            raise refusal
        if by is not None and by.method is AuthMethod.API_KEY:  # it asks for itself: it may know
            raise InvalidInput(
                f"{username} is a system (an API key): it has no password to change; an admin "
                "issues and revokes its keys (pkgline user key, user revoke-key)"
            )
        check_password(new)
        if current == new:
            raise InvalidInput("the new password is the current one: choose another")
        for _ in range(_CHANGE_TRIES):
            try:
                checked = await self._checks.attempt(
                    username,
                    current,
                    failed=EventKind.LOGIN_FAILED,
                    succeeded=None,
                    purpose="passwd",
                    done_if=new,
                )
            except DoneAlready as done:  # the same change sent again (a double click)
                return done.user
            except ChangedMeanwhile:
                continue  # check again, against the password it is now
            except LoginRefused as refused:  # the password in the body, not the request's own
                raise CurrentPasswordRefused(refused.message) from None
            hashed = await asyncio.to_thread(self._passwords.hash, new)
            try:
                async with self._store.transaction() as tx:
                    user = await _existing(tx, username)
                    if user.password_hash != checked.password_hash:
                        continue  # changed since it was checked: check again (nothing written)
                    now = self._clock()
                    changed = replace(
                        user,
                        password_hash=hashed,
                        password_changed_at=now,
                        password_set_by=username,
                        updated_at=now,
                    )
                    await tx.update_user(changed)
                    ended = await tx.end_sessions(username, now, keep=keep_session)
                    await tx.add_event(
                        SecurityEvent(
                            now,
                            EventKind.PASSWORD_CHANGED,
                            username,
                            AuthMethod.PASSWORD,
                            subject=username,
                            detail={"sessions_ended": ended},
                        )
                    )
                    return changed
            finally:
                self.generation += 1
        raise CurrentPasswordRefused(
            "the password was changed by another request while this one was checked: give "
            "the current password again; nothing was changed"
        )

    async def issue_api_key(self, by: Principal, username: str, label: str) -> tuple[ApiKey, str]:
        """A new key for a system: the key and its token (shown once, never stored)."""
        await self.authorize(by, Action.USERS)
        label = one_line(label, "the key's label")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        async with self._store.transaction() as tx:
            user = await _existing(tx, username)
            if user.kind is not UserKind.SYSTEM:
                raise InvalidInput(f"{username} is a person: API keys are for systems")
            # the event first: writers of the security log take their turn, so that two
            # keys of one label issued at once are checked one after the other
            await tx.add_event(
                self._event(by, EventKind.API_KEY_ISSUED, username, key_id=key_id, label=label)
            )
            _refuse_label_taken(await tx.keys(username), username, label)
            key = ApiKey(key_id, username, _digest(secret), label, self._clock(), by.name)
            await tx.add_key(key)
        return key, f"{API_KEY_PREFIX}_{key_id}_{secret}"

    async def api_keys(self, by: Principal, username: str) -> list[ApiKey]:
        """The keys issued to a system, revoked ones too, the newest first (never a secret:
        only its hash is kept); UnknownUser for no such user."""
        await self.authorize(by, Action.USERS)
        async with self._store.transaction(readonly=True) as tx:
            await _existing(tx, username)
            return await tx.keys(username)

    async def revoke_api_key(self, by: Principal, key_id: str) -> ApiKey:
        await self.authorize(by, Action.USERS)
        async with self._store.transaction() as tx:
            key = await tx.key(key_id)
            if key is None:
                raise UnknownApiKey(f"there is no API key {key_id}")
            if key.revoked_at is not None:
                return key
            revoked = replace(key, revoked_at=self._clock(), revoked_by=by.name)
            await tx.revoke_key(revoked)
            await tx.add_event(
                self._event(by, EventKind.API_KEY_REVOKED, key.username, key_id=key_id)
            )
            return revoked

    async def authenticate_api_key(self, token: str) -> Principal:
        """The system a token was issued to, or ApiKeyRefused (malformed, unknown, a wrong
        secret, revoked, or its system disabled: ``why`` says which)."""
        parts = split_api_key(token)
        if parts is None:
            raise ApiKeyRefused("malformed API key")
        key_id, secret = parts
        async with self._store.transaction(readonly=True) as tx:
            key = await tx.key(key_id)
            user = await tx.user(key.username) if key is not None else None
        if key is None or user is None:
            raise ApiKeyRefused("unknown key")
        if not hmac.compare_digest(key.key_hash, _digest(secret)):
            raise ApiKeyRefused("wrong secret for the key (forged, or the token cut short)")
        if key.revoked_at is not None:
            raise ApiKeyRefused("revoked key")
        if user.disabled:
            raise ApiKeyRefused("its system disabled")
        return user.principal(AuthMethod.API_KEY)

    async def os_account(self, account: str) -> Principal:
        """A local client of the server, known by the OS account its peer credentials name
        (never a name it sends): the pkgline user of that name, or LoginRefused (no such
        user, disabled, or a system), recorded as a failed login."""
        async with self._store.transaction(readonly=True) as tx:
            user = await tx.user(account)
        why = None
        if user is None:
            why = "no pkgline user of that OS account"
        elif user.disabled:
            why = "disabled"
        elif user.kind is UserKind.SYSTEM:
            why = "a system account: systems use API keys"
        if user is None or why is not None:
            await self.refused_credentials(account, AuthMethod.OS_ACCOUNT, why or "refused")
            raise LoginRefused(
                f"OS account {account} is not a pkgline user who may use the server "
                "(unknown or disabled); an admin adds it: pkgline user add"
            )
        return user.principal(AuthMethod.OS_ACCOUNT)

    async def refused_credentials(
        self, name: str, method: AuthMethod, why: str, *, form: str | None = None
    ) -> None:
        """Record credentials the server refused (an unknown OS account, a wrong or expired
        token, an unknown or revoked API key, a station login form without its token) as a
        failed login; ``name`` is who they claimed to be, never the secret; ``form``: the
        form that sent them (``POST /station/login``)."""
        detail = {"why": why} if form is None else {"form": form, "why": why}
        await self.record(
            SecurityEvent(self._clock(), EventKind.LOGIN_FAILED, name, method, detail=detail)
        )

    async def refused_form(self, by: Principal, form: str, why: str) -> None:
        """Record a form of the station refused for want of its session's CSRF token (it may be
        another site's, or a page of an earlier session, sent with the person's cookie) as a
        refusal of authority: who the session is, which form, and why; never the token."""
        await self.record(
            SecurityEvent(
                self._clock(),
                EventKind.REFUSED,
                by.name,
                by.method,
                detail={"form": form, "why": why},
            )
        )

    async def _allow_log_read(self, by: Principal, action: Action) -> None:
        """Allow a read of the security log (``action``: the whole log, or its engineering
        changes), or refuse it in the words of that read (:func:`log_refused`), recorded."""
        who = self._guard.who(by)
        if who is not None and not may(who, action):
            refusal = log_refused(who, action)
            await self._guard.refused(by, refusal)
            raise refusal
        await self.authorize(by, action)

    async def events(self, by: Principal, limit: int = 100) -> list[SecurityEvent]:
        """The newest events (:meth:`mes.security_reads.SecurityLogReads.events`)."""
        return await self._log.events(by, limit)

    async def event_page(self, by: Principal, query: SecurityEventQuery) -> SecurityEventPage:
        """``user events``, ``GET /security/events``: one page of the security log
        (:meth:`mes.security_reads.SecurityLogReads.event_page`)."""
        return await self._log.event_page(by, query)

    # -- helpers --------------------------------------------------------------------------

    def _event_as(
        self,
        actor: str,
        kind: EventKind,
        *,
        action: str | None = None,
        lot_id: str | None = None,
        **detail: object,
    ) -> SecurityEvent:
        return SecurityEvent(
            self._clock(),
            kind,
            actor,
            AuthMethod.PASSWORD,
            subject=actor,
            action=action,
            lot_id=lot_id,
            detail=detail,
        )

    def _event(
        self, by: Principal, kind: EventKind, subject: str, **detail: object
    ) -> SecurityEvent:
        clean = {k: v for k, v in detail.items() if v is not None}
        return SecurityEvent(self._clock(), kind, by.name, by.method, subject=subject, detail=clean)


async def _existing(tx: IdentityTransaction, username: str) -> User:
    user = await tx.user(username)
    if user is None:
        raise UnknownUser(f"there is no user {username}")
    return user
