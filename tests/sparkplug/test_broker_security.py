"""The edge node on a broker that asks for TLS or a password: it verifies the broker's
certificate against the configured CA and is born over mqtts://; a wrong password is refused
by the broker, logged once (without the password) and retried with the backoff until stopped."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from drivers.model import EquipmentClass
from pkgline.sparkplug.config import SparkplugConfig
from pkgline.sparkplug.node import EdgeNode, running
from tests.controller.conftest import wait_until
from tests.sparkplug.conftest import WAIT_S, running_broker, subscribed

TOOLS = [("DB-1", EquipmentClass.DIE_BONDER)]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    """A CA, and a server certificate it signed for 127.0.0.1, in the test's directory."""
    directory = tmp_path
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem", cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr", cwd=directory,
    )  # fmt: skip
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-extfile", "san.cnf", "-out", "server.pem",
        cwd=directory,
    )  # fmt: skip
    return directory


@pytest.fixture
def passwords(tmp_path: Path) -> Path:
    """A Mosquitto password file: user pkgline, password right-one."""
    path = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(path), "pkgline", "right-one"],
        check=True,
        capture_output=True,
    )
    return path


async def test_over_tls_the_node_checks_the_brokers_certificate_and_is_born(
    tmp_path: Path, certificates: Path
) -> None:
    settings = (
        f"allow_anonymous true\ncafile {tmp_path / 'ca.pem'}\n"
        f"certfile {tmp_path / 'server.pem'}\nkeyfile {tmp_path / 'server.key'}\n"
    )
    with running_broker(tmp_path, settings) as broker:
        config = SparkplugConfig(
            url=f"mqtts://127.0.0.1:{broker.port}",
            group_id="packaging",
            ca_file=tmp_path / "ca.pem",
            bdseq_file=tmp_path / "bdseq",
        )
        node = EdgeNode(config, "line-test", TOOLS)
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        async with subscribed(broker, tls_context=context) as sub, running(node):
            birth = await sub.next("NBIRTH")
        assert birth.payload.by_name()["bdSeq"].value == 0


async def test_a_wrong_password_is_logged_once_and_retried_with_backoff(
    tmp_path: Path, passwords: Path
) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("wrong-one\n")
    secret.chmod(0o600)
    settings = f"allow_anonymous false\npassword_file {passwords}\n"
    with running_broker(tmp_path, settings) as broker:
        config = SparkplugConfig(
            url=broker.url,
            group_id="packaging",
            username="pkgline",
            password_file=secret,
            bdseq_file=tmp_path / "bdseq",
            backoff_initial_s=0.05,
            backoff_max_s=0.2,
        )
        node = EdgeNode(config, "line-test", TOOLS)
        with capture_logs() as logs:
            async with running(node):
                await wait_until(
                    lambda: (node.bdseq.last or 0) >= 3, timeout_s=WAIT_S, every_s=0.05,
                    what="the fourth CONNECT",
                )  # fmt: skip
                assert node.state == "disconnected"
    refused = [e for e in logs if e["event"] == "sparkplug broker unreachable; retrying"]
    assert len(refused) == 1, "logged once on the edge, not on every retry"
    assert "wrong-one" not in repr(logs)
    assert "auth" in refused[0]["error"].lower() or "not authorized" in refused[0]["error"].lower()
