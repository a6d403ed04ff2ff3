"""The station under test: the real pkgline server (``serve_api``, the Unix socket and plain
HTTP on a free 127.0.0.1 port) in a thread of its own with its own event loop, over a seeded
SQLite database (tests/station/seed.py); one per test module. Tests talk to it as a browser
does: over TCP, with cookies."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pkgline.api.server import open_state, serve_api
from pkgline.config import ApiConfig, LoopbackHttpConfig
from tests.station.seed import fast_passwords, free_port, migrate, seed


@dataclass
class Station:
    url: str
    """The server's base URL, ``http://127.0.0.1:PORT``."""
    db: str


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    where = tmp_path_factory.mktemp("station")
    db = f"sqlite:///{where / 'station.db'}"
    port = free_port()
    config = ApiConfig(socket=Path(where / "api.sock"), http=LoopbackHttpConfig(port=port))
    ready = threading.Event()
    failed: list[BaseException] = []
    loop = asyncio.new_event_loop()
    stop: asyncio.Event | None = None

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        await migrate(db)
        async with open_state(db, passwords=fast_passwords()) as state:
            await seed(state)
            started = asyncio.Event()
            serving = asyncio.create_task(serve_api(state, config, stop, ready=started))
            waiting = asyncio.create_task(started.wait())
            await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            ready.set()
            await serving

    def run() -> None:
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # reported to the test below
            failed.append(exc)
        finally:
            ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name="station-server", daemon=True)
    thread.start()
    assert ready.wait(30), "the server did not start in 30 s"
    if failed:
        raise failed[0]
    try:
        yield Station(f"http://127.0.0.1:{port}", db)
    finally:
        if stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        assert not thread.is_alive(), "the server did not stop in 30 s"
        if failed:
            raise failed[0]
