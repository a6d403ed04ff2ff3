"""``pkgline flow publish | diff | approve`` and a lot started on the approved version, in a
subprocess against a real database that ``db upgrade`` seeded with version 1."""

from __future__ import annotations

import getpass
import shutil
from pathlib import Path

import pytest

from flows import DEFS
from mes.adapters.schema import SCHEMA_REVISION
from tests.cli.test_lot_cli import ok_json, pkgline

FLOW = "fc-heatsink-muf"
ME = getpass.getuser()


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
    missing = pkgline(db, "flow", "publish", str(defs / "nope.yaml"), "--note", "x")
    assert missing.returncode == 2 and "nope.yaml: no such flow file" in missing.stderr
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(flow_file, alone)  # without steps.yaml and fragments.yaml beside it
    lonely = pkgline(db, "flow", "publish", str(alone / flow_file.name), "--note", "x")
    assert lonely.returncode == 2, lonely.stderr
    assert "published with the steps.yaml and fragments.yaml beside it" in lonely.stderr
    (published,) = ok_json(db, "flow", "publish", str(flow_file), "--note", "balls always")
    assert (published["version"], published["state"], published["new"]) == (2, "draft", True)
    changes = ok_json(db, "flow", "diff", FLOW, "1", "2")["changes"]
    assert len(changes) == 1 and changes[0].startswith("sequence:")

    approved = ok_json(db, "flow", "approve", FLOW, "2")
    assert approved["state"] == "approved"
    assert approved["approvals"][0]["content_hash"] == published["content_hash"]
    started = ok_json(db, "lot", "start", "L1", "--flow", FLOW, "--carriers", "1")
    assert started["flow_version"] == 2


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def upgraded(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    """A database ``db upgrade`` seeded, and a flow file that requires BALL_MOUNT."""
    db: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    ok_json(db, "db", "upgrade")
    defs = tmp_path / "defs"
    shutil.copytree(DEFS, defs)
    flow_file = defs / f"{FLOW}.yaml"
    flow_file.write_text(flow_file.read_text().replace("MOLD [BALL_MOUNT]", "MOLD BALL_MOUNT"))
    return db, flow_file


def test_two_person_approval_in_direct_mode_leaves_a_draft_approved_by_1_of_2(
    upgraded: tuple[str, Path], tmp_path: Path
) -> None:
    db, flow_file = upgraded
    config = tmp_path / "line.toml"
    config.write_text('name = "line-1"\n\n[signatures]\ntwo_signers = ["approve_flow"]\n')
    ok_json(db, "flow", "publish", str(flow_file), "--note", "balls always")
    first = pkgline(db, "flow", "approve", FLOW, "2", "--config", str(config), "--meaning", "ok")
    assert first.returncode == 0, first.stderr
    said = " ".join(first.stdout.split())
    assert "still a draft, approved by 1 of 2" in said
    assert "quality role" in said and "as their own OS account" in said
    again = pkgline(db, "flow", "approve", FLOW, "2", "--config", str(config))
    assert again.returncode == 1 and "the second approval must be a different" in again.stderr
    (_, v2) = ok_json(db, "flow", "versions", FLOW)
    assert v2["state"] == "draft"
    [approval] = v2["approvals"]
    assert (approval["signer"], approval["method"], approval["meaning"]) == (ME, "os", "ok")
    assert approval["content_hash"] == v2["content_hash"]
    table = pkgline(db, "flow", "versions", FLOW)
    assert "[os]" in table.stdout and approval["printed_name"].split()[0] in table.stdout
    shown = pkgline(db, "flow", "show", FLOW, "--version", "2")
    assert f"approved by {approval['printed_name']} ({ME})" in shown.stdout


def test_approve_and_migrate_are_signed_by_the_os_account(upgraded: tuple[str, Path]) -> None:
    db, flow_file = upgraded
    ok_json(db, "lot", "start", "L1", "--flow", FLOW, "--carriers", "1")
    ok_json(db, "flow", "publish", str(flow_file), "--note", "balls always")
    approved = ok_json(db, "flow", "approve", FLOW, "2")
    assert approved["state"] == "approved" and approved["approvals_needed"] == 1
    [approval] = approved["approvals"]
    assert (approval["signer"], approval["method"]) == (ME, "os")
    assert approval["meaning"].startswith("approved for production")
    moved = pkgline(db, "lot", "migrate", "L1", "--version", "2", "--reason", "new rules")
    assert moved.returncode == 0, moved.stderr
    [signature] = ok_json(db, "lot", "show", "L1")["signatures"]
    assert (signature["signer"], signature["method"], signature["operation"]) == (
        ME,
        "os",
        "migrate",
    )
    assert signature["meaning"] == "approved move to another flow version: to version 2, new rules"


def test_a_version_that_loosens_a_claimed_limit_is_refused_and_nothing_is_written(
    upgraded: tuple[str, Path],
) -> None:
    """Claim 001: 1 fixes a heat sink larger than the die; a version that lets it be as large
    or smaller, or adds a carrier type claim 9 does not name, is not published."""
    db, flow_file = upgraded
    text = flow_file.read_text()
    assert "heat_sink_area_mm2: {greater_than: die_area_mm2" in text
    flow_file.write_text(
        text.replace(
            "one_of: [substrate, leadframe]", "one_of: [substrate, leadframe, wafer]"
        ).replace(
            "heat_sink_area_mm2: {greater_than: die_area_mm2, ",
            "heat_sink_area_mm2: {greater_than: 0, ",
        )
    )
    refused = pkgline(db, "flow", "publish", str(flow_file), "--note", "looser")
    assert refused.returncode == 1, refused.stderr
    said = refused.stderr
    assert "never drop or loosen them" in said
    assert "carrier_type: claim 001: 9 fixes one of substrate, leadframe;" in said
    assert "this version allows one of substrate, leadframe, wafer" in said
    assert "heat_sink_area_mm2: claim 001: 1 fixes greater than die_area_mm2;" in said
    assert [v["version"] for v in ok_json(db, "flow", "versions", FLOW)] == [1]
    flow_file.write_text(text.replace("one_of: [substrate, leadframe]", "one_of: [substrate]"))
    (tighter,) = ok_json(db, "flow", "publish", str(flow_file), "--note", "substrate only")
    assert (tighter["version"], tighter["new"]) == (2, True)


def test_an_older_draft_approved_after_a_newer_version_says_new_lots_start_on_the_newer(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Found by the probe: approving version 4 while version 5 was approved said "new lots
    start on it", and lots started on version 5 (the newest approved one, as documented)."""
    db = sqlite_url
    ok_json(db, "db", "upgrade")
    defs = tmp_path / "defs"
    shutil.copytree(DEFS, defs)
    flow_file = defs / f"{FLOW}.yaml"
    text = flow_file.read_text()
    flow_file.write_text(text.replace("MOLD [BALL_MOUNT]", "MOLD BALL_MOUNT"))
    ok_json(db, "flow", "publish", str(flow_file), "--note", "balls always")
    flow_file.write_text(text + "\n# version 3: the same as 1, re-published\n")
    ok_json(db, "flow", "publish", str(flow_file), "--note", "back to optional balls")
    newer = ok_json(db, "flow", "approve", FLOW, "3")
    assert newer["active_version"] == 3
    older = pkgline(db, "flow", "approve", FLOW, "2")
    assert older.returncode == 0, older.stderr
    assert "new lots start on it" not in older.stdout
    assert "version 3, newer, stays the one new lots start on" in older.stdout
    assert ok_json(db, "lot", "start", "L1", "--flow", FLOW, "--carriers", "1")["flow_version"] == 3
    unsaid = pkgline(db, "flow", "retire", FLOW, "3")
    assert unsaid.returncode == 2 and "--reason must say why the version is retired" in (
        unsaid.stderr
    )
    assert ok_json(db, "lot", "start", "L0", "--flow", FLOW, "--carriers", "1")["flow_version"] == 3
    ok_json(db, "flow", "retire", FLOW, "3", "--reason", "balls optional again")
    assert ok_json(db, "lot", "start", "L2", "--flow", FLOW, "--carriers", "1")["flow_version"] == 2
    # `flow versions` says which one that is (a process engineer's walkthrough: versions 1 and
    # 2 both read "approved", and nothing said new lots start on 2)
    listed = ok_json(db, "flow", "versions", FLOW)
    assert [(v["version"], v["state"], v["active"]) for v in listed] == [
        (1, "approved", False),
        (2, "approved", True),
        (3, "retired", False),
    ]
    text = pkgline(db, "flow", "versions", FLOW)
    assert text.returncode == 0, text.stderr
    assert "approved (active)" in text.stdout
    assert f"new lots of {FLOW} start on version 2 (active: the newest approved)" in " ".join(
        text.stdout.split()
    )


def test_the_files_of_an_approved_version_that_is_not_the_newest_say_so_when_published(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Found by the probe: publishing the packaged files again, to go back to them after
    version 2, said only "unchanged, version 1 (approved) holds it", and lots went on
    starting on version 2."""
    db = sqlite_url
    ok_json(db, "db", "upgrade")
    defs = tmp_path / "defs"
    shutil.copytree(DEFS, defs)
    flow_file = defs / f"{FLOW}.yaml"
    text = flow_file.read_text()
    flow_file.write_text(text.replace("MOLD [BALL_MOUNT]", "MOLD BALL_MOUNT"))
    ok_json(db, "flow", "publish", str(flow_file), "--note", "balls always")
    ok_json(db, "flow", "approve", FLOW, "2")
    flow_file.write_text(text)
    (again,) = ok_json(db, "flow", "publish", str(flow_file), "--note", "back")
    assert (again["version"], again["new"], again["active_version"]) == (1, False, 2)
    said = pkgline(db, "flow", "publish", str(flow_file), "--note", "back")
    assert said.returncode == 0, said.stderr
    assert (
        f"flow {FLOW}: unchanged, version 1 (approved) holds it, but new lots start on version "
        f"2, newer; to start them on these files again, retire version 2 (pkgline flow retire "
        f"{FLOW} 2 --reason ...)"
    ) in " ".join(said.stdout.split())


def test_every_packaged_flow_measures_only_what_its_tools_report() -> None:
    from flows import load_library
    from pkgline.bootstrap import measured_not_reported

    for flow in load_library().flows.values():
        assert measured_not_reported(flow) == [], flow.name


def test_a_version_measuring_a_value_no_tool_reports_is_refused_and_nothing_is_written(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Found by the probe: a version whose flow file put tighter spec limits on
    ``bond_line_um`` (the engineer's name for the die bonder's bond_line_thickness_um) was
    published and could be approved: its spec limits never saw a tool's value, and the tool's
    value kept the old ones. The alias the flow files offer (tool_value) is accepted."""
    db = sqlite_url
    ok_json(db, "db", "upgrade")
    defs = tmp_path / "defs"
    shutil.copytree(DEFS, defs)
    flow_file = defs / "fo-organic.yaml"
    text = flow_file.read_text()
    attach = '      die_orientation: {default: face_up, one_of: [face_up], claim: "002: 61"}\n'
    assert attach in text
    spec = '{spec: {lower: 12.0, upper: 30.0, target: 20.0, origin: "line practice: tighter"}'
    flow_file.write_text(
        text.replace(attach, f"{attach}    measured:\n      bond_line_um: {spec}}}\n")
    )
    refused = pkgline(db, "flow", "publish", str(flow_file), "--note", "tighter")
    assert refused.returncode == 1, refused.stderr
    assert "the tools do not report these measured values" in refused.stderr
    assert (
        "DIE_ATTACH measured: bond_line_um is not reported by a die_bonder; it reports "
        "bond_force_n, bond_line_thickness_um, xy_offset_um"
    ) in refused.stderr
    assert [v["version"] for v in ok_json(db, "flow", "versions", "fo-organic")] == [1]
    aliased = f"{spec}, tool_value: bond_line_thickness_um"
    flow_file.write_text(
        text.replace(attach, f"{attach}    measured:\n      bond_line_um: {aliased}}}\n")
    )
    (published,) = ok_json(db, "flow", "publish", str(flow_file), "--note", "tighter, aliased")
    assert published["version"] == 2


def test_every_packaged_flow_gives_its_tools_only_recipe_values_they_take() -> None:
    from flows import load_library
    from pkgline.bootstrap import recipe_not_taken

    for flow in load_library().flows.values():
        assert recipe_not_taken(flow) == [], flow.name


def test_a_version_with_a_recipe_value_no_tool_takes_is_refused_and_nothing_is_written(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Found by the engineer's walk-through: a version whose flow file set
    ``bond_temprature_c: {default: 140}`` (a typo of the die bonder's bond_temperature_c)
    was published and could be approved: every lot would record 140 while the controller,
    which sends a tool only the values its class takes, left it out and the tool bonded at
    the default. A value aliased to the tool's name with tool_value is accepted."""
    db = sqlite_url
    ok_json(db, "db", "upgrade")
    defs = tmp_path / "defs"
    shutil.copytree(DEFS, defs)
    flow_file = defs / "fo-organic.yaml"
    text = flow_file.read_text()
    attach = '      die_orientation: {default: face_up, one_of: [face_up], claim: "002: 61"}\n'
    assert attach in text
    flow_file.write_text(
        text.replace(attach, f"{attach}      bond_temprature_c: {{default: 140}}\n")
    )
    refused = pkgline(db, "flow", "publish", str(flow_file), "--note", "hotter")
    assert refused.returncode == 1, refused.stderr
    said = " ".join(refused.stderr.split())
    assert "the tools do not take these recipe values" in said
    assert (
        "DIE_ATTACH recipe: bond_temprature_c is not taken by a die_bonder; it takes "
        "bond_force_n, bond_temperature_c, bond_time_ms, die_orientation, dispense_volume_nl"
    ) in said
    assert [v["version"] for v in ok_json(db, "flow", "versions", "fo-organic")] == [1]
    aliased = "{default: 140, tool_value: bond_temperature_c}"
    flow_file.write_text(text.replace(attach, f"{attach}      bond_temprature_c: {aliased}\n"))
    (published,) = ok_json(db, "flow", "publish", str(flow_file), "--note", "hotter, aliased")
    assert published["version"] == 2


def test_a_version_with_a_misspelt_field_names_the_fields_expected_and_nothing_is_written(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Found by the engineer's walk-through: spec limits written ``{low: 12, upper: 38, ...}``
    were refused with pydantic's "Extra inputs are not permitted", which says neither what
    was expected nor which field was meant."""
    db = sqlite_url
    ok_json(db, "db", "upgrade")
    defs = tmp_path / "defs"
    shutil.copytree(DEFS, defs)
    flow_file = defs / "fo-organic.yaml"
    text = flow_file.read_text()
    attach = '      die_orientation: {default: face_up, one_of: [face_up], claim: "002: 61"}\n'
    spec = '{spec: {low: 12.0, upper: 38.0, target: 25.0, origin: "line practice: tighter"}}'
    flow_file.write_text(
        text.replace(attach, f"{attach}    measured:\n      bond_line_thickness_um: {spec}\n")
    )
    refused = pkgline(db, "flow", "publish", str(flow_file), "--note", "tighter")
    assert refused.returncode == 1, refused.stderr
    assert (
        "steps.DIE_ATTACH.measured.bond_line_thickness_um.spec.low: unknown field 'low' (did "
        "you mean lower?); expected one of lower, upper, target, origin"
    ) in " ".join(refused.stderr.split())
    flow_file.write_text(text)
    steps = defs / "steps.yaml"
    steps.write_text(
        steps.read_text().replace("equipment_class: manual", "equipment_clas: manual", 1)
    )
    misspelt = pkgline(db, "flow", "publish", str(flow_file), "--note", "typo")
    assert misspelt.returncode == 1, misspelt.stderr
    said = " ".join(misspelt.stderr.split())
    assert (  # the misspelling first, at its own line: the field missing follows
        "steps.yaml:16: SUBSTRATE_LOAD.equipment_clas: unknown field 'equipment_clas' (did you "
        "mean equipment_class?)"
    ) in said, said
    assert [v["version"] for v in ok_json(db, "flow", "versions", "fo-organic")] == [1]


def test_a_retired_versions_files_published_again_say_how_to_bring_them_back(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The files of a retired version are that version (its content): publishing them again
    changed nothing and said only 'unchanged' (found by the probe); it says how to bring them
    back, and a comment line saying why makes them a new version."""
    db = sqlite_url
    ok_json(db, "db", "upgrade")
    defs = tmp_path / "defs"
    shutil.copytree(DEFS, defs)
    flow_file = defs / f"{FLOW}.yaml"
    flow_file.write_text(flow_file.read_text().replace("MOLD [BALL_MOUNT]", "MOLD BALL_MOUNT"))
    ok_json(db, "flow", "publish", str(flow_file), "--note", "balls always")
    ok_json(db, "flow", "approve", FLOW, "2")
    ok_json(db, "flow", "retire", FLOW, "2", "--reason", "balls optional again")
    again = pkgline(db, "flow", "publish", str(flow_file), "--note", "balls again")
    assert again.returncode == 0, again.stderr
    said = " ".join(again.stdout.split())
    assert "unchanged, version 2 (retired) holds it, and a retired version starts no lot" in said
    assert "say why in a comment line of the flow file and publish it: a new version" in said
    flow_file.write_text(flow_file.read_text() + "# back: the balls-optional run is over\n")
    (back,) = ok_json(db, "flow", "publish", str(flow_file), "--note", "balls again")
    assert (back["version"], back["state"], back["new"]) == (3, "draft", True)
