"""``pkgline api`` as systemd runs it: READY once both listeners accept, the watchdog pinged,
HTTPS with the configured certificate for remote clients (API keys), the Unix socket for
local ones, and SIGTERM drains and removes the socket (exit 0)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import sys
from pathlib import Path

import httpx

from mes.domain.authority import Role
from mes.domain.identity import UserKind
from pkgline.api.server import open_state
from simulators.ports import free_loopback_ports
from tests.api.conftest import ACCOUNT, ADMIN, _migrated
from tests.events.test_relay_faults import _pki as tls_files


def _free_port() -> int:
    return free_loopback_ports(1)[0]


async def _datagram(sock: socket.socket, timeout_s: float = 30.0) -> dict[str, str]:
    loop = asyncio.get_running_loop()
    data = await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout_s)
    return dict(line.split("=", 1) for line in data.decode().splitlines())


async def test_the_daemon_notifies_serves_https_and_the_socket_and_drains_on_sigterm(
    sqlite_url: str, tmp_path: Path
) -> None:
    await _migrated(sqlite_url)
    async with open_state(sqlite_url) as state:
        await state.identity.add_user(ADMIN, ACCOUNT, "Test Runner", [Role.OPERATOR])
        await state.identity.add_user(
            ADMIN, "mes-bridge", "MES bridge", [Role.OPERATOR], kind=UserKind.SYSTEM
        )
        _, token = await state.identity.issue_api_key(ADMIN, "mes-bridge", "test")
    ca, cert, key = tls_files(tmp_path / "tls")
    port = _free_port()
    sock_path = tmp_path / "run" / "api.sock"
    config = tmp_path / "line.toml"
    config.write_text(
        f'name = "line-1"\n[api]\nsocket = "{sock_path}"\n'
        f'[api.https]\nhost = "127.0.0.1"\nport = {port}\n'
        f'certificate = "{cert}"\nkey = "{key}"\n'
    )
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.setblocking(False)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify"),
        "WATCHDOG_USEC": "1000000",
        "PKGLINE_DB": sqlite_url,
    }
    env.pop("WATCHDOG_PID", None)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pkgline", "api", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        ready = await _datagram(notify)
        assert ready.get("READY") == "1", ready
        assert f"https://127.0.0.1:{port}" in ready["STATUS"]
        assert (await _datagram(notify)).get("WATCHDOG") == "1"
        assert sock_path.stat().st_mode & 0o777 == 0o660
        https = f"https://127.0.0.1:{port}"
        async with httpx.AsyncClient(
            base_url=https, verify=ssl.create_default_context(cafile=ca)
        ) as client:
            anonymous = await client.get("/lots")
            keyed = await client.post(
                "/lots",
                json={"lot": "A1", "flow": "fo-organic", "params": {"layers": "3"}},
                headers={"authorization": f"Bearer {token}"},
            )
        assert anonymous.status_code == 401
        assert keyed.status_code == 201 and keyed.json()["recorded"][0]["by"] == "mes-bridge"
        local = httpx.AsyncHTTPTransport(uds=str(sock_path))
        async with httpx.AsyncClient(transport=local, base_url="http://pkgline") as client:
            shown = await client.get("/lots/A1")
        assert shown.status_code == 200 and shown.headers["pkgline-principal"].startswith(ACCOUNT)
        child.send_signal(signal.SIGTERM)
        while "STOPPING" not in (said := await _datagram(notify)):
            assert "WATCHDOG" in said
        output, _ = await asyncio.wait_for(child.communicate(), 30)
        assert child.returncode == 0, output.decode()
        assert not sock_path.exists()
        assert token.split("_", 2)[2] not in output.decode()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        notify.close()
