"""The check of a person's password, shared by a login, a signature and the change of one's
own password (:class:`mes.identity.IdentityService`): the user read, the hash checked off the
event loop (an unknown name checks a dummy hash: no probing names by time), the failure
recorded and counted towards the account's lockout and the place's throttle
(:mod:`mes.domain.throttle`), the success recorded; a place that failed too many checks
lately has none checked.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from datetime import datetime

from mes.domain.authority import AuthMethod
from mes.domain.identity import (
    EventKind,
    LoginRefused,
    SecurityEvent,
    SignerRefused,
    TooManyFailures,
    User,
    after_failed_login,
    after_login,
    login_refusal,
)
from mes.domain.throttle import FailureThrottle
from mes.guard import REQUEST_PLACE
from mes.ports_identity import IdentityStore, Passwords


class DoneAlready(Exception):
    """The password a change of one's own asks for is the password already."""

    def __init__(self, user: User):
        super().__init__(user.username)
        self.user = user


class ChangedMeanwhile(LoginRefused):
    """The password changed while the one given was checked against the one before."""


class PasswordChecks:
    """Checks of persons' passwords against the store (see the module's text)."""

    def __init__(
        self,
        store: IdentityStore,
        passwords: Passwords,
        clock: Callable[[], datetime],
        throttle: FailureThrottle | None = None,
    ):
        self._store = store
        self._passwords = passwords
        self._clock = clock
        self._throttle = throttle if throttle is not None else FailureThrottle()
        """Failed password checks per place a request came from (:data:`REQUEST_PLACE`)."""
        self._dummy_hash: str | None = None

    async def attempt(
        self,
        username: str,
        password: str,
        *,
        failed: EventKind,
        succeeded: EventKind | None,
        action: str | None = None,
        lot_id: str | None = None,
        purpose: str | None = None,
        done_if: str | None = None,
    ) -> User:
        """Check a person's password: their record, or LoginRefused after recording the
        failure (``failed``) and counting it towards the lockout. ``done_if``: the password a
        change of one's own asks for; when it is the password already (the same change sent
        again), DoneAlready, and when the password changed while this one was checked,
        ChangedMeanwhile: neither recorded nor counted. A place (:data:`REQUEST_PLACE`) that
        failed too many checks lately has none checked: TooManyFailures, recorded."""
        place = REQUEST_PLACE.get()
        if place is not None:
            await self._refuse_if_throttled(place, username, failed, action, lot_id, purpose)
        async with self._store.transaction(readonly=True) as tx:
            user = await tx.user(username)
        seen = user.password_hash if user is not None else None
        hashed = seen if seen is not None else await self._dummy()  # names are not probed
        matches = await asyncio.to_thread(self._passwords.verify, hashed, password)
        if (
            not matches
            and done_if is not None
            and user is not None
            and seen is not None
            and login_refusal(user, self._clock(), True) is None  # not while locked, disabled
            and await asyncio.to_thread(self._passwords.verify, seen, done_if)
        ):
            raise DoneAlready(user)
        now = self._clock()
        async with self._store.transaction() as tx:
            user = await tx.user(username)  # again, in the transaction that writes it
            if done_if is not None and user is not None and user.password_hash != seen:
                raise ChangedMeanwhile("the password changed while it was checked")
            why = login_refusal(user, now, matches)
            if user is None or why is not None:
                if place is not None:
                    self._throttle.failed(place, now)
                detail: dict[str, object] = {"why": why or "unknown user"}
                if purpose:
                    detail["purpose"] = purpose
                event = SecurityEvent(
                    now,
                    failed,
                    username,
                    AuthMethod.PASSWORD,
                    subject=username if user else None,
                    action=action,
                    lot_id=lot_id,
                    detail=detail,
                )
                await tx.add_event(event)
                if user is not None and why == "wrong password":
                    after = after_failed_login(user, now)
                    await tx.update_user(after)
                    if after.locked(now):
                        await tx.add_event(
                            SecurityEvent(
                                now,
                                EventKind.LOCKED_OUT,
                                username,
                                AuthMethod.PASSWORD,
                                subject=username,
                                detail={"until": after.locked_until.isoformat()}
                                if after.locked_until
                                else {},
                            )
                        )
                refused = (
                    LoginRefused(
                        "login refused: wrong user name or password, or the account is "
                        "disabled or locked"
                    )
                    if failed is EventKind.LOGIN_FAILED
                    else SignerRefused(
                        "signature refused: wrong user name or password, or the account is "
                        "disabled or locked"
                    )
                )
            else:
                after = after_login(user, now)
                if after is not user:  # failures counted before: start again
                    await tx.update_user(after)
                if succeeded is not None:
                    await tx.add_event(SecurityEvent(now, succeeded, username, AuthMethod.PASSWORD))
                return user
        raise refused

    async def _refuse_if_throttled(
        self,
        place: str,
        username: str,
        failed: EventKind,
        action: str | None,
        lot_id: str | None,
        purpose: str | None,
    ) -> None:
        now = self._clock()
        throttled = self._throttle.check(place, now)
        if throttled is None:
            return
        detail: dict[str, object] = {
            "why": "too many failed password checks from here: not checked",
            "failures": throttled.failures,
            "retry_after_s": throttled.retry_after_seconds,
        }
        if purpose:
            detail["purpose"] = purpose
        async with self._store.transaction() as tx:
            await tx.add_event(
                SecurityEvent(
                    now,
                    failed,
                    username,
                    AuthMethod.PASSWORD,
                    action=action,
                    lot_id=lot_id,
                    detail=detail,
                )
            )
        raise TooManyFailures(
            throttled.message(), retry_after_seconds=throttled.retry_after_seconds, lot_id=lot_id
        )

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(
                self._passwords.hash, secrets.token_urlsafe(16)
            )
        return self._dummy_hash
