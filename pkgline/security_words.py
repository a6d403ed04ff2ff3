"""A security event as a person reads it, in ``pkgline user events`` and on the station's
security log page (``/station/security``): its kind with an engineering change's action,
and its detail in words (an engineering change as what changed, ``field old → new``)."""

from __future__ import annotations

from typing import Any


def event_name(e: dict[str, Any]) -> str:
    """An event's kind (``SecurityEvent.to_dict``) and its action where it has one: an
    engineering change's (``engineering_change tool_qualify``), the operation a refused
    signature or authority was for (``signature_refused scrap``, ``refused release``)."""
    if e.get("action"):
        return f"{e['kind']} {e['action']}"
    return str(e["kind"])


def event_detail(detail: dict[str, Any]) -> str:
    """A security event's detail as a person reads it: ``roles: admin, operator; from:
    127.0.0.1:55104 (https)`` (lists as words, not Python's brackets and quotes). An
    engineering change's before and after (two records) as what changed: ``changed:
    qualified no → yes, by op1 → eng2, ...``, or ``new: ...`` when there was none before;
    ``--json`` keeps both whole."""
    before, after = detail.get("before"), detail.get("after")
    if not isinstance(after, dict) or not (before is None or isinstance(before, dict)):
        return "; ".join(f"{k}: {words(v)}" for k, v in detail.items())
    rest = [f"{k}: {words(v)}" for k, v in detail.items() if k not in ("before", "after")]
    if before is None:
        new = ", ".join(f"{k} {words(v)}" for k, v in after.items() if v is not None)
        return "; ".join([*rest, f"new: {new}"])
    changed = ", ".join(
        f"{k} {words(before.get(k))} → {words(v)}" for k, v in after.items() if before.get(k) != v
    )
    return "; ".join([*rest, f"changed: {changed or 'nothing'}"])


def words(value: Any) -> str:
    """A detail's value in words: none, yes, no; a list's items separated by commas."""
    if value is None or isinstance(value, bool):
        return {None: "none", True: "yes", False: "no"}[value]
    if isinstance(value, list | tuple):
        return ", ".join(words(v) for v in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k} {words(v)}" for k, v in value.items())
    return str(value)
