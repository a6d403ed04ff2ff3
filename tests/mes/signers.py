"""A fake of the identity service's signature check, for tests of the lot service that are
not about passwords (the seam :class:`mes.signing.SignatureVerifier`; the real one, argon2id
on SQLite and PostgreSQL, is tested in tests/mes/test_signatures.py)."""

from __future__ import annotations

from collections.abc import Iterable

from mes.domain.authority import Action, Principal
from mes.domain.identity import LoginRefused
from mes.domain.signatures import Signable, SignatureGiven, SignatureMethod, Signer

PASSWORD = "the signer's own password"


class Signers:
    """Knows the people given, each with :data:`PASSWORD`."""

    def __init__(self, people: Iterable[Principal] = ()):
        self._people = {p.name: p for p in people}

    def add(self, *people: Principal) -> None:
        self._people.update({p.name: p for p in people})

    async def verify_signer(
        self, username: str, password: str, *, action: Action, lot_id: str | None = None
    ) -> Signer:
        person = self._people.get(username)
        if person is None or password != PASSWORD:
            raise LoginRefused("signature refused: wrong user name or password")
        return Signer(
            username,
            person.printed_name or username.upper(),
            person.roles,
            SignatureMethod.PASSWORD,
        )


def signed(who: Principal, lot: Signable, meaning: str = "approved") -> tuple[SignatureGiven, ...]:
    """``who``'s password signature of ``lot`` as it is now."""
    return (SignatureGiven(who.name, meaning, password=PASSWORD, lot_version=lot.version),)
