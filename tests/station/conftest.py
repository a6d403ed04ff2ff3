"""The station under test: the real ``pkgline api`` as a child process, serving plain HTTP
on a free 127.0.0.1 port (``--http-port``) and its Unix socket, over a SQLite database seeded
beforehand (tests/station/seed.py); one per test module. Tests talk to it as a browser does:
over TCP, with cookies. A child process keeps the server's sockets out of the test process's
own (the leak check counts those)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from pkgline.api.auth import ApiState
from pkgline.api.server import open_state
from tests.station.seed import fast_passwords, free_port, migrate, seed

START_S = 30.0
PORT_ATTEMPTS = 5
"""How many free ports the station is started on, one after another, while another process
takes the one chosen before the server binds it."""


def _answering_api(
    args: list[str], env: dict[str, str], log_path: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """``args`` (``pkgline api``) with ``--http-port`` a free port, once it answers /health
    there: the child and its URL. The port is free when chosen, but another process can bind
    it before the server does, which then exits (address already in use): then the server is
    started on another port, up to :data:`PORT_ATTEMPTS` times in all."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        url = f"http://127.0.0.1:{(port := free_port())}"
        with log_path.open("w") as log:
            child = subprocess.Popen(
                [*args, "--http-port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + START_S
        while child.poll() is None:
            try:
                with httpx.Client(timeout=1) as probe:
                    if probe.get(f"{url}/health").status_code == 200:
                        return child, url
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                child.kill()
                child.wait()
                raise AssertionError(f"pkgline api did not answer in {START_S:g} s")
            time.sleep(0.1)
        said = log_path.read_text()
        if "address already in use" not in said.lower() or attempt == PORT_ATTEMPTS:
            raise AssertionError(f"pkgline api exited {child.returncode}: {said}")
    raise AssertionError("unreachable: the last attempt returns or raises")


@dataclass
class Station:
    url: str
    """The server's base URL, ``http://127.0.0.1:PORT``."""
    db: str


Prepare = Callable[[ApiState], Awaitable[None]]
"""More for a test module's line, done after the seed and before the server starts (so that
nothing else writes to the database meanwhile)."""


async def _seeded(db: str, prepare: Prepare | None = None) -> None:
    await migrate(db)
    async with open_state(db, passwords=fast_passwords()) as state:
        await seed(state)
        if prepare is not None:
            await prepare(state)


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("station")) as running:
        yield running


@contextmanager
def running_station(
    where: Path, line_toml: str | None = None, db: str | None = None, prepare: Prepare | None = None
) -> Iterator[Station]:
    """The server over a freshly seeded database in ``where`` (or ``db``, an empty database
    of the test's own: PostgreSQL); ``line_toml``: a line configuration it is given
    (``--config``), e.g. a ``[signatures]`` table."""
    db = db or f"sqlite:///{where / 'station.db'}"
    asyncio.run(_seeded(db, prepare))
    env = {k: v for k, v in os.environ.items() if k not in ("PKGLINE_SERVER", "PKGLINE_DB")}
    config: list[str] = []
    if line_toml is not None:
        (where / "line.toml").write_text(line_toml)
        config = ["--config", str(where / "line.toml")]
    args = [sys.executable, "-m", "pkgline", "api", *config, "--db", db]
    args += ["--socket", str(where / "api.sock")]
    child, url = _answering_api(args, env, where / "api.log")
    try:
        yield Station(url, db)
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            code = child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise AssertionError("pkgline api did not stop in 20 s after SIGTERM") from None
        assert code == 0, (where / "api.log").read_text()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless chromium for the test module (tests/station/browsing.py), its files in a
    directory of its own, removed after it."""
    from tests.station.browsing import start_browser

    yield from start_browser()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the module's screenshots go ($PKGLINE_SCREENSHOTS, else a tmp dir)."""
    from tests.station.browsing import screenshots

    return screenshots(tmp_path_factory)
