"""``pkgline audit``: check that the lot history and the security log are as written."""

from __future__ import annotations

import json as jsonlib
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from pkgline.api.defaults import MAX_ANCHORS
from pkgline.cli.common import (
    EXIT_TAMPERED,
    DbOption,
    JsonOption,
    err,
    marked,
    out,
    print_json,
    usage_error,
)
from pkgline.cli.modes import Remote, ServerOption, call, either, target
from pkgline.cli.servers import Server

app = typer.Typer(
    help="The audit trail: verify the hash chains of the lot history and the security log.",
    no_args_is_help=True,
)


@app.command()
def verify(
    anchor: Annotated[
        list[str] | None,
        typer.Option(
            "--anchor",
            help="A lots_head or security_head an earlier verify printed (kept elsewhere): "
            "it must still be in the history or the security log (repeatable).",
        ),
    ] = None,
    anchors_from: Annotated[
        Path | None,
        typer.Option(
            "--anchors-from",
            help="A file of anchors ('-': standard input), one per line: a hash, or a JSON "
            "object whose hash, lots_head and security_head are taken (the feed's lot "
            "events and audit/heads as a subscriber saved them; 'mosquitto_sub -v' lines too).",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """Check every history entry against its hash and the entry before it, each lot's newest
    entry and the chain over lots, every electronic signature against the entry it signs,
    every security event against its hash and the event before it, and that the database
    still refuses changes to the history and the security log. Exits 0 with the count of
    entries checked, or 6 naming the first entry that does not match (docs/security.md)."""
    anchors = [a.strip().lower() for a in anchor or []]
    for a in anchors:
        if not _HEX64.fullmatch(a):
            usage_error(
                f"--anchor expects a SHA-256 in hex (64 characters), got {a!r}", as_json=json
            )
    if anchors_from is not None:
        anchors += _read_anchors(anchors_from, as_json=json)
    anchors = list(dict.fromkeys(anchors))  # each once, in the order given

    async def direct() -> dict[str, Any]:
        from mes.adapters.audit import verify_history
        from mes.adapters.schema import require_current_schema
        from pkgline.bootstrap import open_engine

        async with open_engine(db, must_exist=True) as engine:
            await require_current_schema(engine)
            found: dict[str, Any] = (await verify_history(engine, anchors=anchors)).to_dict()
            return found

    via = target(server, db, as_json=json)
    if via is not None and len(anchors) > MAX_ANCHORS:
        found = _verify_in_parts(via, anchors, as_json=json)
    else:
        remote = (
            Remote("POST", "/audit/verify", {"anchors": anchors})
            if anchors
            else Remote("GET", "/audit/verify")
        )
        found = either(db, server, json, direct, remote)
    problem = found.get("problem")
    if json:
        print_json(found)
    elif problem is None:
        out.print(
            marked(
                "✔",
                "green",
                f"history verified: {_count(found['entries'], 'entry', 'entries')} of "
                f"{_count(found['lots'], 'lot', 'lots')}, "
                f"{_count(found['signatures'], 'signature', 'signatures')}, "
                f"{_count(found['security_events'], 'security event', 'security events')}; "
                f"head of the chain over lots {found['lots_head']}, of the security log "
                f"{found['security_head']}",
            )
        )
        if anchors:
            out.print(
                f"  {_count(len(anchors), 'anchor', 'anchors')} given, each found in the "
                "history or the security log"
            )
    else:
        err.print(marked("✘", "bold red", f"history does not verify: {problem['message']}"))
        err.print(f"  ({found['entries']} entries checked before it)")
    if problem is not None:
        raise typer.Exit(EXIT_TAMPERED)


def _verify_in_parts(via: Server, anchors: list[str], *, as_json: bool) -> dict[str, Any]:
    """``POST /audit/verify`` with the anchors in parts of at most what one request may name
    (a kept feed holds a hash per lot event: thousands within minutes), each part verifying
    the history again with its anchors; the answer of the first part that does not verify,
    else of the last."""
    found: dict[str, Any] = {}
    for start in range(0, len(anchors), MAX_ANCHORS):
        part = anchors[start : start + MAX_ANCHORS]
        found = call(
            via, "POST", "/audit/verify", {"anchors": part}, as_json=as_json, quiet=start > 0
        )
        if found.get("problem") is not None:
            break
    return found


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


_HEX64 = re.compile(r"[0-9a-f]{64}")
_EMPTY_MESSAGE = re.compile(r"\S+/\S+ \(null\)")
"""``mosquitto_sub -v``'s line of an empty message: a finished lot's state cleared at the
retention's end (docs/events.md, "lot-state"), which anchors nothing."""
_FIELDS = ("hash", "lots_head", "security_head")
"""What a saved message of the feed anchors: a lot event's entry, the heads of both chains."""


def _read_anchors(path: Path, *, as_json: bool) -> list[str]:
    """The anchors in ``path`` (``-``: standard input); a usage error naming the first line
    that is none of: blank, ``#`` comment, a hash, a JSON object (after a topic and a space,
    as ``mosquitto_sub -v`` prints)."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        usage_error(f"--anchors-from {path}: cannot read it ({exc})", as_json=as_json)
    found: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            found.extend(_anchors_in(line.strip()))
        except ValueError as exc:
            usage_error(
                f"--anchors-from {path}, line {number}: {exc}; expected a SHA-256 in hex (64 "
                "characters) or a JSON object with hash, lots_head or security_head",
                as_json=as_json,
            )
    if not found:
        usage_error(f"--anchors-from {path}: no anchor in it", as_json=as_json)
    return found


def _anchors_in(line: str) -> Iterable[str]:
    if not line or line.startswith("#") or _EMPTY_MESSAGE.fullmatch(line):
        return []
    if _HEX64.fullmatch(line.lower()):
        return [line.lower()]
    start = line.find("{")
    if start < 0:
        raise ValueError(f"{line[:80]!r} is not a hash")
    try:
        document = jsonlib.loads(line[start:])
    except ValueError:
        raise ValueError("not valid JSON") from None
    if not isinstance(document, dict):
        raise ValueError("the JSON is not an object")
    values = [document[f] for f in _FIELDS if document.get(f) is not None]
    if not values:
        return []  # a message that anchors nothing (a lot event from before the chain, a state)
    for value in values:
        if not isinstance(value, str) or not _HEX64.fullmatch(value.lower()):
            raise ValueError(f"{value!r} is not a SHA-256 in hex")
    return [v.lower() for v in values]
