"""Ctrl-C at a command run by a test: SIGINT to the child, its output once it ended, and a
failure that says why when it does not end (what the child printed, and how its SIGINT was
set up: ignored or blocked, as a child can inherit it, or caught)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

SIGNAL_MASKS = ("SigBlk", "SigIgn", "SigCgt")

_SIGINT_AT_DEFAULT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def interruptible(*command: str) -> tuple[str, ...]:
    """``command`` (a program's path, then its arguments) run with SIGINT at its default, as
    from a terminal, whatever the test run inherited: a run started in the background by a
    non-interactive shell (``make test &`` in a script) has SIGINT ignored, and a child
    inherits that (two tests failed so, the command ignoring the Ctrl-C they sent)."""
    return (sys.executable, "-c", _SIGINT_AT_DEFAULT, *command)


def sigint_state(pid: int) -> dict[str, bool]:
    """Whether process ``pid`` blocks, ignores and catches SIGINT (Linux's /proc)."""
    bit = 1 << (signal.SIGINT - 1)
    state = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in SIGNAL_MASKS:
            state[name] = bool(int(value.strip(), 16) & bit)
    return state


async def interrupt(process: asyncio.subprocess.Process, timeout_s: float = 60.0) -> str:
    """Send SIGINT to ``process`` (started with its output piped) and wait for it to end:
    its standard error."""
    state = sigint_state(process.pid)
    assert not (state["SigBlk"] or state["SigIgn"]), f"the command cannot see SIGINT: {state}"
    process.send_signal(signal.SIGINT)
    try:
        _, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        _, err = await process.communicate()
        pytest.fail(
            f"the command did not end {timeout_s:g} s after SIGINT (its SIGINT: {state}); "
            f"it printed:\n{err.decode(errors='replace')[-4000:]}"
        )
    return err.decode(errors="replace")
