"""`pkgline serve` says at start-up when the flow files on disk differ from the active
versions in the database (issue 19: a changed file never changes a version silently), as an
engineer meets it: a flow published and approved with the CLI, then the controller started
on the packaged files."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from flows.loader import flow_sources
from tests.controller.conftest import line_config
from tests.controller.test_daemon import _spawn, _stop

FLOW = "fc-heatsink-muf"


def _pkgline(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pkgline", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k not in ("PKGLINE_SERVER", "PKGLINE_DB")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def test_serve_warns_that_the_flow_files_differ_from_the_approved_version(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'line.db'}"
    _pkgline("db", "upgrade", "--db", db)  # the packaged flows: version 1, approved
    edited = tmp_path / "flows"
    edited.mkdir()
    for name, text in flow_sources(FLOW).items():
        if name == f"{FLOW}.yaml":
            assert "MOLD [BALL_MOUNT] [DICE]" in text
            text = text.replace("MOLD [BALL_MOUNT] [DICE]", "MOLD BALL_MOUNT [DICE]")
        (edited / name).write_text(text)
    _pkgline("flow", "publish", str(edited / f"{FLOW}.yaml"), "--note", "balls always", "--db", db)
    _pkgline("flow", "approve", FLOW, "2", "--meaning", "approved: balls always", "--db", db)

    config = line_config(tools=["DB-1"])  # no tool answers: not what this test is about
    proc = _spawn(config, tmp_path, db)
    log = tmp_path / f"{config.name}.log"
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while "flow files differ" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert loop.time() < deadline, log.read_text()
            await asyncio.sleep(0.2)
    finally:
        await _stop(proc)
    warnings = [
        json.loads(line)
        for line in log.read_text().splitlines()
        if line.startswith("{") and "flow files differ" in line
    ]
    assert len(warnings) == 1, warnings
    assert warnings[0]["level"] == "warning"
    assert f"flow {FLOW}" in warnings[0]["detail"]
    assert "differ from the active version 2" in warnings[0]["detail"]
