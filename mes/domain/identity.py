"""Users and systems, what happens to a password login, and the security events recorded.

Pure values and rules; the service (:mod:`mes.identity`) reads and writes them. A user is a
person (logs in with a password, or is known by their OS account on the server's socket) or
a system (the line controller; an API key). Repeated failed logins lock the account for a
while; every login, lockout, refusal of authority and change to a user is a security event,
and so is every engineering change to what the line checks at track-in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from mes.domain.authority import AuthMethod, Principal, Role
from mes.domain.errors import InvalidInput, LotTrackerError

USERNAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_.-]{0,63}$")
"""As OS account names: local clients are known by theirs."""
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
MAX_FAILED_ATTEMPTS = 5
"""Failed password logins in a row that lock the account."""
LOCKOUT = timedelta(minutes=15)
CONTROLLER_USER = "controller"
"""The line controller's system identity (created by revision 0005)."""


class UnknownUser(LotTrackerError):
    kind = "unknown_user"


class UnknownApiKey(LotTrackerError):
    kind = "unknown_api_key"


class UserExists(LotTrackerError):
    kind = "user_exists"


class LoginRefused(LotTrackerError):
    """Wrong name or password, disabled, or locked: one message for all, so that a caller
    learns nothing about which (the security event says which)."""

    kind = "login_refused"


class ApiKeyRefused(LoginRefused):
    """An API key refused: one message for all (no such key, revoked, its system disabled, a
    secret that is not the key's), so that a caller learns nothing about which; ``why`` says
    which, for the security event (a wrong secret for a live key is someone holding its id:
    a forgery, or a token cut short, which an admin reviewing the log tells from a script
    still sending a key revoked long ago)."""

    def __init__(self, why: str):
        super().__init__(
            "API key refused: unknown, revoked, its system disabled, or not the secret issued "
            "with it (the whole token, as pkgline user key printed it)"
        )
        self.why = why


class SignerRefused(LoginRefused):
    """A signature's credentials refused (wrong name or password, a disabled or locked
    signer): the same kind and message for all, as a login's; the request's own credentials
    stay valid (the server answers 403, not 401)."""


class CurrentPasswordRefused(LoginRefused):
    """The current password given to change one's own refused (wrong, or the account locked
    or disabled): the same kind and message as a login's; the request's own credentials
    (a session, the OS account) stay valid, so the server answers 403, not 401."""


class TooManyFailures(LotTrackerError):
    """A password was not checked: too many failed checks came from the same place (a host,
    a local account) lately (:mod:`mes.domain.throttle`). Not a judgement of the credentials
    given (the server answers 429 with ``Retry-After``); the security event says so."""

    kind = "too_many_failures"

    def __init__(self, message: str, *, retry_after_seconds: int, lot_id: str | None = None):
        super().__init__(message, lot_id=lot_id)
        self.retry_after_seconds = retry_after_seconds

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "retry_after_seconds": self.retry_after_seconds}


class UserKind(StrEnum):
    PERSON = "person"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class User:
    username: str
    full_name: str
    kind: UserKind
    roles: frozenset[Role]
    created_at: datetime
    created_by: str
    updated_at: datetime
    disabled: bool = False
    password_hash: str | None = None
    failed_attempts: int = 0
    locked_until: datetime | None = None
    password_changed_at: datetime | None = None
    password_set_by: str | None = None
    """Who chose the current password: the user (``passwd --own``), or the admin who set it
    (revision 0010; None before it). Only a password the user set themselves signs."""

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until

    @property
    def may_sign(self) -> bool:
        """Whether the user's password may sign: a person's, set by themselves."""
        return (
            self.kind is UserKind.PERSON
            and self.password_hash is not None
            and self.password_set_by == self.username
        )

    def principal(self, method: AuthMethod) -> Principal:
        return Principal(self.username, self.roles, method, self.full_name)

    def to_dict(self, now: datetime) -> dict[str, Any]:
        """What ``user show`` tells: never the password hash."""
        return {
            "username": self.username,
            "full_name": self.full_name,
            "kind": self.kind.value,
            "roles": sorted(r.value for r in self.roles),
            "disabled": self.disabled,
            "password": "set" if self.password_hash else "none",
            "password_changed_at": _iso(self.password_changed_at),
            "password_set_by": self.password_set_by,
            "may_sign": self.may_sign,
            "failed_attempts": self.failed_attempts,
            "locked_until": _iso(self.locked_until) if self.locked(now) else None,
            "created_at": _iso(self.created_at),
            "created_by": self.created_by,
        }


@dataclass(frozen=True, slots=True)
class UserUpdate:
    """A user after a change that may have been one already (disable a disabled user, give
    a role they hold): ``changed`` False means nothing was written and nothing recorded."""

    user: User
    changed: bool

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {**self.user.to_dict(now), "changed": self.changed}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def check_username(username: str) -> None:
    if not USERNAME_PATTERN.fullmatch(username):
        raise InvalidInput(
            f"user name {username!r} is not valid: expected 1-64 lower-case letters, digits, "
            "'_', '.' or '-', starting with a letter or '_' (as an OS account name)"
        )


def parse_roles(names: Iterable[str]) -> frozenset[Role]:
    roles = set()
    for name in names:
        try:
            roles.add(Role(name.strip().lower()))
        except ValueError:
            raise InvalidInput(
                f"there is no role {name!r}", allowed=[r.value for r in Role]
            ) from None
    return frozenset(roles)


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"a password has at most {MAX_PASSWORD_LENGTH} characters")


def login_refusal(user: User | None, now: datetime, matches: bool) -> str | None:
    """Why a login (or a signature) of ``user`` at ``now`` is refused, for the security log;
    None: it is not (``matches``: the password given is the user's)."""
    if user is None:
        return "unknown user"
    if user.kind is UserKind.SYSTEM or user.password_hash is None:
        return "no password login for this account"
    if user.disabled:
        return "disabled"
    if user.locked(now):
        return "locked"
    if not matches:
        return "wrong password"
    return None


def check_roles(kind: UserKind, roles: frozenset[Role]) -> None:
    """Refuse roles a user of ``kind`` may not have (none at all; the controller's for a
    person)."""
    if not roles:
        raise InvalidInput(
            "a user has at least one role: to take them all away, disable the account "
            "(pkgline user disable)",
            allowed=[r.value for r in Role],
        )
    if kind is UserKind.PERSON and Role.CONTROLLER in roles:
        raise InvalidInput(
            "the controller role is for the line controller's system identity, not a person",
            allowed=[r.value for r in Role if r is not Role.CONTROLLER],
        )


def after_failed_login(user: User, now: datetime) -> User:
    """One more failure; the one that reaches :data:`MAX_FAILED_ATTEMPTS` locks the account
    for :data:`LOCKOUT` (and the count starts again)."""
    failed = user.failed_attempts + 1
    if failed >= MAX_FAILED_ATTEMPTS:
        return replace(user, failed_attempts=0, locked_until=now + LOCKOUT, updated_at=now)
    return replace(user, failed_attempts=failed, updated_at=now)


def after_login(user: User, now: datetime) -> User:
    if user.failed_attempts == 0 and user.locked_until is None:
        return user
    return replace(user, failed_attempts=0, locked_until=None, updated_at=now)


class EventKind(StrEnum):
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOCKED_OUT = "locked_out"
    REFUSED = "refused"
    """An operation refused for want of authority."""
    USER_ADDED = "user_added"
    ROLES_CHANGED = "roles_changed"
    USER_DISABLED = "user_disabled"
    USER_ENABLED = "user_enabled"
    PASSWORD_SET = "password_set"
    API_KEY_ISSUED = "api_key_issued"
    API_KEY_REVOKED = "api_key_revoked"
    PASSWORD_CHANGED = "password_changed"
    """A person changed their own password (proving the current one)."""
    SIGNATURE_FAILED = "signature_failed"
    """A signature's password was wrong (counts towards the lockout), or its account may
    not sign now (disabled, locked)."""
    SIGNATURE_REFUSED = "signature_refused"
    """A signature that cannot count: signing for someone else, without the role, the same
    person twice, a password someone else set, or a replay (given for another version)."""
    ENGINEERING_CHANGE = "engineering_change"
    """A change to what the line checks at track-in (a tool's qualification, an SPC chart,
    an SPC inhibit cleared, a reason code, a tool's dispatch mode): ``action`` says which,
    ``detail`` the tool, step or code, what it was before and what it is after
    (:mod:`mes.engineering`)."""


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """One row of the append-only security log."""

    at: datetime
    kind: EventKind
    actor: str
    """Who acted (for a failed login: the name that was tried)."""
    method: AuthMethod | None = None
    subject: str | None = None
    """The user acted upon."""
    action: str | None = None
    lot_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "kind": self.kind.value,
            "actor": self.actor,
            "method": self.method.value if self.method else None,
            "subject": self.subject,
            "action": self.action,
            "lot": self.lot_id,
            "detail": dict(self.detail),
        }


@dataclass(frozen=True, slots=True)
class SecurityEventQuery:
    """Which security events a page shows: newest first, from the event after ``after`` (a
    ``seq``, the last of the page before) on, at most ``limit``. Every filter is applied by
    the store (in SQL): ``user`` as the one who acted or the one acted upon, ``kind``, and
    ``since`` (included) .. ``until`` (excluded)."""

    user: str | None = None
    kind: EventKind | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: int | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class SecurityEventPage:
    """One page of the security log: its events (newest first), how many match the filters
    in all, and whether more (older) follow the page."""

    events: list[SecurityEvent]
    total: int
    more: bool
    total_exact: bool = True
    """False: more than ``total`` (:data:`mes.domain.paging.COUNTED_UP_TO`) match, counted
    no further."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key issued to a system: ``key_id`` is public (part of the token), ``key_hash`` is
    SHA-256 of the secret part; the secret itself is shown once, when issued, and never kept."""

    key_id: str
    username: str
    key_hash: str
    label: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "user": self.username,
            "label": self.label,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "revoked_at": _iso(self.revoked_at),
            "revoked_by": self.revoked_by,
        }
