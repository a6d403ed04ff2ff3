"""``pkgline demo`` end to end in a subprocess: the simulated line and the line controller run
as its children, the nine lots (one per flow) complete, a summary per lot and the commands to
look further are printed, and no child is left running, whether the demo ends, is
interrupted with Ctrl-C or is killed. It never replaces a database that is not a demo's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from mes.domain import commands as cmd
from mes.domain.model import SiteReject
from mes.domain.operations import start_lot
from mes.maps import e142
from mes.maps.service import MapExport, export_lot_maps
from mes.service import utc_now
from pkgline.bootstrap import flow_library, open_lot_service, os_account
from pkgline.cli.demo import (
    DEFAULT_TIME_SCALE,
    LOT_PREFIX,
    LOTS,
    TIME_LIMIT_S,
    planned_steps,
    time_limit_for,
)
from pkgline.cli.demo_api import REASON_CODES, SPC_CHART

STARTED = re.compile(r"pkgline sim, pid (\d+)\), line controller \(pkgline serve, pid (\d+)\)")
API_STARTED = re.compile(r"\(pkgline api, pid (\d+)\)")


def api_of(output: str) -> int:
    match = API_STARTED.search(output)
    assert match, output
    return int(match[1])


# The demo feeds the broker on 127.0.0.1:1883: under xdist, with the other tests that use that
# broker, on one worker.
pytestmark = pytest.mark.xdist_group("plant-broker")


def demo(db: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "COLUMNS": "200", "PKGLINE_USER": "demo-test"}
    env.pop("PKGLINE_DB", None)
    return subprocess.Popen(
        [sys.executable, "-m", "pkgline", "demo", "--db", str(db), *args],
        cwd=db.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(process: subprocess.Popen[str], pattern: re.Pattern[str], within_s: float) -> str:
    """The demo's output up to the first match of ``pattern``."""
    assert process.stdout is not None
    text = ""
    deadline = time.monotonic() + within_s
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not pattern.search(text):
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise AssertionError(f"no {pattern.pattern!r} within {within_s} s:\n{text}")
            chunk = os.read(process.stdout.fileno(), 65536).decode()
            if not chunk:
                raise AssertionError(f"the demo ended before {pattern.pattern!r}:\n{text}")
            text += chunk
    return text


def alive(pid: int) -> bool:
    """A pkgline process with this pid is running (not merely a reused pid or a zombie)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return b"pkgline" in cmdline and state != "Z"


def gone(pids: tuple[int, ...], within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def children_of(output: str) -> tuple[int, int]:
    match = STARTED.search(output)
    assert match, output
    return int(match[1]), int(match[2])


def finish(process: subprocess.Popen[str], within_s: float) -> tuple[int, str]:
    try:
        rest, _ = process.communicate(timeout=within_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, rest


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_demo_runs_the_nine_flows_to_completion_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    db = tmp_path / "demo.db"
    process = demo(db, "--time-scale", "0.02")
    head = read_until(process, STARTED, 60)
    sim, serve = children_of(head)
    code, rest = finish(process, 150)
    output = head + rest
    assert code == 0, output
    assert "all 9 lots completed" in output
    assert "through the pkgline server as" in output  # the lots started through the server
    summary = output[output.index("Lots: 9 of 9 completed") :]
    assert "line controller exit 0, simulators exit 0" in output
    for number, (flow, _) in enumerate(LOTS, start=1):
        assert re.search(rf"{LOT_PREFIX}{number}\s+{flow}\s+COMPLETED", summary), output
    assert f"lot show {LOT_PREFIX}1 --db sqlite:///{db}" in output
    assert f"line status --db sqlite:///{db}" in output
    assert re.search(r"demo finished in \d+\.\d s", output)
    assert gone((sim, serve, api_of(output)), within_s=0), "a child of the demo is still running"
    assert not db.with_suffix(".line.toml").exists()  # the line's configuration is removed
    assert "line controller stopped" in db.with_name("demo.serve.log").read_text()

    library = flow_library()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        states = dict(conn.execute("SELECT id, state FROM lots").fetchall())
    assert states == {f"{LOT_PREFIX}{n}": "COMPLETED" for n in range(1, len(LOTS) + 1)}
    # The line was equipped through the server: each lot's track-ins checked and recorded
    # the material lots loaded on its tools, its track-outs counted on the durables mounted.
    last = f"{LOT_PREFIX}{len(LOTS)}"
    assert f"lot genealogy {last} --db sqlite:///{db}" in output
    genealogy = _json_of("lot", "genealogy", last, "--json", "--db", f"sqlite:///{db}")
    used = {(m["material"], m["step"], m["tool"]) for m in genealogy["materials"]}
    assert ("EMC-MOLD-1", "MOLD", "MOLD-1") in used, genealogy
    assert ("WIRE-WB-1", "WIRE_BOND", "WB-1") in used, genealogy
    durables = {
        d["id"]: d for d in _json_of("durable", "list", "--json", "--db", f"sqlite:///{db}")
    }
    assert durables["CAP-WB-1"]["tool"] == "WB-1" and durables["CAP-WB-1"]["count"] > 0, durables
    assert durables["BLADE-DICE-1"]["count"] > 0, durables
    # What the feed published: the lots' events and the durables' and material lots'
    assert f"events list --limit 20 --db sqlite:///{db}" in output
    feed = _json_of("events", "list", "--limit", "10000", "--json", "--db", f"sqlite:///{db}")
    kinds = {e["kind"] for e in feed}
    assert {"LotStarted", "DurableMounted", "DurableUsed", "MaterialLoaded"} <= kinds, kinds
    # The reason codes the demo added through the server, as quality would: a hold, a scrap
    # and a material lot's quarantine can be tried with a code on the demo's line.
    assert "reason codes added through the pkgline server: hold VOID, CONTAM, RECALL" in output
    codes = _json_of("reason", "list", "--json", "--db", f"sqlite:///{db}")
    assert {(c["code"], c["kind"], tuple(c["release_by"]), c["active"]) for c in codes} == {
        (r.code, r.kind, r.release_by, True) for r in REASON_CODES
    }
    # The SPC chart the demo set through the server: a point for each lot's track-out at its
    # step on its tool, none of which broke a rule (the demo's lots all completed, above).
    spc = SPC_CHART
    assert f"spc show {spc.step} {spc.value} --tool {spc.tool} --db sqlite:///{db}" in output
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (charted,) = conn.execute(
            "SELECT count(*) FROM lot_history WHERE operation = 'track_out' AND step = ? "
            "AND tool = ?",
            (spc.step, spc.tool),
        ).fetchone()
    (chart,) = _json_of(
        "spc", "show", spc.step, spc.value, "--tool", spc.tool, "--json", "--db", f"sqlite:///{db}"
    )
    assert (chart["center"], chart["sigma"], chart["limits_source"]) == (
        spc.center,
        spc.sigma,
        "engineering",
    )
    assert charted > 0 and len(chart["points"]) == charted, (charted, chart)
    assert chart["violations"] == [] and all(p["rules"] == [] for p in chart["points"]), chart
    # The live view's "steps done / planned": the route the controller took, step for step.
    for number, (flow, _) in enumerate(LOTS, start=1):
        lot = start_lot(cmd.StartLot(f"P{number}", flow, "t"), library.get(flow), utc_now()).lot
        steps = planned_steps(lot, library.get(flow))
        assert re.search(rf"{LOT_PREFIX}{number}\s+{flow}\s+COMPLETED\s+{steps}\s", summary), (
            flow,
            steps,
        )
    # Every lot's strip maps as SEMI E142, valid against the schema pkgline ships, site for
    # site what the lot tracker holds (the demo rejects sites now and then).
    schema = etree.XMLSchema(etree.fromstring(e142.schema_text().encode()))
    for number in range(1, len(LOTS) + 1):
        lot_id = f"{LOT_PREFIX}{number}"
        exported, rejected = asyncio.run(_export(f"sqlite:///{db}", lot_id))
        assert schema.validate(etree.fromstring(exported.xml.encode())), schema.error_log
        read = {
            (m.substrate_id, r, c, m.bins[code].description)
            for m in e142.decode(exported.xml)
            for r, row in enumerate(m.cells, 1)
            for c, code in enumerate(row, 1)
            if m.bins[code].quality == "Fail"
        }
        assert read == {(x.carrier_id, x.row, x.col, x.code) for x in rejected}


def _json_of(*args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "pkgline", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


async def _export(url: str, lot_id: str) -> tuple[MapExport, list[SiteReject]]:
    async with open_lot_service(url) as service:
        return await export_lot_maps(service, lot_id), await service.rejected_sites(lot_id)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_keep_leaves_the_line_running_until_its_processes_are_stopped(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    process = demo(db, "--keep", "--time-scale", "0.02")
    head = read_until(process, STARTED, 60)
    children = children_of(head)
    try:
        code, rest = finish(process, 150)
        output = head + rest
        assert code == 0, output
        assert "all 9 lots completed" in output
        kept = re.search(
            r"still running \(--keep\): configuration (\S+); stop it with: kill ([\d ]+)", output
        )
        assert kept, output
        children = (*children, api_of(output))
        assert sorted(int(p) for p in kept[2].split()) == sorted(children)
        assert f"lot show {LOT_PREFIX}1 --server unix://" in output
        # every command printed goes through the kept server: line status, as printed
        printed = re.search(r"line status (--server unix://\S+)", output)
        assert printed and f"--db sqlite:///{db}" not in output, output
        assert Path(kept[1]).exists(), "the line's configuration stays while the line runs"
        time.sleep(1.0)  # the demo has exited; its children go on
        assert all(alive(p) for p in children), "--keep: the line stopped with the demo"
        status = subprocess.run(
            [sys.executable, "-m", "pkgline", "line", "status", *printed[1].split()],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert re.search(r"line-sim-1 .* running", status.stdout), status.stdout
        assert "not running" not in status.stdout, status.stdout
        assert "no heartbeat" not in status.stdout, status.stdout
        for command in (
            ["lot", "start", "HELD-1", "--flow", "fo-organic", "--param", "layers=3"],
            ["lot", "hold", "HELD-1", "--reason", "kept for a look"],
        ):
            done = subprocess.run(
                [sys.executable, "-m", "pkgline", *command, *printed[1].split()],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stdout + done.stderr
        _log_in_to_the_station(output, held="HELD-1")
    finally:
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGTERM)
    assert gone(children), "the kept line did not stop on SIGTERM"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_keep_keeps_a_line_whose_lots_ran_out_of_time(tmp_path: Path) -> None:
    """Out of time is no failure: the lots go on, and --keep keeps the line it says it kept."""
    db = tmp_path / "demo.db"
    process = demo(db, "--keep", "--time-scale", "2", "--time-limit", "30")
    head = read_until(process, STARTED, 60)
    children = children_of(head)
    try:
        code, rest = finish(process, 90)
        output = head + rest
        assert code == 1, output
        assert "out of time after" in output and "--time-limit SECONDS" in output
        kept = re.search(r"still running \(--keep\).*stop it with: kill ([\d ]+)", output)
        assert kept, output
        children = (*children, api_of(output))
        assert "nothing left running" not in output
        time.sleep(1.0)
        assert all(alive(p) for p in children), "--keep: the line stopped after running out of time"
    finally:
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGTERM)
    assert gone(children), "the kept line did not stop on SIGTERM"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_time_limit_that_ends_before_the_line_is_up_says_so(tmp_path: Path) -> None:
    """--time-limit 5 gave up waiting for the simulators after 5 s and said "error: no
    the simulators to listen within 30 s" above an empty log: neither 30 s nor their fault."""
    process = demo(tmp_path / "demo.db", "--time-limit", "5")
    code, output = finish(process, 90)
    assert code == 1, output
    assert "within 30 s" not in output and "no the" not in output
    if "out of time after" not in output:  # a machine fast enough gets the lots started
        assert re.search(
            r"error: --time-limit 5 s ran out after \d+\.\d s while waiting for (the "
            r"simulators to listen|the line controller to get ready)",
            output,
        ), output
    assert "nothing left running" in output


def test_slower_tools_get_a_longer_time_limit() -> None:
    assert time_limit_for(DEFAULT_TIME_SCALE) == TIME_LIMIT_S
    assert time_limit_for(0.01) == TIME_LIMIT_S  # faster tools: never less
    assert time_limit_for(DEFAULT_TIME_SCALE * 10) == pytest.approx(TIME_LIMIT_S * 10)


STATION = re.compile(
    r"operator station: (http://127\.0\.0\.1:\d+/station/)\s+log in as (\S+), password (\S+) "
)


def _log_in_to_the_station(output: str, held: str | None = None) -> None:
    """The kept demo's station answers at the URL printed, with the password printed for its
    user (made for this run: no default password), and shows a demo lot; and ``held``, a lot
    on hold, with the line's rules (the server runs with the demo line's configuration)."""
    found = STATION.search(output)
    assert found, output
    url, user, password = found[1], found[2], found[3]
    assert user == os_account()  # the OS account running the demo
    with httpx.Client(timeout=10) as client:
        form = client.get(url + "login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None, form.text
        client.post(url + "login", data={"csrf": csrf[1], "username": user, "password": password})
        lot = client.get(url + f"lots/{LOT_PREFIX}1")
        assert lot.status_code == 200 and 'id="lot-state"' in lot.text, lot.text
        assert "COMPLETED" in lot.text
        if held is not None:  # the server applies the line's [signatures]: two sign a scrap
            page = client.get(url + f"lots/{held}")
            assert 'id="lot-hold"' in page.text, page.text
            assert 'id="scrap-lot-second-username"' in page.text, page.text


@pytest.mark.slow
def test_ctrl_c_stops_the_line_and_leaves_nothing_running(tmp_path: Path) -> None:
    process = demo(tmp_path / "demo.db")
    output = read_until(process, re.compile(r"RUNNING"), 60)
    children = (*children_of(output), api_of(output))
    process.send_signal(signal.SIGINT)
    code, rest = finish(process, 30)
    assert code == 130, output + rest
    assert "interrupted: stopping the line" in rest
    assert gone(children), "a child of the demo is still running"


@pytest.mark.slow
def test_the_line_stops_when_the_demo_is_killed(tmp_path: Path) -> None:
    process = demo(tmp_path / "demo.db")
    children = children_of(read_until(process, STARTED, 60))
    process.kill()
    process.communicate(timeout=10)
    assert gone(children), "the demo's children outlived it"


def test_a_database_that_is_not_a_demo_database_is_never_replaced(tmp_path: Path) -> None:
    db = tmp_path / "precious.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE lots (id TEXT)")
        conn.execute("INSERT INTO lots VALUES ('L2024-0001')")
        conn.commit()
    before = db.read_bytes()
    code, output = finish(demo(db), 60)
    assert code == 2, output
    assert "holds lots the demo did not start (L2024-0001)" in output
    assert "choose another --db, or remove the file" in output
    assert db.read_bytes() == before


def test_the_database_of_a_demo_still_running_is_not_replaced(tmp_path: Path) -> None:
    """A second demo on the --db of one kept running (--keep) deleted the database under
    its line controller and server, and wrote its own line.toml and logs over theirs."""
    db = tmp_path / "demo.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE lots (id TEXT)")
        conn.execute("INSERT INTO lots VALUES ('DEMO-1')")
        conn.execute(
            "CREATE TABLE controllers (name TEXT, host TEXT, pid INTEGER, started_at TEXT, "
            "heartbeat_at TEXT, status TEXT, tools TEXT)"
        )
        beat = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
        conn.execute(
            "INSERT INTO controllers VALUES ('line-sim-1', 'host', 4242, ?, ?, 'ok', '[]')",
            (beat, beat),
        )
        conn.commit()
    before = db.read_bytes()
    code, output = finish(demo(db), 60)
    assert code == 2, output
    assert "is the database of a demo whose line is still running" in output
    assert "line controller pid 4242" in output
    assert db.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"notes of the night shift\n" * 100, "is not a database SQLite can read"),
        (None, "is not a pkgline database"),
    ],
    ids=["text", "other tables"],
)
def test_a_file_that_is_not_a_pkgline_database_is_never_replaced(
    tmp_path: Path, content: bytes | None, why: str
) -> None:
    db = tmp_path / "other.db"
    if content is None:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("CREATE TABLE orders (id TEXT)")
            conn.commit()
    else:
        db.write_bytes(content)
    before = db.read_bytes()
    code, output = finish(demo(db), 60)
    assert code == 2, output
    assert why in output
    assert db.read_bytes() == before
