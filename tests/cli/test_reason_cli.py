"""Reason codes through ``pkgline`` in a subprocess: quality's ``reason add|list|retire``,
``lot hold --code`` beside ``--reason`` (which alone keeps working), a bad code refused
(exit 1, what was expected), and ``lot scrap --code`` for a whole lot."""

from __future__ import annotations

import json

from tests.cli.test_tool_cli import ok_json, pkgline


def test_holds_and_scraps_name_codes_of_the_catalogue(sqlite_url: str) -> None:
    db = sqlite_url
    assert pkgline(db, "db", "upgrade").returncode == 0
    added = ok_json(
        db, "reason", "add", "VOID", "--kind", "hold", "--text", "voids at X-ray",
        "--release-by", "engineer",
    )  # fmt: skip
    assert (added["kind"], added["release_by"], added["active"]) == ("hold", ["engineer"], True)
    ok_json(db, "reason", "add", "DROP", "--kind", "scrap", "--text", "dropped carrier")
    ok_json(db, "lot", "start", "R1", "--flow", "fo-organic", "--carriers", "1")
    held = ok_json(db, "lot", "hold", "R1", "--code", "VOID", "--reason", "carrier 1")
    assert held["recorded"][0]["reason"] == "VOID voids at X-ray: carrier 1"
    assert held["recorded"][0]["data"]["code"] == "VOID"
    wrong = pkgline(db, "lot", "scrap", "R1", "--code", "VOID", "--json")
    assert wrong.returncode == 1
    assert "VOID is a hold code; expected a scrap code" in json.loads(wrong.stdout)["message"]
    scrapped = ok_json(db, "lot", "scrap", "R1", "--code", "DROP")
    assert scrapped["state"] == "SCRAPPED"

    ok_json(db, "lot", "start", "R2", "--flow", "fo-organic", "--carriers", "1")
    unknown = pkgline(db, "lot", "hold", "R2", "--code", "NOPE", "--reason", "x")
    assert unknown.returncode == 1
    assert "there is no hold reason code NOPE; expected one of the catalogue" in unknown.stderr
    misspelt = pkgline(db, "lot", "hold", "R2", "--code", "VIOD")
    assert misspelt.returncode == 1
    assert "there is no hold reason code VIOD (did you mean VOID?)" in misspelt.stderr
    assert ok_json(db, "lot", "hold", "R2", "--reason", "free text only")["state"] == "HOLD"
    ok_json(db, "reason", "retire", "DROP", "--reason", "split into DROP-A and DROP-B")
    listed = pkgline(db, "reason", "list")
    assert listed.returncode == 0 and "VOID" in listed.stdout and "DROP" not in listed.stdout
