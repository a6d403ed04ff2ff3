"""``pkgline serve`` as the process systemd runs: killed with SIGKILL at any moment it loses
no track-out and moves no lot twice; it tells systemd READY only once the database answers
and every tool's state is read, pings the watchdog, reports STATUS, and on SIGTERM says
STOPPING, finishes what it records and exits 0; it refuses a database whose schema is not
its own."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from mes.domain.model import JobStatus, LotState, Operation
from pkgline.config import LineConfig
from simulators.line import write_line_config
from tests.controller.conftest import (
    Stack,
    all_in,
    line_config,
    lots_in,
    simulated,
    start_lots,
    wait_until,
)

pytestmark = pytest.mark.slow


def _spawn(config: LineConfig, tmp_path: Path, db: str, **env: str) -> subprocess.Popen[bytes]:
    path = tmp_path / f"{config.name}.toml"
    write_line_config(config, path)
    with (tmp_path / f"{config.name}.log").open("ab") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "pkgline", "serve", "--config", str(path), "--db", db],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PKGLINE_DB": db, **env},
        )


async def _wait_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    return await asyncio.to_thread(proc.wait, timeout_s)


async def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return await _wait_exit(proc, 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        await _wait_exit(proc, 10)
        raise


@pytest.mark.timeout(330)  # room for its own 240 s wait, which says which lots are not done
async def test_sigkill_at_any_moment_loses_no_track_out_and_moves_no_lot_twice(
    stack: Stack, tmp_path: Path
) -> None:
    config = line_config(time_scale=0.05, reject_rate=0.02)
    rng = random.Random(7)
    async with simulated(config):
        ids = await start_lots(stack.lots)
        kills = 0
        for _ in range(5):
            proc = _spawn(config, tmp_path, stack.url)
            try:
                await asyncio.sleep(rng.uniform(2.5, 5.0))
            finally:
                proc.kill()  # SIGKILL: no chance to finish anything
                await _wait_exit(proc, 10)
            kills += 1
        proc = _spawn(config, tmp_path, stack.url)
        try:
            try:
                await wait_until(
                    lambda: _done(stack, ids), timeout_s=240, every_s=0.5, what="every lot done"
                )
            except AssertionError as timed_out:
                raise AssertionError(await _why_not_done(stack, ids, tmp_path, config)) from (
                    timed_out
                )
        finally:
            assert await _stop(proc) == 0
    found = await lots_in(stack.lots, ids)
    assert all_in(found, LotState.COMPLETED), {k: (v.state, v.hold) for k, v in found.items()}
    assert kills == 5
    for lot_id in ids:
        report = await stack.lots.report(lot_id)
        operations = Counter(e.operation for e in report.history)
        steps = len(report.lot.path)
        assert operations[Operation.TRACK_OUT] == steps, "exactly one track-out per step"
        assert operations[Operation.TRACK_IN] == steps, "exactly one track-in per step"
        assert operations[Operation.HOLD] == 0
        recorded = [e.data["job"] for e in report.history if e.operation is Operation.JOB_RECORD]
        assert len(recorded) == len(set(recorded)), "no job recorded twice"
        for entry in report.history:
            if entry.operation is Operation.JOB_START:
                job = await stack.lots.job(entry.data["job"])
                assert job is not None and job.status is JobStatus.RECORDED


async def _why_not_done(stack: Stack, ids: list[str], tmp_path: Path, config: LineConfig) -> str:
    """Which lots are not done, where, and the controller's last words: what a failure says."""
    found = await lots_in(stack.lots, ids)
    stuck = {
        k: (v.state.value, v.path[-1:], v.running)
        for k, v in found.items()
        if v.state not in (LotState.COMPLETED, LotState.HOLD, LotState.SCRAPPED)
    }
    log = (tmp_path / f"{config.name}.log").read_text(errors="replace").splitlines()
    return f"lots not done after 240 s: {stuck}\nlast of the controller's log:\n" + "\n".join(
        log[-60:]
    )


async def _done(stack: Stack, ids: list[str]) -> bool:
    found = await lots_in(stack.lots, ids)
    return all_in(found, LotState.COMPLETED, LotState.HOLD, LotState.SCRAPPED)


async def test_systemd_is_told_ready_after_every_tool_answered_then_status_watchdog_and_stopping(
    stack: Stack, tmp_path: Path
) -> None:
    config = line_config()
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    messages: list[str] = []

    async def next_message(timeout_s: float) -> str:
        data = await asyncio.wait_for(loop.sock_recv(listener, 4096), timeout_s)
        text = data.decode()
        messages.append(text)
        return text

    try:
        async with simulated(config):
            proc = _spawn(
                config, tmp_path, stack.url, NOTIFY_SOCKET=address, WATCHDOG_USEC="1000000"
            )
            try:
                first = await next_message(60)
                assert "READY=1" in first.splitlines()
                tools = await stack.equipment.tools(config.name)
                assert len(tools) == len(config.tools)
                assert all(t.snapshot.connected for t in tools), (
                    "READY only after every tool answered"
                )
                seen: set[str] = set()
                while not {"WATCHDOG=1", "STATUS"} <= seen:
                    for line in (await next_message(10)).splitlines():
                        seen.add(line.split("=")[0] if line.startswith("STATUS=") else line)
                assert any("tools answering" in m for m in messages)
                # a hang-up (a closed terminal, a reload asked by habit) is no stop: it ended
                # the process at once, and systemd takes that for a clean exit (the probe)
                proc.send_signal(signal.SIGHUP)
                await next_message(10)
                await next_message(10)
                assert proc.poll() is None, "SIGHUP ended the controller"
                proc.send_signal(signal.SIGTERM)
                while not any("STOPPING=1" in m.splitlines() for m in messages):
                    await next_message(10)
                assert await _wait_exit(proc, 30) == 0
                log = (tmp_path / f"{config.name}.log").read_text()
                assert "SIGHUP ignored: the line controller reads its configuration" in log
            finally:
                if proc.poll() is None:
                    proc.kill()
                    await _wait_exit(proc, 10)
    finally:
        listener.close()


async def test_serve_refuses_a_database_without_its_schema(sqlite_url: str, tmp_path: Path) -> None:
    config = line_config(tools=["DB-1"])
    proc = _spawn(config, tmp_path, sqlite_url)
    code = await _wait_exit(proc, 60)
    assert code == 4
    log = (tmp_path / f"{config.name}.log").read_text()
    assert "pkgline db upgrade" in log


async def test_serve_refuses_a_tool_map_that_does_not_load_saying_which(
    stack: Stack, tmp_path: Path
) -> None:
    """A map file that does not load ended the start with a traceback and exit 1 (systemd
    starts it again every 5 s, for ever), and a relative path was read from the working
    directory, not line.toml's (found by the probe): exit 2, one line naming the tool and
    the file's line, the path read next to line.toml."""
    config = line_config(tools=["DB-1"])
    (tool,) = config.tools
    endpoint = tool.endpoint.model_copy(update={"map": Path("maps/db-1.yaml")})
    config = config.model_copy(update={"tools": (tool.model_copy(update={"endpoint": endpoint}),)})
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "db-1.yaml").write_text("extends: pkgline:common.yaml\nblocks: [\n")
    proc = _spawn(config, tmp_path, stack.url)
    assert await _wait_exit(proc, 60) == 2
    log = (tmp_path / f"{config.name}.log").read_text()
    assert "refusing to start" in log and "tool DB-1" in log, log
    assert str(tmp_path / "maps" / "db-1.yaml") in log, log
    assert "Traceback" not in log, log
