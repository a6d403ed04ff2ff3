"""A material recall through ``pkgline`` in a subprocess: ``material quarantine --hold-lots``
holds the lot that got the wire spool and stops the wire bonder's next track-in (exit 1,
saying what is quarantined, by whom, why and how to clear it); ``material hold-lots`` again
holds nothing twice; ``material release`` lifts it; a bad code, an unknown material lot and
a second quarantine are refused (exit 1), nothing changed."""

from __future__ import annotations

import asyncio
import json

from tests.cli.test_material_cli import _line
from tests.cli.test_tool_cli import ok_json, pkgline


def test_a_quarantined_spool_holds_its_lot_and_stops_the_bonder_until_released(
    sqlite_url: str,
) -> None:
    asyncio.run(_line(sqlite_url))  # M1 waits for WIRE_BOND on WB-1
    db = sqlite_url
    ok_json(db, "reason", "add", "RECALL", "--kind", "hold", "--text", "Material recall",
            "--release-by", "quality")  # fmt: skip
    ok_json(db, "material", "add", "W-1", "--kind", "wire", "--expires", "2099-01-31")
    ok_json(db, "material", "load", "W-1", "--tool", "WB-1")
    ok_json(db, "lot", "track-in", "M1", "--step", "WIRE_BOND", "--tool", "WB-1")
    ok_json(db, "lot", "track-out", "M1")

    done = pkgline(
        db, "material", "quarantine", "W-1", "--code", "RECALL", "--reason", "kinks",
        "--hold-lots", user="qa1",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "wire W-1 quarantined (RECALL); loaded on WB-1: unload it" in done.stdout
    assert "held 1 lot(s) that got material lot W-1: M1" in done.stdout
    lot = ok_json(db, "lot", "show", "M1")
    assert lot["state"] == "HOLD"
    assert lot["hold"]["reason"] == "RECALL Material recall: recall of material lot W-1: kinks"

    again = pkgline(db, "material", "hold-lots", "W-1", "--code", "RECALL")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "no lot held" in again.stdout
    said = "on hold already, not touched: M1; while W-1 is quarantined, their release and rework"
    assert f"{said} need quality" in again.stdout
    recall = ok_json(db, "material", "hold-lots", "W-1", "--code", "RECALL")
    assert recall["held"] == [] and recall["release_by"] == ["quality"]
    [q] = ok_json(db, "lot", "show", "M1")["quarantined_materials"]
    assert (q["material"], q["code"], q["by"], q["release_by"]) == (
        "W-1",
        "RECALL",
        "qa1",
        ["quality"],
    )
    shown_lot = pkgline(db, "lot", "show", "M1")
    assert "got material lot W-1, quarantined (RECALL) by qa1 since" in shown_lot.stdout
    assert "its release and rework need quality" in shown_lot.stdout

    shown = pkgline(db, "material", "show", "W-1")
    assert "quarantined" in shown.stdout
    assert "quarantined by qa1 since" in shown.stdout and "kinks" in shown.stdout

    refused = [
        (("material", "quarantine", "W-1", "--code", "RECALL", "--reason", "again"),
         "quarantined already, by qa1"),
        (("material", "quarantine", "NOPE", "--code", "RECALL", "--reason", "x"),
         "there is no material lot NOPE"),
        (("material", "hold-lots", "W-1", "--code", "RECAL"),
         "there is no hold reason code RECAL (did you mean RECALL?)"),
        (("material", "release", "NOPE", "--reason", "x"), "there is no material lot NOPE"),
    ]  # fmt: skip
    for args, says in refused:
        answer = pkgline(db, *args, "--json")
        assert answer.returncode == 1, (args, answer.stdout + answer.stderr)
        assert says in json.loads(answer.stdout)["message"], (args, answer.stdout)
    missing = pkgline(db, "material", "quarantine", "W-1", "--code", "RECALL")
    assert missing.returncode == 2 and "--reason" in missing.stdout + missing.stderr

    # another lot on the bonder while the spool is quarantined and still loaded
    ok_json(db, "lot", "start", "M3", "--flow", "stiffener-bga")
    while (step := ok_json(db, "lot", "show", "M3")["next_steps"][0]) != "WIRE_BOND":
        ok_json(db, "lot", "track-in", "M3", "--step", step)
        ok_json(db, "lot", "track-out", "M3")
    bond = ("lot", "track-in", "M3", "--step", "WIRE_BOND", "--tool", "WB-1", "--json")
    stopped = pkgline(db, *bond)
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    said = json.loads(stopped.stdout)
    assert said["interlock"] == "material_quarantined"
    assert "wire W-1 is quarantined by qa1 since" in said["message"]
    assert "pkgline material release W-1" in said["expected"]

    released = ok_json(db, "material", "release", "W-1", "--reason", "supplier cleared it")
    assert released["quarantine"] is None and released["status"] == "usable"
    ok_json(db, *bond[:-1])
    history = ok_json(db, "material", "show", "W-1")["history"]
    assert [(e["event"], e["by"]) for e in history][-2:] == [
        ("quarantined", "qa1"),
        ("released", "op1"),
    ]
    # signed, as a hold's release is: in direct mode by the OS account, the meaning built
    # from the command and its reason
    [signature] = history[-1]["signatures"]
    assert signature["method"] == "os"
    assert signature["meaning"] == "approved release from quarantine: supplier cleared it"
    # the table says why each event happened and who signed the release, as lot show does
    table = pkgline(db, "material", "show", "W-1").stdout
    assert "quarantined WB-1 by qa1: RECALL Material recall: kinks" in table
    assert "released WB-1 by op1: supplier cleared it" in table
    assert f"signed by {signature['printed_name']} ({signature['signer']}, os): " in table
