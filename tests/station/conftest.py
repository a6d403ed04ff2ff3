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
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from pkgline.api.server import open_state
from tests.station.seed import fast_passwords, free_port, migrate, seed

START_S = 30.0


@dataclass
class Station:
    url: str
    """The server's base URL, ``http://127.0.0.1:PORT``."""
    db: str


async def _seeded(db: str) -> None:
    await migrate(db)
    async with open_state(db, passwords=fast_passwords()) as state:
        await seed(state)


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    where = tmp_path_factory.mktemp("station")
    db = f"sqlite:///{where / 'station.db'}"
    asyncio.run(_seeded(db))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PKGLINE_SERVER", "PKGLINE_DB")}
    with (where / "api.log").open("w") as log:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pkgline",
                "api",
                "--db",
                db,
                "--socket",
                str(where / "api.sock"),
                "--http-port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_S
        while True:
            if child.poll() is not None:
                raise AssertionError(
                    f"pkgline api exited {child.returncode}: {(where / 'api.log').read_text()}"
                )
            try:
                with httpx.Client(timeout=1) as probe:
                    if probe.get(f"{url}/health").status_code == 200:
                        break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "pkgline api did not answer in 30 s"
            time.sleep(0.1)
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
