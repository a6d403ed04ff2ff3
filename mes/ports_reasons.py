"""The reason-code catalogues' seams (part of :mod:`mes.ports`), as requests a transaction's
:data:`mes.ports.Work` yields."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from mes.domain.reasons import ReasonCode


@dataclass(frozen=True, slots=True)
class GetReasonCodes:
    """Read reason codes: those of ``codes``, or (None) all (answer: ``list[ReasonCode]``,
    by code)."""

    codes: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class SaveReasonCode:
    """Write a reason code: inserted when new, else its retirement updated (answer: None)."""

    code: ReasonCode
    new: bool


ReasonRequest: TypeAlias = GetReasonCodes | SaveReasonCode


def get_reason_code(code: str) -> Generator[ReasonRequest, Any, ReasonCode | None]:
    found: list[ReasonCode] = yield GetReasonCodes((code,))
    return found[0] if found else None


def get_reason_codes(
    codes: Sequence[str] | None = None,
) -> Generator[ReasonRequest, Any, list[ReasonCode]]:
    found: list[ReasonCode] = yield GetReasonCodes(None if codes is None else tuple(codes))
    return found


def save_reason_code(code: ReasonCode, *, new: bool) -> Generator[ReasonRequest, Any, None]:
    yield SaveReasonCode(code, new)
