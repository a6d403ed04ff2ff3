"""SPC through ``pkgline`` in a subprocess: engineering sets a chart (``spc chart``), an
operator's track-out beyond 3 sigma holds the lot (source spc) and inhibits the tool, the
next track-in there is refused until ``spc clear``; each chart set and each clear is one event
in the security log, with the chart or qualification before and after; ``spc show --json``
gives the points, limits, violations and Cpk/Ppk."""

from __future__ import annotations

import asyncio
import getpass
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from flows.loader import DEFS
from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.equipment import DispatchMode, ToolRegistration, ToolSnapshot
from mes.equipment import EquipmentService
from mes.service import LotService
from pkgline.bootstrap import flow_library
from tests.cli.test_tool_cli import ok_json, pkgline
from tests.mes.spc_lots import by_jobs

UP = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")
BLT = "bond_line_thickness_um"


async def _line(url: str) -> None:
    """DB-1 up and in manual; S1 and S2 waiting for DIE_ATTACH."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
        factory = SqlUnitOfWorkFactory(engine)
        equipment = EquipmentService(factory)
        tool = ToolRegistration("DB-1", "die_bonder", "modbus://127.0.0.1:1502", ("DIE_ATTACH",))
        await equipment.register("cli-line", [tool])
        await equipment.report("DB-1", UP)
        await equipment.set_dispatch("DB-1", DispatchMode.MANUAL, "tech", "by hand")
        lots = LotService(factory, flow_library())
        for lot in ("S1", "S2"):
            await lots.start(cmd.StartLot(lot, "fo-organic", "op1", carriers=1))
            await lots.track_in(cmd.TrackIn(lot, "SUBSTRATE_PREP", "op1"))
            await lots.track_out(cmd.TrackOut(lot, "op1"))
    finally:
        await engine.dispose()


def test_a_point_beyond_3_sigma_holds_the_lot_and_the_tool_waits_for_spc_clear(
    sqlite_url: str,
) -> None:
    asyncio.run(_line(sqlite_url))
    db = sqlite_url
    chart = ok_json(
        db, "spc", "chart", "DIE_ATTACH", BLT, "--tool", "DB-1", "--center", "25", "--sigma",
        "1", "--inhibit",
    )  # fmt: skip
    assert (chart["ucl"], chart["lcl"], chart["rules"]) == (28.0, 22.0, [1, 2, 3, 4])
    empty = pkgline(db, "spc", "show", "DIE_ATTACH", BLT, "--tool", "DB-1").stdout
    assert "no points yet: one is recorded at each track-out of DIE_ATTACH on DB-1" in " ".join(
        empty.split()
    )
    none = pkgline(db, "spc", "show", "DIE_ATTACH", "xy_offset_um").stdout
    assert "no chart of xy_offset_um at DIE_ATTACH; an engineer sets one: pkgline spc chart" in (
        " ".join(none.split())
    )
    ok_json(db, "lot", "track-in", "S1", "--step", "DIE_ATTACH", "--tool", "DB-1")
    out = ok_json(db, "lot", "track-out", "S1", "--data", f"{BLT}=28.7")
    assert out["state"] == "HOLD"
    assert out["recorded"][0]["data"]["spc"][0]["rule"] == 1
    refused = pkgline(db, "lot", "track-in", "S2", "--step", "DIE_ATTACH", "--tool", "DB-1")
    assert refused.returncode == 1 and "disqualified for DIE_ATTACH by SPC" in refused.stderr
    other = pkgline(db, "spc", "clear", "SUBSTRATE_PREP", "--tool", "DB-1", "--reason", "x")
    assert other.returncode == 1, other.stdout  # a step SPC did not inhibit DB-1 at
    assert "DB-1 is not inhibited by SPC at SUBSTRATE_PREP: nothing to clear" in other.stderr
    nope = pkgline(db, "spc", "clear", "NOPE", "--tool", "DB-1", "--reason", "x")
    assert nope.returncode == 1 and "NOPE is not a step code" in nope.stderr, nope.stderr
    no_reason = pkgline(db, "spc", "clear", "DIE_ATTACH", "--tool", "DB-1")
    assert no_reason.returncode == 2
    ok_json(db, "spc", "clear", "DIE_ATTACH", "--tool", "DB-1", "--reason", "head levelled")
    ok_json(db, "lot", "track-in", "S2", "--step", "DIE_ATTACH", "--tool", "DB-1")
    # engineering's own disqualification is theirs to lift, not spc clear's
    ok_json(db, "tool", "disqualify", "DB-1", "--step", "DIE_ATTACH", "--reason", "drift")
    theirs = pkgline(db, "spc", "clear", "DIE_ATTACH", "--tool", "DB-1", "--reason", "x")
    assert theirs.returncode == 1
    assert "not by SPC: engineering qualifies it again with pkgline tool qualify" in " ".join(
        theirs.stderr.split()
    )
    [shown] = json.loads(
        pkgline(db, "spc", "show", "DIE_ATTACH", BLT, "--tool", "DB-1", "--json").stdout
    )
    assert [p["x"] for p in shown["points"]] == [28.7]
    assert shown["violations"] == [{"rule": 1, "text": "one point beyond 3 sigma", "points": [0]}]
    assert (shown["spec_lower"], shown["spec_upper"]) == (10.0, 40.0)
    table = " ".join(pkgline(db, "spc", "show", "DIE_ATTACH", BLT, "--tool", "DB-1").stdout.split())
    assert "LSL 10 USL 40" in table
    assert "1 │ S1" in table  # points are numbered from 1, as the rule's line names them
    assert "rule 1 (one point beyond 3 sigma) at points 1" in table
    unknown = pkgline(db, "spc", "show", "DIE_ATTACH", BLT, "--tool", "NOPE")
    assert unknown.returncode == 1 and "there is no tool NOPE" in unknown.stderr
    tiny = pkgline(db, "spc", "chart", "DIE_ATTACH", BLT, "--tool", "DB-1", "--center", "25",
                   "--sigma", "1e-320")  # fmt: skip
    assert tiny.returncode == 1 and "too small to tell the control limits" in tiny.stderr


def test_a_center_outside_the_spec_limits_is_refused_naming_them_and_the_unit(
    sqlite_url: str,
) -> None:
    """Found by the engineer's walk-through: a chart of bond_line_thickness_um set with its
    limits in mm (--center 0.025 --sigma 0.0012 for 25 um) was accepted beside spec limits of
    10 to 40 um; every point would have broken rule 1. It is refused, saying the spec limits,
    whose they are and the unit, and nothing is written (no chart, no security event)."""
    asyncio.run(_line(sqlite_url))
    db = sqlite_url
    mm = pkgline(db, "spc", "chart", "DIE_ATTACH", BLT, "--tool", "DB-1", "--center", "0.025",
                 "--sigma", "0.0012")  # fmt: skip
    assert mm.returncode == 1, mm.stderr
    said = " ".join(mm.stderr.split())
    assert (
        "center 0.025 is outside the spec limits of bond_line_thickness_um at DIE_ATTACH, 10 "
        "to 40 um (fc-stack-muf, fc-stack3-muf, fo-metal, "
    ) in said
    assert "expected a center within them, in the value's unit (um)" in said
    above = pkgline(db, "spc", "chart", "DIE_ATTACH", "xy_offset_um", "--tool", "DB-1",
                    "--center", "20", "--sigma", "1")  # fmt: skip
    assert above.returncode == 1
    assert "outside the spec limits of xy_offset_um at DIE_ATTACH, at most 15 um" in " ".join(
        above.stderr.split()
    )
    assert ok_json(db, "spc", "list") == []
    assert [e["action"] for e in ok_json(db, "user", "events", "--kind", "engineering_change")] == [
        "tool_dispatch"
    ]
    ok_json(db, "spc", "chart", "DIE_ATTACH", BLT, "--tool", "DB-1", "--center", "25",
            "--sigma", "1.2")  # fmt: skip


def test_each_chart_set_and_clear_is_one_event_in_the_security_log_that_verifies(
    sqlite_url: str,
) -> None:
    asyncio.run(_line(sqlite_url))
    db = sqlite_url

    def changes() -> list[dict[str, Any]]:
        """SPC's changes, newest first (the line's set-up switched DB-1 to manual)."""
        found = ok_json(db, "user", "events", "--kind", "engineering_change")
        return [e for e in found if e["action"] != "tool_dispatch"]

    [manual] = ok_json(db, "user", "events", "--kind", "engineering_change")
    assert (manual["action"], manual["actor"], manual["detail"]["tool"]) == (
        "tool_dispatch",
        "tech",
        "DB-1",
    )
    ok_json(db, "spc", "chart", "DIE_ATTACH", BLT, "--tool", "DB-1", "--baseline", "20")
    [made] = changes()
    assert (made["action"], made["actor"]) == ("spc_set", getpass.getuser())
    assert (made["detail"]["step"], made["detail"]["value"], made["detail"]["tool"]) == (
        "DIE_ATTACH",
        BLT,
        "DB-1",
    )
    assert made["detail"]["before"] is None
    assert (made["detail"]["after"]["baseline_n"], made["detail"]["after"]["center"]) == (20, None)
    ok_json(db, "spc", "chart", "DIE_ATTACH", BLT, "--tool", "DB-1", "--center", "25", "--sigma",
            "1", "--inhibit")  # fmt: skip
    reset, _ = changes()
    assert reset["detail"]["before"] == made["detail"]["after"]
    after = reset["detail"]["after"]
    assert (after["center"], after["sigma"], after["inhibit"], after["set_by"]) == (
        25,
        1,
        True,
        "op1",
    )
    refused = pkgline(db, "spc", "chart", "DIE_ATTACH", "xy_nope", "--tool", "DB-1")
    assert refused.returncode != 0
    ok_json(db, "lot", "track-in", "S1", "--step", "DIE_ATTACH", "--tool", "DB-1")
    ok_json(db, "lot", "track-out", "S1", "--data", f"{BLT}=28.7")  # SPC inhibits DB-1
    assert pkgline(
        db, "spc", "clear", "SUBSTRATE_PREP", "--tool", "DB-1", "--reason", "x"
    ).returncode
    assert len(changes()) == 2  # neither SPC's own inhibit nor a refused clear is a change

    ok_json(db, "spc", "clear", "DIE_ATTACH", "--tool", "DB-1", "--reason", "head levelled")
    cleared, *_ = changes()
    assert (cleared["action"], cleared["detail"]["reason"]) == ("spc_clear", "head levelled")
    assert (cleared["detail"]["before"]["qualified"], cleared["detail"]["before"]["by"]) == (
        False,
        "SPC",
    )
    assert cleared["detail"]["after"]["reason"] == "SPC cleared: head levelled"
    table = " ".join(pkgline(db, "user", "events", "--kind", "engineering_change").stdout.split())
    assert "engineering_change spc_clear" in table and "engineering_change spc_set" in table
    verified = pkgline(db, "audit", "verify", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    every = ok_json(db, "user", "events", "--limit", "500")
    assert json.loads(verified.stdout)["security_events"] == len(every) >= 4


def test_spc_show_compares_with_the_spec_limits_new_lots_are_checked_against(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Spec limits come from the version each flow's new lots start on, not the files the
    process was installed with (a tighter approved version was ignored: found by the probe);
    where the flows that run the step differ, there is no single spec: none, saying so."""
    db = sqlite_url
    ok_json(db, "db", "upgrade")
    asyncio.run(_line(db))
    ok_json(db, "spc", "chart", "DIE_ATTACH", BLT, "--tool", "DB-1", "--center", "25",
            "--sigma", "1")  # fmt: skip
    show = ("spc", "show", "DIE_ATTACH", BLT, "--tool", "DB-1", "--json")
    [before] = json.loads(pkgline(db, *show).stdout)
    assert (before["spec_lower"], before["spec_upper"]) == (10.0, 40.0)
    assert "stiffener-bga v1" in before["spec_from"]
    defs = tmp_path / "defs"
    shutil.copytree(DEFS, defs)
    steps = defs / "steps.yaml"
    text = steps.read_text()
    tighter = text.replace(
        "bond_line_thickness_um: {spec: {lower: 10.0, upper: 40.0,",
        "bond_line_thickness_um: {spec: {lower: 20.0, upper: 30.0,",
    )
    assert tighter != text
    steps.write_text(tighter)
    ok_json(db, "flow", "publish", str(defs / "stiffener-bga.yaml"), "--note", "BLT 20-30")
    ok_json(db, "flow", "approve", "stiffener-bga", "2")
    [after] = json.loads(pkgline(db, *show).stdout)
    assert (after["spec_lower"], after["spec_upper"], after["cpk"]) == (None, None, None)
    assert after["spec_from"].startswith("none: the flows' spec limits differ (")
    assert "stiffener-bga v2: 20 to 30" in after["spec_from"]
    table = " ".join(pkgline(db, *show[:-1]).stdout.split())
    assert "spec limits: none: the flows' spec limits differ" in table
    # a lot passing the step twice (a flow that runs it twice, a rework) adds two points
    assert "individuals chart, one point per lot at each pass through the step" in table


async def _jobs(url: str, lots: dict[str, list[float]]) -> None:
    """Each lot of ``lots`` through DIE_ATTACH on DB-1 as the line controller runs it: a job
    per carrier, each measuring its BLT."""
    engine = create_engine(url)
    try:
        factory = SqlUnitOfWorkFactory(engine)
        service = LotService(factory, flow_library())
        for lot_id, blts in lots.items():
            await by_jobs(service, lot_id, blts, "DB-1")
    finally:
        await engine.dispose()


def test_a_subgroup_chart_set_and_shown_with_each_lots_n_spread_and_limits(
    sqlite_url: str,
) -> None:
    db = sqlite_url
    asyncio.run(_line(db))
    chart = ok_json(db, "spc", "chart", "DIE_ATTACH", BLT, "--tool", "DB-1", "--center", "25",
                    "--sigma", "1", "--kind", "subgroup")  # fmt: skip
    assert (chart["kind"], chart["rules"]) == ("subgroup", [1, 2, 3, 4, 9])
    said = pkgline(db, "spc", "chart", "DIE_ATTACH", BLT, "--tool", "DB-1", "--center", "25",
                   "--sigma", "1", "--kind", "subgroup").stdout  # fmt: skip
    assert (
        f"chart DIE_ATTACH {BLT} on DB-1 (X-bar / S chart of each lot's carriers, a point at "
        "each pass through the step): center 25"
    ) in " ".join(said.split())
    asyncio.run(_jobs(db, {"G1": [25.4, 24.6, 25.2, 24.8], "G2": [22.0, 28.0, 22.0, 28.0]}))
    [shown] = json.loads(
        pkgline(db, "spc", "show", "DIE_ATTACH", BLT, "--tool", "DB-1", "--json").stdout
    )
    g1, g2 = shown["points"]
    assert (g1["lot"], g1["n"], g1["carrier"]) == ("G1", 4, None)
    assert (g1["lcl"], g1["ucl"]) == (23.5, 26.5)  # 25 +- 3 / sqrt(4)
    assert (g2["x"], g2["rules"]) == (25.0, [9])
    assert g2["s"] == pytest.approx(3.4641, abs=1e-4)
    assert shown["violations"] == [
        {"rule": 9, "text": "a lot's spread beyond the S chart's limits", "points": [1]}
    ]
    table = " ".join(pkgline(db, "spc", "show", "DIE_ATTACH", BLT, "--tool", "DB-1").stdout.split())
    assert "limits center +- 3 sigma / sqrt(n) for a lot of n carriers" in table
    assert "mean ┃ n ┃ s ┃ LCL ┃ UCL" in table
    assert "G2 │" in table and "│ 25 │ 4 │ 3.464 │ 23.5 │ 26.5 │ 9" in table
    listed = " ".join(pkgline(db, "spc", "list").stdout.split())
    assert "DB-1 │ subgroup │ 25 │ 1 │ - │ - │" in listed
    wrong = pkgline(db, "spc", "chart", "DIE_ATTACH", BLT, "--tool", "DB-1", "--kind", "xbar")
    assert wrong.returncode == 2
    assert "'xbar' is not one of 'lot', 'carrier', 'subgroup'" in " ".join(wrong.stderr.split())
