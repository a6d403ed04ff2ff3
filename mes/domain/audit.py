"""The lot history's hash chain: every entry carries the hash of the entry before it and its
own hash over its canonical content, so that an entry changed, removed or put in another's
place after the fact no longer matches. Pure functions; the stores call :func:`chain` when
they write a change, and ``pkgline audit verify`` feeds every entry to :class:`ChainCheck`.

The shape (docs/security.md says why)::

    lots chain:  GENESIS <- A.start <- B.start <- C.split_from <- ...   (one entry per lot)
                             ^           ^
    lot A:                A.start <- A.track_in <- A.track_out <- ...  (head: lots.history_head)
    lot B:                           B.start <- B.track_in <- ...

A lot's first entry follows the previous lot's first entry (the chain over lots: a lot whose
history is removed leaves a gap there); each later entry follows the lot's entry before it.
Writers of different lots never touch the same chain, so they do not wait for each other; only
new lots take their turn on the chain over lots (its head is kept in ``audit_heads``).

Canonical content: the entry's fields (who acted and how included; not its ``seq``, which the database assigns) and the
hash it follows, as JSON with sorted keys and no spaces, UTF-8; times in UTC with
microseconds; a float without a fractional part written as an integer (PostgreSQL's JSONB
gives 1e16 back as 10000000000000000). The hash is SHA-256 of that, in hex.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC
from enum import StrEnum
from typing import Any

from mes.domain.model import Change, HistoryEntry, Lot

GENESIS = "0" * 64
"""What the first lot's first entry follows."""

FORMAT = 1
"""The version of the canonical content (part of it, so a later format is told apart)."""


def normal(value: Any) -> Any:
    """A value as it reads back from either database's JSON (a whole float as an integer,
    keys as strings, tuples as lists)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normal(v) for v in value]
    return value


def canonical(entry: HistoryEntry, prev_hash: str) -> bytes:
    """The bytes an entry's hash is taken over."""
    if entry.at.tzinfo is None:
        raise ValueError("history times must be timezone-aware")
    content = {
        "v": FORMAT,
        "prev": prev_hash,
        "lot": entry.lot_id,
        "at": entry.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "user": entry.user,
        "operation": entry.operation.value,
        "state_before": entry.state_before.value if entry.state_before else None,
        "state_after": entry.state_after.value,
        "step": entry.step,
        "tool": entry.tool,
        "reason": entry.reason,
        "data": normal(entry.data),
        "by": entry.by,
        "auth": entry.auth,
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode()


def entry_hash(entry: HistoryEntry, prev_hash: str) -> str:
    return hashlib.sha256(canonical(entry, prev_hash)).hexdigest()


@dataclass(frozen=True, slots=True)
class Chained:
    """A change with its entries chained: each with ``prev_hash`` and ``hash``, each lot with
    its new ``history_head``, and the new head of the chain over lots."""

    change: Change
    lots_head: str | None


def chain(change: Change, lots_head: str | None) -> Chained:
    """Chain the change's entries, in order. ``lots_head`` (the head of the chain over lots)
    is needed only when the change creates a lot. Every entry's lot must be one the change
    writes (version-checked: that is what keeps two writers off one lot's chain)."""
    heads: dict[str, str | None] = {}
    for lot in change.lots:
        new = change.expected_versions[lot.id] is None
        if not new and lot.history_head is None:
            raise ValueError(f"lot {lot.id} has no history head: is the schema current?")
        heads[lot.id] = None if new else lot.history_head
    entries = []
    for entry in change.entries:
        if entry.lot_id not in heads:
            raise ValueError(
                f"history entry for lot {entry.lot_id}, which the change does not write"
            )
        prev = heads[entry.lot_id]
        if prev is None:  # the lot's first entry: it follows the previous lot's first
            if lots_head is None:
                raise ValueError("a new lot's first entry needs the head of the chain over lots")
            prev = lots_head
            lots_head = digest = entry_hash(entry, prev)
        else:
            digest = entry_hash(entry, prev)
        heads[entry.lot_id] = digest
        entries.append(replace(entry, prev_hash=prev, hash=digest))
    lots: list[Lot] = []
    for lot in change.lots:
        head = heads[lot.id]
        if head is None:
            raise ValueError(f"new lot {lot.id} written without a history entry")
        lots.append(replace(lot, history_head=head))
    return Chained(replace(change, lots=tuple(lots), entries=tuple(entries)), lots_head)


class Finding(StrEnum):
    """What is wrong with the history, where verification stopped."""

    CONTENT_CHANGED = "content_changed"
    """The entry's content no longer gives its hash."""
    LINK_BROKEN = "link_broken"
    """The entry follows an entry that is not the one before it in its chain."""
    ENTRY_MISSING = "entry_missing"
    """The entry follows an entry that is no longer in the history."""
    HEAD_MISSING = "head_missing"
    """The newest entries of a lot, or the newest lot's history, are no longer there."""
    ANCHOR_MISSING = "anchor_missing"
    """A hash kept outside the database (an earlier ``lots_head``) is no longer in the
    history: entries were cut, and the heads rewritten to hide it."""
    STATE_CHANGED = "state_changed"
    """A lot's record is in another state than its newest entry left it in: the lot was
    changed behind the history's back (a hold lifted, a scrap undone by editing the table)."""
    GUARD_MISSING = "guard_missing"
    """The database no longer refuses changes to the history (a trigger dropped)."""
    SIGNATURE_UNLINKED = "signature_unlinked"
    """A signature names no signed entry of its lot (the entry removed, or never made)."""
    SIGNATURE_CHANGED = "signature_changed"
    """A signature no longer matches what the entry it signs records of it."""
    SIGNATURE_MISSING = "signature_missing"
    """An entry records a signature whose row is gone."""


@dataclass(frozen=True, slots=True)
class Problem:
    finding: Finding
    message: str
    seq: int | None = None
    lot_id: str | None = None
    log: str = "history"
    """Where: the lot history (``seq`` an entry's) or the security log (``security``: ``seq``
    an event's, :mod:`mes.domain.security_chain`)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "finding": self.finding.value,
            "log": self.log,
            "seq": self.seq,
            "lot": self.lot_id,
            "message": self.message,
        }


class ChainCheck:
    """Checks a history fed entry by entry in ``seq`` order, then the heads the store keeps.
    Stops at the first problem (:attr:`problem`)."""

    def __init__(self) -> None:
        self.entries = 0
        self.problem: Problem | None = None
        self._lots_head = GENESIS
        self._heads: dict[str, tuple[str, int]] = {}
        """Each lot's newest hash and seq so far."""
        self._states: dict[str, str] = {}
        """The state each lot's newest entry so far left it in."""
        self._seen: dict[str, int] = {}
        """Every hash so far, with its seq (to tell a missing entry from a misplaced one;
        about 150 bytes an entry: 150 MB for a million)."""

    def add(self, entry: HistoryEntry, stored_prev: str, stored_hash: str) -> bool:
        """Check one entry (its content as stored, and its stored hashes); False once a
        problem is found."""
        if self.problem is not None:
            return False
        seq, lot_id = entry.seq, entry.lot_id
        where = f"history entry {seq} (lot {lot_id}, {entry.operation.value})"
        if entry_hash(entry, stored_prev) != stored_hash:
            return self._stop(
                Finding.CONTENT_CHANGED,
                f"{where}: its content does not match its hash: it was changed after it was "
                "written",
                entry,
            )
        known = self._heads.get(lot_id)
        expected = known[0] if known else self._lots_head
        if stored_prev != expected:
            chain = "the lot's previous entry" if known else "the previous lot's first entry"
            at = f"entry {known[1]}" if known else "the chain over lots"
            if stored_prev in self._seen:
                message = (
                    f"{where}: the link is broken: it follows entry {self._seen[stored_prev]}, "
                    f"not {chain} ({at})"
                )
                return self._stop(Finding.LINK_BROKEN, message, entry)
            message = (
                f"{where}: an entry is missing before it: it follows an entry (hash "
                f"{stored_prev[:12]}...) that is no longer in the history; expected {chain} "
                f"({at})"
            )
            return self._stop(Finding.ENTRY_MISSING, message, entry)
        if known is None:
            self._lots_head = stored_hash
        self._heads[lot_id] = (stored_hash, seq or 0)
        self._states[lot_id] = entry.state_after.value
        self._seen[stored_hash] = seq or 0
        self.entries += 1
        return True

    def finish(
        self,
        lot_heads: Mapping[str, str | None],
        lots_head: str,
        anchors: Sequence[str] = (),
        lot_states: Mapping[str, str] | None = None,
    ) -> Problem | None:
        """Check the heads the store keeps: each lot's newest entry, and the chain over lots'
        newest first entry. A head with no entry to match means the newest entries are gone.
        ``anchors``: hashes kept elsewhere (earlier heads) that must still be entries.
        ``lot_states``: each lot's state as its record has it, which must be the state its
        newest entry left it in (every change of a lot writes an entry)."""
        if self.problem is not None:
            return self.problem
        for anchor in anchors:
            if anchor not in self._seen:
                self.problem = Problem(
                    Finding.ANCHOR_MISSING,
                    "no entry of the history nor event of the security log has the hash "
                    f"{anchor[:12]}... kept outside the database: either entries were removed "
                    "and the heads rewritten, or the anchor is not one this database's history "
                    "ever had (check that it was copied whole, from this line's earlier run)",
                )
                return self.problem
        for lot_id in sorted(lot_heads):
            head = lot_heads[lot_id]
            mine = self._heads.get(lot_id)
            if mine is None:
                return self._stop_at_head(lot_id, f"lot {lot_id} has no history left")
            if head != mine[0]:
                return self._stop_at_head(
                    lot_id,
                    f"lot {lot_id}: its newest entry is not in the history (the history ends "
                    f"at entry {mine[1]}, which is not the lot's newest)",
                )
        for lot_id, state in sorted((lot_states or {}).items()):
            recorded = self._states.get(lot_id)
            if recorded is not None and state != recorded:
                self.problem = Problem(
                    Finding.STATE_CHANGED,
                    f"lot {lot_id} is {state} in its record, but its history leaves it "
                    f"{recorded} (entry {self._heads[lot_id][1]}): the lot was changed "
                    "without a history entry, behind pkgline's back",
                    self._heads[lot_id][1],
                    lot_id,
                )
                return self.problem
        orphans = sorted(set(self._heads) - set(lot_heads))
        if orphans:
            return self._stop_at_head(orphans[0], f"lot {orphans[0]} has history but no lot record")
        if lots_head != self._lots_head:
            return self._stop_at_head(
                None,
                "the newest lot's history is missing: the chain over lots ends at another "
                "entry than the one recorded as its head",
            )
        return None

    @property
    def lots(self) -> int:
        return len(self._heads)

    def seq_of(self, digest: str) -> int | None:
        """The seq of the entry checked with this hash (None: no such entry)."""
        return self._seen.get(digest)

    @property
    def lots_head(self) -> str:
        return self._lots_head

    def _stop(self, finding: Finding, message: str, entry: HistoryEntry) -> bool:
        self.problem = Problem(finding, message, entry.seq, entry.lot_id)
        return False

    def _stop_at_head(self, lot_id: str | None, message: str) -> Problem:
        self.problem = Problem(Finding.HEAD_MISSING, message, None, lot_id)
        return self.problem
