"""Verifying the electronic signatures against the history they sign (``pkgline audit
verify``, after the hash chain): every signature row must name an entry of its lot by that
entry's hash, and match what the entry records of it (the entry's ``data["signatures"]``,
covered by its hash); every signature an entry records must have its row. Pure: the store
feeds the signed entries and the rows."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mes.domain.audit import Finding, Problem
from mes.domain.signatures import Signature


@dataclass(frozen=True, slots=True)
class SignedEntry:
    """A history entry that records signatures: its seq, lot and what it records."""

    seq: int
    lot_id: str
    manifests: tuple[Mapping[str, Any], ...]


def _key(signer: Any, printed: Any, meaning: Any, at: Any, method: Any) -> tuple[Any, ...]:
    when = at
    if isinstance(at, str):
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            when = at
    return (signer, printed, meaning, when, method)


def _row_key(s: Signature) -> tuple[Any, ...]:
    return _key(s.signer, s.printed_name, s.meaning, s.at, s.method.value)


def _manifest_key(m: Mapping[str, Any]) -> tuple[Any, ...]:
    return _key(
        m.get("signer"), m.get("printed_name"), m.get("meaning"), m.get("at"), m.get("method")
    )


def signed_manifests(data: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    """What an entry's data records of its signatures (none for most entries)."""
    found = data.get("signatures")
    if not isinstance(found, list):
        return ()
    return tuple(m for m in found if isinstance(m, Mapping))


def check_signature_rows(
    signed: Mapping[str, SignedEntry],
    rows: Iterable[Signature],
    entry_seq: Callable[[str], int | None],
) -> tuple[Problem | None, int]:
    """The first problem with the signatures, and how many rows were checked. ``signed``:
    the entries that record signatures, by hash; ``entry_seq``: the seq of any entry of the
    history by its hash (None: no such entry)."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    checked = 0
    for s in rows:
        where = f"signature {s.seq} (lot {s.lot_id}, {s.signer}, {s.meaning!r})"
        entry = signed.get(s.entry_hash or "")
        if entry is None:
            seq = entry_seq(s.entry_hash or "")
            why = (
                "no entry of the history has that hash (removed, or never written)"
                if seq is None
                else f"entry {seq} records no signature: the signature was not made with it"
            )
            return _problem(
                Finding.SIGNATURE_UNLINKED,
                f"{where}: the entry it signs "
                f"({(s.entry_hash or '')[:12]}...) is not a signed entry of the "
                f"lot: {why}",
                seq,
                s.lot_id,
            ), checked
        if entry.lot_id != s.lot_id:
            return _problem(
                Finding.SIGNATURE_UNLINKED,
                f"{where}: it names entry {entry.seq}, which is lot {entry.lot_id}'s",
                entry.seq,
                s.lot_id,
            ), checked
        key = _row_key(s)
        if key not in {_manifest_key(m) for m in entry.manifests}:
            return _problem(
                Finding.SIGNATURE_CHANGED,
                f"{where}: it does not match what entry {entry.seq} records of its "
                "signatures: the signature was changed after it was written",
                entry.seq,
                s.lot_id,
            ), checked
        found.setdefault(s.entry_hash or "", []).append(key)
        checked += 1
    for digest, entry in sorted(signed.items(), key=lambda item: item[1].seq):
        have = found.get(digest, [])
        for m in entry.manifests:
            key = _manifest_key(m)
            if key in have:
                have.remove(key)
                continue
            return _problem(
                Finding.SIGNATURE_MISSING,
                f"history entry {entry.seq} (lot {entry.lot_id}) records a signature of "
                f"{m.get('signer')} ({m.get('meaning')!r}) that is no longer in the signatures",
                entry.seq,
                entry.lot_id,
            ), checked
    return None, checked


def _problem(finding: Finding, message: str, seq: int | None, lot_id: str) -> Problem:
    return Problem(finding, message, seq, lot_id)


__all__: Sequence[str] = ("SignedEntry", "check_signature_rows", "signed_manifests")
