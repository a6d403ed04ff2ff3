"""``pkgline flow publish | diff | approve`` and a lot started on the approved version, in a
subprocess against a real database that ``db upgrade`` seeded with version 1."""

from __future__ import annotations

import shutil
from pathlib import Path

from flows import DEFS
from mes.adapters.schema import SCHEMA_REVISION
from tests.cli.test_lot_cli import ok_json, pkgline

FLOW = "fc-heatsink-muf"


def test_a_published_draft_is_approved_before_lots_start_on_it(
    tmp_path: Path, sqlite_url: str
) -> None:
    db = sqlite_url
    seeded = ok_json(db, "db", "upgrade")
    assert FLOW in seeded["flows_published"] and seeded["revision"] == SCHEMA_REVISION
    defs = tmp_path / "defs"
    shutil.copytree(DEFS, defs)
    flow_file = defs / f"{FLOW}.yaml"
    flow_file.write_text(flow_file.read_text().replace("MOLD [BALL_MOUNT]", "MOLD BALL_MOUNT"))

    refused = pkgline(db, "flow", "publish", str(flow_file), "--note", " ")
    assert refused.returncode == 1 and "a change note is required" in refused.stderr
    (published,) = ok_json(db, "flow", "publish", str(flow_file), "--note", "balls always")
    assert (published["version"], published["state"], published["new"]) == (2, "draft", True)
    changes = ok_json(db, "flow", "diff", FLOW, "1", "2")["changes"]
    assert len(changes) == 1 and changes[0].startswith("sequence:")

    approved = ok_json(db, "flow", "approve", FLOW, "2")
    assert approved["state"] == "approved"
    assert approved["approvals"][0]["content_hash"] == published["content_hash"]
    started = ok_json(db, "lot", "start", "L1", "--flow", FLOW, "--carriers", "1")
    assert started["flow_version"] == 2
