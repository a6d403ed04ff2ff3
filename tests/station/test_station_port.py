"""The station under test is ``pkgline api`` on a port chosen free beforehand; another
process can take that port before the server binds it (the server then exits: address
already in use). The harness then starts it on another port instead of failing the module."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from tests.station import conftest
from tests.station.seed import free_port, migrate


def test_the_station_starts_on_another_port_when_the_one_chosen_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite:///{tmp_path / 'station.db'}"
    asyncio.run(migrate(db))
    args = [sys.executable, "-m", "pkgline", "api", "--db", db]
    args += ["--socket", str(tmp_path / "api.sock")]
    env = {k: v for k, v in os.environ.items() if k not in ("PKGLINE_SERVER", "PKGLINE_DB")}
    picks: list[int] = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]

        def first_one_taken() -> int:
            port = taken if not picks else free_port()
            picks.append(port)
            return port

        monkeypatch.setattr(conftest, "free_port", first_one_taken)
        child, url = conftest._answering_api(args, env, tmp_path / "api.log")
        try:
            assert picks[0] == taken
            assert url == f"http://127.0.0.1:{picks[-1]}"
            assert picks[-1] != taken
            with httpx.Client(timeout=5) as client:
                assert client.get(f"{url}/health").status_code == 200
        finally:
            child.send_signal(signal.SIGTERM)
            assert child.wait(20) == 0
