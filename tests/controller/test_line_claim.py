"""One line controller a line: a second ``pkgline serve`` of the same line is refused before
it connects to a tool or to the event feed (exit 3, one line saying who drives the line),
while the first one goes on; a controller that crashed leaves its line at once to the next;
and a controller that lost its line (it stalled, and another took it) stops without writing
over the other's record. Two controllers on one line would both command its tools."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mes.domain.equipment import (
    CONTROLLER_STOPPED,
    ControllerRecord,
    LineFence,
    line_holder,
)
from mes.domain.errors import LineHeld
from pkgline.config import LineConfig
from pkgline.controller.line import process_alive
from tests.controller.conftest import Stack, line_config, simulated, wait_until
from tests.controller.test_daemon import _spawn, _stop, _wait_exit

T0 = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
ALIVE = LineFence(15.0, lambda _: True)
MINE = ControllerRecord("line-1", "host-a", 100, T0, T0 + timedelta(seconds=30), "running")
OTHER = ControllerRecord("line-1", "host-b", 200, T0, T0 + timedelta(seconds=25), "running")


def test_a_line_is_held_by_another_controller_that_runs_and_beats() -> None:
    assert line_holder(OTHER, MINE, ALIVE) == OTHER
    assert line_holder(None, MINE, ALIVE) is None  # a new line
    assert line_holder(replace(MINE, status="x"), MINE, ALIVE) is None  # its own record
    assert line_holder(replace(OTHER, status=CONTROLLER_STOPPED), MINE, ALIVE) is None
    stale = replace(OTHER, heartbeat_at=MINE.heartbeat_at - timedelta(seconds=16))
    assert line_holder(stale, MINE, ALIVE) is None
    gone = LineFence(15.0, lambda record: record.pid != 200)
    assert line_holder(OTHER, MINE, gone) is None  # its process is gone: crashed
    restarted = replace(MINE, started_at=T0 + timedelta(seconds=1))  # same pid, new start
    assert line_holder(MINE, restarted, ALIVE) == MINE


def test_a_process_of_this_host_is_alive_while_it_runs() -> None:
    import os
    import socket
    import subprocess
    import sys

    here = socket.gethostname()
    assert process_alive(replace(MINE, host=here, pid=os.getpid()))
    assert process_alive(replace(MINE, host="another-host", pid=1))  # its heartbeat tells
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_alive(replace(MINE, host=here, pid=child.pid))  # reaped: gone


async def test_a_heartbeat_that_claims_a_held_line_is_refused_and_writes_nothing(
    stack: Stack,
) -> None:
    now = datetime.now(UTC)
    held = replace(OTHER, started_at=now, heartbeat_at=now)
    await stack.equipment.heartbeat(held, fence=ALIVE)
    claim = replace(MINE, started_at=now, heartbeat_at=now + timedelta(seconds=1))
    with pytest.raises(LineHeld, match="line line-1 is driven by another line controller"):
        await stack.equipment.heartbeat(claim, fence=ALIVE)
    assert await stack.equipment.controllers() == [held]
    later = replace(claim, heartbeat_at=now + timedelta(seconds=20))  # the other went stale
    await stack.equipment.heartbeat(later, fence=ALIVE)
    assert await stack.equipment.controllers() == [later]


def _log(config_name: str, tmp_path: Path) -> str:
    return (tmp_path / f"{config_name}.log").read_text()


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_second_serve_of_a_line_is_refused_and_a_controller_that_lost_it_stops(
    stack: Stack, tmp_path: Path
) -> None:
    config = line_config(tools=["DB-1"])
    async with simulated(config), _first_ready(config, stack, tmp_path) as first:
        second = _spawn(config, _mkdir(tmp_path / "second"), stack.url)
        assert await _wait_exit(second, 60) == 3
        said = _log(config.name, tmp_path / "second")
        assert "refusing to start: another controller drives the line" in said, said
        assert f"pid {first.pid}" in said and "Traceback" not in said
        assert "tool online" not in said and "feed connected" not in said  # touched nothing
        assert first.poll() is None  # the first goes on

        # another controller takes the line (as after a stall of the first's): the
        # first stops at its next heartbeat and leaves the other's record alone
        now = datetime.now(UTC)
        taker = ControllerRecord(config.name, "host-b", 4242, now, now, "running")
        await stack.equipment.heartbeat(taker)  # unfenced: written over the first's
        assert await _wait_exit(first, 60) == 3
        said = _log(config.name, tmp_path / "first")
        assert "lost its line" in said and "Traceback" not in said
        assert await stack.equipment.controllers() == [taker]


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_line_naming_another_lines_tool_is_refused_without_a_ghost(
    stack: Stack, tmp_path: Path
) -> None:
    """A second line.toml naming line-1's tool under another line name exited with a
    traceback and exit 1 (systemd would start it again for ever), and left its line listed
    as starting, for good (found by the probe): one line, exit 2, its line recorded stopped."""
    config = line_config(tools=["DB-1"])
    async with simulated(config), _first_ready(config, stack, tmp_path) as first:
        other = config.model_copy(update={"name": "line-2"})
        second = _spawn(other, _mkdir(tmp_path / "second"), stack.url)
        assert await _wait_exit(second, 60) == 2
        said = _log(other.name, tmp_path / "second")
        assert "refusing to start: a tool of line.toml is another line's" in said, said
        assert "DB-1" in said and "Traceback" not in said
        records = {c.name: c.status for c in await stack.equipment.controllers()}
        assert records["line-2"] == "stopped", records
        assert first.poll() is None  # the first goes on


@contextlib.asynccontextmanager
async def _first_ready(
    config: LineConfig, stack: Stack, tmp_path: Path
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``pkgline serve`` of ``config`` (its log in tmp_path/first), ready; stopped after."""
    first = _spawn(config, _mkdir(tmp_path / "first"), stack.url)
    try:

        async def ready() -> bool:
            return "line controller ready" in _log(config.name, tmp_path / "first")

        await wait_until(ready, timeout_s=60, what="the first controller ready")
        yield first
    finally:
        await _stop(first)


def _mkdir(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    return path
