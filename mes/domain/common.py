"""What every lot rule uses: history entries, the lot's position in its flow, values
given as text or typed, sites given by operators or tools. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flows import Flow, LotContext, Value, ValueSpec
from mes.domain.errors import (
    InvalidInput,
    LotTrackerError,
    UnknownLot,
)
from mes.domain.model import (
    LOT_ID_PATTERN,
    LOT_ID_RULE,
    REJECT_CODE_PATTERN,
    Change,
    HistoryEntry,
    Lot,
    LotHead,
    LotState,
    Operation,
    SiteRef,
    SiteReject,
)
from mes.domain.text import blank, one_line, utc_stamp

if TYPE_CHECKING:
    from mes.domain.authority import Principal

SINGULATION_STEP = "DICE"


def stamped(change: Change, who: Principal | None) -> Change:
    """The change with its history entries saying who made it, and how they were known."""
    if who is None:
        return change
    entries = tuple(replace(e, by=who.name, auth=who.method.value) for e in change.entries)
    return replace(change, entries=entries)


"""At DICE the good sites become the lot's unit count (flows.md, "Strips, panels and sites")."""

if TYPE_CHECKING:  # the commands' module only for its types: a report needs none of it
    from mes.domain.commands import GivenValue, SiteRejectGiven


# -- helpers ---------------------------------------------------------------------------------


def history_entry(
    lot: Lot,
    operation: Operation,
    user: str,
    now: datetime,
    state_after: LotState,
    *,
    state_before: LotState | None = None,
    step: str | None = None,
    tool: str | None = None,
    reason: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> HistoryEntry:
    return HistoryEntry(
        lot_id=lot.id,
        operation=operation,
        user=user,
        at=now,
        state_before=lot.state if state_before is None else state_before,
        state_after=state_after,
        step=step,
        tool=tool,
        reason=None if reason is None else one_line(reason, "a reason", lot_id=lot.id),
        data=dict(data or {}),
    )


def single_change(before: Lot, after: Lot, entry: HistoryEntry, **extra: Any) -> Change:
    return Change(
        lots=(after,), expected_versions={before.id: before.version}, entries=(entry,), **extra
    )


def moved_lot(before: Lot, now: datetime, **changes: Any) -> Lot:
    return replace(before, updated_at=now, version=before.version + 1, **changes)


def require_reason(value: str | None, what: str, lot_id: str, *, coded: str | None = None) -> str:
    """``value``, one line; InvalidInput if there is none. ``coded``: the kind of reason code
    (``hold``, ``scrap``) the command takes instead of a text (a code alone gives the reason
    its text: mes.reasons), which the refusal then names too."""
    if value is None or blank(value):
        # the lot tracker's words, for the API's and the station's users too: no CLI option
        needs = f"a {coded} reason code of the catalogue or a text saying why" if coded else ""
        said = f"a reason ({needs})" if coded else "a reason: say why"
        raise InvalidInput(f"{what} needs {said}; nothing was changed", lot_id=lot_id)
    return one_line(value, "a reason", lot_id=lot_id)


def check_lot_id(lot_id: str) -> None:
    if not LOT_ID_PATTERN.fullmatch(lot_id):
        raise InvalidInput(f"lot id {lot_id!r} is not valid: expected {LOT_ID_RULE}")


def no_lot(lot_id: str, what: str = "") -> LotTrackerError:
    """The refusal for a lot that is not there (``what``: the words after its id, as in
    "there is no lot L to list the lots after"): UnknownLot; for an id no lot can have (empty,
    too long, a space in it), InvalidInput saying what a lot id is, rather than "there is no
    lot" as if a lot of that name might have been made."""
    if not LOT_ID_PATTERN.fullmatch(lot_id):
        return InvalidInput(f"{lot_id!r} is not a lot id: expected {LOT_ID_RULE}")
    return UnknownLot(f"there is no lot {lot_id}{what}", lot_id=lot_id)


def context(lot: Lot, *, extra_recorded: Mapping[str, Value] | None = None) -> LotContext:
    recorded = dict(lot.recorded)
    if extra_recorded:
        recorded.update(extra_recorded)
    return LotContext(
        params=lot.params, site_rows=lot.site_rows, site_cols=lot.site_cols, recorded=recorded
    )


def position_of(lot: Lot, flow: Flow) -> tuple[frozenset[str], bool, int | None, int | None]:
    """(next steps, may the flow end here, current layer, layers) for a lot.

    A pending rework narrows the next steps to the reworked step."""
    pos = flow.position(lot.path, lot.params)
    if lot.pending_rework is not None:
        return frozenset({lot.pending_rework}), False, pos.layer, pos.layers
    return pos.next_steps, pos.complete, pos.layer, pos.layers


def next_steps(lot: Lot, flow: Flow) -> frozenset[str]:
    if lot.state is not LotState.WAITING:
        return frozenset()
    return position_of(lot, flow)[0]


def next_in_order(lot: Lot | LotHead, flow: Flow) -> tuple[str, ...]:
    """The steps a waiting lot may take next, in the order its flow writes them (the first is
    the one an unattended line runs)."""
    if lot.state is not LotState.WAITING:
        return ()
    if lot.pending_rework is not None:
        return (lot.pending_rework,)
    return flow.position(lot.path, lot.params).in_flow_order


def next_in_order_after_step(lot: Lot, flow: Flow) -> tuple[str, ...]:
    """The steps a running lot may take once its running step is tracked out, in flow order
    (as :func:`next_in_order` will give them if the lot then waits; a limit hold or the end of
    the flow would take it off the line instead)."""
    if lot.state is not LotState.RUNNING or lot.running is None:
        return ()
    return flow.position((*lot.path, lot.running.step), lot.params).in_flow_order


def check_window(since: datetime | None, until: datetime | None) -> None:
    """InvalidInput for a list's time window that ends before it starts (a list asked for
    it would be empty, as if nothing had happened)."""
    if since is not None and until is not None and since > until:
        raise InvalidInput(
            f"expected a window whose start ({utc_stamp(since, seconds=True)}) is not after "
            f"its end ({utc_stamp(until, seconds=True)})"
        )


def coerce_values(
    specs: Mapping[str, ValueSpec],
    given: Mapping[str, GivenValue],
    what: str,
    lot_id: str,
    *,
    field: str,
) -> dict[str, Value]:
    """Turn given values (text or typed) into values of the flow's types; a refusal names
    the value as ``field.NAME`` (``field``: the command's input that gives them,
    ``measured``)."""
    out: dict[str, Value] = {}
    for name, raw in given.items():
        spec = specs.get(name)
        if spec is None:
            expected = ", ".join(sorted(specs)) or "none"
            raise InvalidInput(
                f"{name!r} is not one of the {what}; expected: {expected}",
                lot_id=lot_id,
                allowed=sorted(specs),
                field=f"{field}.{name}",
            )
        try:
            out[name] = _coerce(spec, raw)
        except ValueError as exc:
            raise InvalidInput(f"{what}: {exc}", lot_id=lot_id, field=f"{field}.{name}") from None
    return out


def _coerce(spec: ValueSpec, raw: GivenValue) -> Value:
    if isinstance(raw, str):
        return spec.parse(raw)
    if isinstance(raw, bool):
        raise ValueError(f"{spec.name}: expected a {spec.type}, got {raw!r}")
    if spec.type == "str":
        raise ValueError(f"{spec.name}: expected a word, got {raw!r}")
    if spec.type == "int":
        if float(raw) != int(raw):
            raise ValueError(f"{spec.name}: expected a whole number, got {raw!r}")
        return int(raw)
    value = float(raw)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{spec.name}: expected a finite number, got {raw!r}")
    return value


def resolve_carrier(lot: Lot, given: str, *, field: str | None = None) -> str:
    """The id of the lot's carrier ``given`` names (its id, or its position); a refusal
    names ``field``, the command's input that gave it."""
    if given in lot.carriers:
        return given
    if given.isascii() and given.isdigit() and 1 <= int(given) <= len(lot.carriers):
        return lot.carriers[int(given) - 1]
    raise InvalidInput(
        f"carrier {given!r} is not in lot {lot.id}; its carriers are "
        f"{', '.join(lot.carriers)} (or their positions 1..{len(lot.carriers)})",
        lot_id=lot.id,
        allowed=lot.carriers,
        field=field,
    )


def resolve_sites(
    lot: Lot,
    given: Iterable[SiteRejectGiven],
    already: Mapping[SiteRef, SiteReject],
    *,
    step: str,
    path_index: int,
    field: str,
) -> tuple[SiteReject, ...]:
    """Check rejects given for ``lot`` and turn them into site rejects.

    Refused: an unknown carrier, a row/col outside the carrier, a malformed code, the same site
    twice, or a site rejected before (a rejected site stays rejected); the refusal names
    ``field``, the command's input that gave them (``rejects``, ``sites``)."""
    out: list[SiteReject] = []
    seen: set[SiteRef] = set()
    for g in given:
        carrier = resolve_carrier(lot, g.carrier, field=field)
        if not (1 <= g.row <= lot.site_rows and 1 <= g.col <= lot.site_cols):
            raise InvalidInput(
                f"site {carrier}:{g.row}:{g.col} is outside the carrier: rows are "
                f"1..{lot.site_rows}, columns 1..{lot.site_cols}",
                lot_id=lot.id,
                field=field,
            )
        if not REJECT_CODE_PATTERN.fullmatch(g.code):
            raise InvalidInput(
                f"reject code {g.code!r} is not valid: expected an upper-case word such as "
                "VOID or MISSING_BALL (A-Z, 0-9, _; at most 24)",
                lot_id=lot.id,
                field=field,
            )
        site = SiteRef(carrier, g.row, g.col)
        if site in seen:
            raise InvalidInput(f"site {site} is given twice", lot_id=lot.id, field=field)
        before = already.get(site)
        if before is not None:
            raise InvalidInput(
                f"site {site} was already rejected at {before.step} ({before.code}): "
                "a rejected site stays rejected",
                lot_id=lot.id,
                field=field,
            )
        seen.add(site)
        out.append(SiteReject(carrier, g.row, g.col, g.code, step, path_index))
    return tuple(out)


def units_after(path: Sequence[str], good_sites: int) -> int | None:
    return good_sites if SINGULATION_STEP in path else None


def violations_text(violations: Sequence[Any]) -> str:
    return "; ".join(v.message for v in violations)
