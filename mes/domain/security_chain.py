"""The security log's hash chain: every security event (a login, a refusal of authority, a
change to a user, an engineering change) carries the hash of the event before it and its own
hash over its canonical content, so that an event edited, removed or slipped in after the fact
no longer matches. Pure functions; the store calls :func:`event_hash` when it appends an event,
and ``pkgline audit verify`` feeds every event to :class:`SecurityChainCheck`.

One chain for the whole log, in ``seq`` order (``GENESIS <- e1 <- e2 <- ...``), its head kept
in ``audit_heads`` (row ``security``): writers of the log take their turn on it. The log is
written at a person's pace (logins, refusals, changes to users and to what the line checks),
never by a move, so the turn costs the line nothing; a chain per lot, as the history has, is
not needed here.

Canonical content: the event's fields (not its ``seq``, which the database assigns) and the
hash it follows, as JSON with sorted keys and no spaces, UTF-8; times in UTC with
microseconds; a float without a fractional part written as an integer (as for the history,
:func:`mes.domain.audit.normal`). The hash is SHA-256 of that, in hex.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC

from mes.domain.audit import GENESIS, Finding, Problem, normal
from mes.domain.identity import SecurityEvent

FORMAT = 1
"""The version of the canonical content (part of it, so a later format is told apart)."""

LOG = "security"
"""How a :class:`Problem` names this chain (``log``), beside the lot history's."""


def canonical(event: SecurityEvent, prev_hash: str) -> bytes:
    """The bytes an event's hash is taken over."""
    if event.at.tzinfo is None:
        raise ValueError("security event times must be timezone-aware")
    content = {
        "v": FORMAT,
        "prev": prev_hash,
        "at": event.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "kind": event.kind.value,
        "actor": event.actor,
        "method": event.method.value if event.method else None,
        "subject": event.subject,
        "action": event.action,
        "lot": event.lot_id,
        "detail": normal(event.detail),
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode()


def event_hash(event: SecurityEvent, prev_hash: str) -> str:
    return hashlib.sha256(canonical(event, prev_hash)).hexdigest()


class SecurityChainCheck:
    """Checks the security log fed event by event in ``seq`` order, then the head the store
    keeps. Stops at the first problem (:attr:`problem`)."""

    def __init__(self) -> None:
        self.events = 0
        self.problem: Problem | None = None
        self._head = GENESIS
        self._head_seq: int | None = None
        self._seen: dict[str, int] = {}
        """Every hash so far, with its seq (to tell a missing event from a misplaced one)."""

    def add(self, event: SecurityEvent, stored_prev: str, stored_hash: str) -> bool:
        """Check one event (its content as stored, and its stored hashes); False once a
        problem is found."""
        if self.problem is not None:
            return False
        where = f"security event {event.seq} ({event.kind.value} by {event.actor})"
        if event_hash(event, stored_prev) != stored_hash:
            return self._stop(
                Finding.CONTENT_CHANGED,
                f"{where}: its content does not match its hash: it was changed after it was "
                "written, or written behind pkgline's back",
                event.seq,
            )
        if stored_prev != self._head:
            before = f"event {self._head_seq}" if self._head_seq else "the start of the log"
            if stored_prev == GENESIS:
                return self._stop(
                    Finding.LINK_BROKEN,
                    f"{where}: the link is broken: it starts the log again, not following the "
                    f"event before it ({before}): the log's head was removed or set back",
                    event.seq,
                )
            if stored_prev in self._seen:
                return self._stop(
                    Finding.LINK_BROKEN,
                    f"{where}: the link is broken: it follows event {self._seen[stored_prev]}, "
                    f"not the event before it ({before})",
                    event.seq,
                )
            return self._stop(
                Finding.ENTRY_MISSING,
                f"{where}: an event is missing before it: it follows an event (hash "
                f"{stored_prev[:12]}...) that is not before it in the log (removed, or moved "
                f"after it); expected {before}",
                event.seq,
            )
        self._head, self._head_seq = stored_hash, event.seq or 0
        self._seen[stored_hash] = event.seq or 0
        self.events += 1
        return True

    def stop(self, finding: Finding, message: str, seq: int | None) -> None:
        """Record a problem found outside the chain's own checks (an unreadable row)."""
        self._stop(finding, message, seq)

    def finish(self, recorded_head: str | None) -> Problem | None:
        """Check the head the store keeps: the newest event's hash. Another head means the
        newest events are gone (or the head was set to hide a rewrite)."""
        if self.problem is None and (recorded_head or GENESIS) != self._head:
            ends = f"event {self._head_seq}" if self._head_seq else "no event"
            self._stop(
                Finding.HEAD_MISSING,
                f"the security log's newest events are missing: the log ends at {ends}, "
                "which is not the event recorded as its head",
                None,
            )
        return self.problem

    @property
    def head(self) -> str:
        return self._head

    def __contains__(self, digest: object) -> bool:
        return digest in self._seen

    def _stop(self, finding: Finding, message: str, seq: int | None) -> bool:
        self.problem = Problem(finding, message, seq, None, LOG)
        return False
