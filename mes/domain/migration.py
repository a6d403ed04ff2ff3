"""Moving a lot to another version of its flow (``lot migrate``): pure rule.

Allowed for a waiting or held lot, to another approved version of the same flow, only where
the lot's parameters are within that version's limits (they were checked at the lot's start
against its old version only) and the lot's path so far is a valid start of that version with
them (and its pending rework, if any, a step of it). The lot keeps its path, sites and recorded values;
from then on it is checked against the new version. The move is a history entry saying from
which version to which, and why.
"""

from __future__ import annotations

from datetime import datetime

from flows import Flow
from mes.domain.commands import MigrateLot
from mes.domain.common import (
    context,
    history_entry,
    moved_lot,
    require_reason,
    single_change,
    violations_text,
)
from mes.domain.errors import LimitViolated, OperationNotAllowed
from mes.domain.lifecycle import require
from mes.domain.model import Change, Lot, Operation


def migrate(lot: Lot, flow: Flow, version: int, cmd: MigrateLot, now: datetime) -> Change:
    """Move ``lot`` to ``version`` of its flow, whose rules are ``flow``."""
    require(lot.state, Operation.MIGRATE, lot.id)
    reason = require_reason(cmd.reason, "moving a lot to another flow version", lot.id)
    if version == lot.flow_version:
        raise OperationNotAllowed(
            f"lot {lot.id} is on version {version} of flow {lot.flow} already", lot_id=lot.id
        )
    where = f"lot {lot.id} cannot move to version {version} of flow {lot.flow}"
    try:
        violations = flow.check_lot_start(lot.params, context(lot))
    except ValueError as exc:  # a parameter the new version does not have
        raise OperationNotAllowed(f"{where}: {exc}", lot_id=lot.id) from None
    if violations:
        # its parameters were checked at its start against its old version only
        raise LimitViolated(
            f"{where}: its lot parameters break that version's limits: "
            f"{violations_text(violations)}",
            violations,
            lot_id=lot.id,
        )
    try:
        position = flow.position(lot.path, lot.params)
    except ValueError as exc:  # a PathError: the path so far is not one of the new version
        raise OperationNotAllowed(
            f"{where}: its path so far is not valid there: {exc}",
            lot_id=lot.id,
        ) from None
    if lot.pending_rework is not None and lot.pending_rework not in flow.steps:
        raise OperationNotAllowed(
            f"lot {lot.id} must run {lot.pending_rework} next (a rework, or a step stopped with carriers done), which version "
            f"{version} of flow {lot.flow} does not have",
            lot_id=lot.id,
        )
    after = moved_lot(lot, now, flow_version=version)
    entry = history_entry(
        lot,
        Operation.MIGRATE,
        cmd.user,
        now,
        lot.state,
        step=lot.step,
        reason=reason,
        data={
            "flow": lot.flow,
            "from_version": lot.flow_version,
            "to_version": version,
            "next_steps": sorted(position.next_steps),
        },
    )
    return single_change(lot, after, entry)
