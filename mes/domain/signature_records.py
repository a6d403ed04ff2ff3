"""A signature as the lot tracker records it (21 CFR Part 11 §11.50, §11.70): who signed,
when, meaning what, and how the signer was known. The rules for giving and checking one are
in :mod:`mes.domain.signatures`; these values are apart so that reading a lot's report
(``lot show`` in direct mode, :mod:`pkgline.direct_reads`) loads them and not the rules, the
authority table or the errors. Pure values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class SignatureMethod(StrEnum):
    """How the signer was known when they signed (recorded with the signature)."""

    PASSWORD = "password"
    """The signer gave their password again for this signature (and their user name)."""
    OS = "os"
    """Direct database mode: the OS account that owns the database file signs as itself."""


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature as recorded: the printed name, time and meaning (§11.50), linked to
    the history entry it signs by that entry's hash (§11.70; ``entry_hash`` is set once the
    entry is chained)."""

    lot_id: str
    signer: str
    printed_name: str
    meaning: str
    at: datetime
    method: SignatureMethod
    entry_hash: str | None = None
    seq: int | None = None

    def manifest(self) -> dict[str, Any]:
        """What the signed entry records of it (part of the entry's hash)."""
        return {
            "signer": self.signer,
            "printed_name": self.printed_name,
            "meaning": self.meaning,
            "at": self.at.isoformat(),
            "method": self.method.value,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.manifest(), "lot": self.lot_id, "entry_hash": self.entry_hash}
