"""The security log's seam in a transaction (part of :mod:`mes.ports`): an engineering change
appends its event in the transaction that makes the change, so that neither is committed
without the other."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeAlias

from mes.domain.identity import SecurityEvent


@dataclass(frozen=True, slots=True)
class AppendSecurityEvent:
    """Append an event to the security log's chain: it follows the head and becomes it
    (:mod:`mes.domain.security_chain`), in this transaction (answer: None)."""

    event: SecurityEvent


SecurityRequest: TypeAlias = AppendSecurityEvent


def append_security_event(event: SecurityEvent) -> Generator[SecurityRequest, Any, None]:
    yield AppendSecurityEvent(event)
