"""The feed's JSON Schemas and docs/events.md say what the relay really publishes: an
integrator writes a consumer from them alone (a strict parser from the examples, an enum
from the schemas), so a value or a field they get wrong breaks that consumer."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mes.domain.equipment import RECORDED_STATES, DispatchMode, ToolRecord, ToolSnapshot
from pkgline.events import payloads

EVENTS_MD = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def _tool(e10: str) -> ToolRecord:
    at = datetime(2026, 12, 6, 19, 0, tzinfo=UTC)
    snapshot = ToolSnapshot(connected=e10 != "unmonitored", e10=e10)
    return ToolRecord(
        "DB-1", "line-1", "die_bonder", "", ("DIE_ATTACH",), DispatchMode.AUTO, snapshot, at, at
    )


def _validator(kind: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        payloads.schema(kind), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@pytest.mark.parametrize("e10", RECORDED_STATES)
def test_tool_state_e10_is_published_as_the_schema_names_it(e10: str) -> None:
    """Every E10 state a tool is recorded in (and ``unmonitored``) is one of the schema's
    values, as the relay publishes it: lower case (the schema named PRODUCTIVE and
    SCHEDULED_DOWNTIME, which the feed never sends)."""
    schema = payloads.schema("tool-state")
    assert schema["properties"]["e10"]["enum"] == list(RECORDED_STATES)
    _validator("tool-state").validate(payloads.tool_state(_tool(e10)))
    shouting = payloads.tool_state(_tool(e10)) | {"e10": e10.upper()}
    assert not _validator("tool-state").is_valid(shouting)


def test_events_md_names_the_e10_states_as_published() -> None:
    """docs/events.md's tool-state names each state as the feed gives it."""
    text = EVENTS_MD.read_text()
    section = text[text.index("### tool-state") : text.index("### line-status")]
    for state in RECORDED_STATES:
        assert f"`{state}`" in section, state
    assert "UNMONITORED" not in section


def _examples() -> dict[str, dict[str, Any]]:
    """The JSON example under each ``### KIND`` heading of docs/events.md."""
    text = EVENTS_MD.read_text()
    found = {}
    for match in re.finditer(r"^### ([a-z-]+)\n\n```json\n(.*?)\n```", text, re.M | re.S):
        found[match.group(1)] = json.loads(match.group(2))
    return found


def test_events_md_examples_have_every_field_of_their_schema() -> None:
    """Each payload example of docs/events.md is valid against its schema (the schemas
    allow no other fields and require every one), the shortened hashes apart: the
    durable-event example lacked ``mounted_on`` and the material-event one ``loaded_on``,
    which the relay always sends."""
    examples = _examples()
    assert set(examples) == {"lot-event", "durable-event", "material-event"}
    for kind, example in examples.items():
        problems = [
            f"{kind}: {error.message}"
            for error in _validator(kind).iter_errors(example)
            if not (error.validator == "pattern" and error.path[-1] in ("hash", "prev_hash"))
        ]
        assert problems == []
