"""What each message of the feed says: pure functions from the store's records to JSON
documents, one JSON Schema per kind in ``schemas/`` (``{kind}.schema.json``, docs/events.md).

An outbox row becomes a *lot event* (or, of a durable or a material lot, a *durable event*
or a *material event*: :func:`subject_event`) when it is well formed; when it is not (its
payload is not a history entry, it names another lot, its id cannot be a topic level, or it is
larger than the broker takes), :func:`lot_event` raises :class:`Undeliverable` with the
reason, and the relay publishes a *dead letter* instead, so that one bad row never blocks the
feed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from importlib import resources
from typing import Any

import orjson

from mes.adapters.outbox import SUBJECTS, OutboxEvent
from mes.domain.equipment import ToolRecord
from mes.domain.tool_down import declaration
from pkgline.events.topics import usable_level

SCHEMA_VERSION = 1
KINDS = (
    "lot-event",
    "durable-event",
    "material-event",
    "lot-state",
    "durable-state",
    "material-state",
    "tool-state",
    "line-status",
    "controller-status",
    "dead-letter",
)
_REQUIRED_TEXT = ("at", "user", "operation", "state_after")
_HASH = re.compile(r"[0-9a-f]{64}")
"""A history entry's ``prev_hash`` and ``hash`` (mes.domain.audit: SHA-256 in hex)."""
_PRINCIPAL = ("by", "auth")
"""Who really acted and how they were known (``user`` is the name the command was given, free
text): text, or null in an entry written before the history recorded them (revision 0004) and
in an outbox row written before the feed published them (a lot event; a durable's or a
material lot's: :data:`_SUBJECT_LATER`)."""


class Undeliverable(ValueError):
    """An outbox event that cannot be published as a lot event; the message is the reason."""


def encode(document: Mapping[str, Any]) -> bytes:
    """``document`` as compact UTF-8 JSON (orjson: encoding was a third of the relay's time
    while a backlog drained, and orjson is several times quicker than the standard library;
    keys that are not text are written as text, as ``json.dumps`` does). TypeError (orjson's
    JSONEncodeError) when it cannot be written."""
    return orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS)


def _encoded(document: Mapping[str, Any], max_bytes: int) -> bytes:
    """``document``'s encoding; :class:`Undeliverable` when it is not JSON or too large."""
    try:
        body = encode(document)
    except (TypeError, ValueError) as exc:
        raise Undeliverable(f"not JSON: {exc}") from exc
    if len(body) > max_bytes:
        raise Undeliverable(f"{len(body)} bytes, more than max_payload_bytes ({max_bytes})")
    return body


def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of a payload kind (packaged with pkgline)."""
    text = resources.files("pkgline.events").joinpath(f"schemas/{kind}.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def lot_event(event: OutboxEvent, max_bytes: int) -> tuple[dict[str, Any], bytes]:
    """The lot event of an outbox row and its encoding; :class:`Undeliverable` if it has
    none."""
    entry = event.payload
    if not usable_level(event.lot_id):
        raise Undeliverable(f"lot id {event.lot_id!r} cannot be a topic level (/ + # $)")
    if not isinstance(entry, Mapping):
        raise Undeliverable(f"payload is a {type(entry).__name__}, expected a history entry")
    missing = [k for k in _REQUIRED_TEXT if not isinstance(entry.get(k), str)]
    if missing:
        raise Undeliverable(f"history entry without {', '.join(missing)} (text expected)")
    if entry.get("lot", event.lot_id) != event.lot_id:
        raise Undeliverable(f"history entry of lot {entry.get('lot')!r} in lot {event.lot_id}")
    data = entry.get("data", {})
    if not isinstance(data, Mapping):
        raise Undeliverable(f"data is a {type(data).__name__}, expected an object")
    for key in _PRINCIPAL:
        if not isinstance(entry.get(key), str | None):
            raise Undeliverable(f"history entry whose {key} is not text")
    hashes = {k: entry.get(k) for k in ("prev_hash", "hash")}
    for key, value in hashes.items():
        if value is not None and not (isinstance(value, str) and _HASH.fullmatch(value)):
            raise Undeliverable(f"history entry whose {key} is not a SHA-256 in hex")
    document = {
        "v": SCHEMA_VERSION,
        "id": event.id,
        "kind": event.kind,
        "lot": event.lot_id,
        "time": entry["at"],
        "user": entry["user"],
        "by": entry.get("by"),
        "auth": entry.get("auth"),
        "operation": entry["operation"],
        "step": entry.get("step"),
        "tool": entry.get("tool"),
        "state_before": entry.get("state_before"),
        "state_after": entry["state_after"],
        "reason": entry.get("reason"),
        "history_seq": entry.get("seq"),
        "prev_hash": hashes["prev_hash"],
        "hash": hashes["hash"],
        "data": data,
    }
    return document, _encoded(document, max_bytes)


_SUBJECT_TEXT = ("at", "user", "event")
_SUBJECT_KEYS = {
    "durable": ("durable_kind", "count_after", "life", "warn_at", "unit", "mounted_on"),
    "material": (
        "material_kind",
        "part_number",
        "loaded_on",
        "expires_at",
        "thawed_at",
        "usable_from",
        "floor_life_ends",
    ),
}
"""What a durable's or material lot's state is made of (:func:`subject_state`): an event
without one of them is a dead letter, not a state that cannot be told."""
_SUBJECT_LATER: dict[str, dict[str, Any]] = {
    "durable": {"by": None, "auth": None},
    "material": {
        "quarantine": None,
        "version": None,
        "signatures": [],
        "by": None,
        "auth": None,
    },
}
"""What an event written before its subject's events said more has in their place: not
known (a material lot's quarantine, version, a release's signatures; who acted, of both)."""


def feed_event(event: OutboxEvent, max_bytes: int) -> tuple[dict[str, Any], bytes]:
    """The lot event, durable event or material event of an outbox row, by its subject, and
    its encoding; :class:`Undeliverable` if it has none."""
    if event.subject == "lot":
        return lot_event(event, max_bytes)
    if event.subject in SUBJECTS:
        return subject_event(event, max_bytes)
    raise Undeliverable(f"subject {event.subject!r}, expected one of {', '.join(SUBJECTS)}")


def replayed(event: OutboxEvent) -> dict[str, Any]:
    """An outbox row as the feed published it (``events list``, ``GET /events``): its
    event, or the dead letter it went out as (without the broker's size limit)."""
    try:
        document, _ = feed_event(event, max_bytes=2**62)
    except Undeliverable as exc:
        return dead_letter(event, str(exc), event.created_at)
    return document


def subject_event(event: OutboxEvent, max_bytes: int) -> tuple[dict[str, Any], bytes]:
    """The durable event or material event of an outbox row (its ``subject``: ``durable`` or
    ``material``) and its encoding: the history event the outbox keeps
    (:func:`mes.domain.durables.event_dict`, :func:`mes.domain.materials.event_dict`), its
    ``at`` as ``time``; :class:`Undeliverable` if it has none."""
    subject = event.subject
    if not usable_level(event.lot_id):
        raise Undeliverable(f"{subject} id {event.lot_id!r} cannot be a topic level (/ + # $)")
    entry = event.payload
    if not isinstance(entry, Mapping):
        raise Undeliverable(f"payload is a {type(entry).__name__}, expected a {subject} event")
    missing = [k for k in _SUBJECT_TEXT if not isinstance(entry.get(k), str)]
    if missing:
        raise Undeliverable(f"{subject} event without {', '.join(missing)} (text expected)")
    missing = [k for k in _SUBJECT_KEYS[subject] if k not in entry]
    if missing:
        raise Undeliverable(f"{subject} event without {', '.join(missing)}")
    if entry.get(subject) != event.lot_id:
        raise Undeliverable(f"event of {subject} {entry.get(subject)!r} in {event.lot_id}")
    document = {
        "v": SCHEMA_VERSION,
        "id": event.id,
        "kind": event.kind,
        **{k: v for k, v in entry.items() if k != "at"},
        **{k: v for k, v in _SUBJECT_LATER[subject].items() if k not in entry},
        "time": entry["at"],
    }
    return document, _encoded(document, max_bytes)


def lot_state(event: Mapping[str, Any]) -> dict[str, Any]:
    """A lot's retained state, from its last event (a lot-event document)."""
    return {
        "v": SCHEMA_VERSION,
        "lot": event["lot"],
        "state": event["state_after"],
        "step": event["step"],
        "tool": event["tool"],
        "last_event_id": event["id"],
        "last_event": event["kind"],
        "time": event["time"],
    }


def durable_state(event: Mapping[str, Any]) -> dict[str, Any]:
    """A durable's retained state, from its last event (a durable-event document)."""
    count, life = event["count_after"], event["life"]
    return {
        "v": SCHEMA_VERSION,
        "durable": event["durable"],
        "durable_kind": event["durable_kind"],
        "count": count,
        "life": life,
        "warn_at": event["warn_at"],
        "unit": event["unit"],
        "status": "spent" if count >= life else "warned" if count >= event["warn_at"] else "ok",
        "mounted_on": event["mounted_on"],
        "last_event_id": event["id"],
        "last_event": event["kind"],
        "time": event["time"],
    }


def material_state(event: Mapping[str, Any]) -> dict[str, Any]:
    """A material lot's retained state, from its last event (a material-event document)."""
    keys = ("material", "material_kind", "part_number", "loaded_on", "expires_at")
    clocks = ("thawed_at", "usable_from", "floor_life_ends")
    return {
        "v": SCHEMA_VERSION,
        **{k: event[k] for k in (*keys, *clocks)},
        "quarantine": event.get("quarantine"),
        "last_event_id": event["id"],
        "last_event": event["kind"],
        "time": event["time"],
    }


_STATES = {"lot": lot_state, "durable": durable_state, "material": material_state}


def subject_state(subject: str, event: Mapping[str, Any]) -> dict[str, Any]:
    """The retained state of a lot, durable or material lot from its last event's document
    (as :func:`feed_event` made it)."""
    return _STATES[subject](event)


def dead_letter(event: OutboxEvent, reason: str, at: datetime) -> dict[str, Any]:
    size = len(repr(event.payload).encode())
    return {
        "v": SCHEMA_VERSION,
        "id": event.id,
        "lot": event.lot_id,
        "subject": event.subject,
        "kind": event.kind,
        "time": event.created_at.isoformat(),
        "reason": reason,
        "size_bytes": size,
        "dead_lettered_at": at.isoformat(),
    }


def tool_state(tool: ToolRecord) -> dict[str, Any]:
    s = tool.snapshot
    return {
        "v": SCHEMA_VERSION,
        "tool": tool.id,
        "equipment_class": tool.equipment_class,
        "controller": tool.line,
        "connected": s.connected,
        "process_state": s.process_state,
        "mode": s.mode,
        "e10": s.e10,
        "e10_since": tool.e10_since.isoformat(),
        "dispatch": tool.dispatch.value,
        "lot": s.lot_id,
        "job": s.job_id,
        "sites_done": s.sites_done,
        "sites_total": s.sites_total,
        "alarm": dict(s.alarm) if s.alarm is not None else None,
        "reason": s.reason,
        "time": tool.updated_at.isoformat(),
        "down": tool.down,
        "declared": declaration(tool),
    }


def controller_status(
    controller: str, online: bool, at: datetime | None, *, host: str, pid: int, reason: str
) -> dict[str, Any]:
    return {
        "v": SCHEMA_VERSION,
        "controller": controller,
        "status": "online" if online else "offline",
        "reason": reason,
        "time": at.isoformat() if at is not None else None,
        "host": host,
        "pid": pid,
    }


def audit_heads(
    line: str, controller: str, at: datetime, heads: Mapping[str, str]
) -> dict[str, Any]:
    """The heads of the hash chains, as ``pkgline audit verify`` prints them: kept by a
    subscriber, each is an anchor a later ``audit verify --anchor`` checks (a rewrite of the
    history's or the security log's tail, with its heads set to match, no longer has it)."""
    return {
        "v": SCHEMA_VERSION,
        "line": line,
        "controller": controller,
        "time": at.isoformat(),
        "lots_head": heads.get("lots"),
        "security_head": heads.get("security"),
    }


def line_status(
    line: str,
    controller: str,
    at: datetime,
    lots: Mapping[str, int],
    backlog: int,
    oldest_age_s: float | None,
    last_published_id: int | None,
) -> dict[str, Any]:
    return {
        "v": SCHEMA_VERSION,
        "line": line,
        "controller": controller,
        "time": at.isoformat(),
        "lots": dict(lots),
        "backlog": backlog,
        "backlog_oldest_age_s": oldest_age_s,
        "last_published_id": last_published_id,
    }
