"""The sd_notify client: messages arrive on a real AF_UNIX datagram socket set as
NOTIFY_SOCKET, as systemd would receive them; without NOTIFY_SOCKET nothing is sent; the
watchdog settings are read as systemd means them; no socket is left open."""

from __future__ import annotations

import os
import select
import socket
import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pkgline.systemd import Notifier


@dataclass
class Systemd:
    """The receiving end of a notification socket, as the test's stand-in for systemd."""

    address: str  # the NOTIFY_SOCKET value
    sock: socket.socket

    def receive(self) -> dict[str, str]:
        datagram = self.sock.recv(4096).decode("utf-8")
        assert datagram.endswith("\n")
        return dict(line.split("=", 1) for line in datagram.splitlines())

    def nothing_waiting(self) -> bool:
        readable, _, _ = select.select([self.sock], [], [], 0)
        return not readable


def _listen(bind_to: str | bytes, address: str) -> Generator[Systemd, None, None]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(bind_to)
        sock.settimeout(5)
        yield Systemd(address, sock)
    finally:
        sock.close()


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Systemd]:
    """A notification socket on a path in tmp_path, set as NOTIFY_SOCKET."""
    path = str(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield from _listen(path, path)


@pytest.fixture
def abstract_systemd(monkeypatch: pytest.MonkeyPatch) -> Iterator[Systemd]:
    """A notification socket in the abstract namespace (``@name``), set as NOTIFY_SOCKET."""
    name = f"pkgline-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    yield from _listen(b"\0" + name.encode(), "@" + name)


@pytest.fixture
def no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


def _socket_count() -> int:
    return sum(1 for fd in Path("/proc/self/fd").iterdir() if _readlink(fd).startswith("socket:"))


def _readlink(path: Path) -> str:
    try:
        return str(path.readlink())
    except OSError:
        return ""


# -- the messages --------------------------------------------------------------------------


def test_ready_arrives_as_ready_1_with_its_status(systemd: Systemd) -> None:
    with Notifier.from_environment() as notifier:
        assert notifier.enabled
        assert notifier.ready("3 tools online, 2 lots running")
    assert systemd.receive() == {"READY": "1", "STATUS": "3 tools online, 2 lots running"}


def test_ready_without_a_status_sends_ready_alone(systemd: Systemd) -> None:
    with Notifier.from_environment() as notifier:
        notifier.ready()
    assert systemd.receive() == {"READY": "1"}


def test_status_watchdog_and_stopping_arrive_as_sent_one_datagram_each(systemd: Systemd) -> None:
    with Notifier.from_environment() as notifier:
        assert notifier.status("WB-01 offline")
        assert notifier.watchdog()
        assert notifier.stopping("finishing 1 track-out")
        assert notifier.stopping()
    assert systemd.receive() == {"STATUS": "WB-01 offline"}
    assert systemd.receive() == {"WATCHDOG": "1"}
    assert systemd.receive() == {"STOPPING": "1", "STATUS": "finishing 1 track-out"}
    assert systemd.receive() == {"STOPPING": "1"}
    assert systemd.nothing_waiting()


def test_reloading_carries_the_monotonic_clock_in_microseconds(systemd: Systemd) -> None:
    with Notifier.from_environment() as notifier:
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        notifier.reloading()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    message = systemd.receive()
    assert message["RELOADING"] == "1"
    assert before <= int(message["MONOTONIC_USEC"]) <= after


def test_extend_timeout_asks_for_microseconds(systemd: Systemd) -> None:
    with Notifier.from_environment() as notifier:
        notifier.extend_timeout(12.5)
    assert systemd.receive() == {"EXTEND_TIMEOUT_USEC": "12500000"}


def test_a_status_is_one_line(systemd: Systemd) -> None:
    with Notifier.from_environment() as notifier:
        notifier.status("WB-01 offline\nDA-02 offline\r\n")
    assert systemd.receive() == {"STATUS": "WB-01 offline DA-02 offline"}


def test_an_abstract_namespace_socket_receives_the_messages(abstract_systemd: Systemd) -> None:
    with Notifier.from_environment() as notifier:
        assert notifier.enabled
        notifier.ready("up")
        notifier.watchdog()
    assert abstract_systemd.receive() == {"READY": "1", "STATUS": "up"}
    assert abstract_systemd.receive() == {"WATCHDOG": "1"}


def test_an_explicit_environment_mapping_is_used_instead_of_os_environ(
    systemd: Systemd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET")
    with Notifier.from_environment({"NOTIFY_SOCKET": systemd.address}) as notifier:
        notifier.ready()
    assert systemd.receive() == {"READY": "1"}


# -- no systemd ----------------------------------------------------------------------------


@pytest.mark.usefixtures("no_systemd")
def test_without_notify_socket_every_message_is_a_no_op_and_no_socket_is_opened() -> None:
    before = _socket_count()
    notifier = Notifier.from_environment()
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    assert not notifier.ready("up")
    assert not notifier.status("ok")
    assert not notifier.watchdog()
    assert not notifier.stopping()
    assert not notifier.reloading()
    assert _socket_count() == before
    notifier.close()


def test_a_notify_socket_that_is_not_af_unix_disables_notifications() -> None:
    with capture_logs() as logs:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert not notifier.ready()
    assert [entry["event"] for entry in logs] == [
        "NOTIFY_SOCKET is not an AF_UNIX socket; not notifying systemd"
    ]


# -- the watchdog ----------------------------------------------------------------------------


def test_the_watchdog_interval_is_watchdog_usec_in_seconds(systemd: Systemd) -> None:
    env = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "30000000"}
    assert Notifier.from_environment(env).watchdog_interval_s == 30.0


def test_the_watchdog_named_for_this_process_is_ours(systemd: Systemd) -> None:
    env = {
        "NOTIFY_SOCKET": systemd.address,
        "WATCHDOG_USEC": "2500000",
        "WATCHDOG_PID": str(os.getpid()),
    }
    assert Notifier.from_environment(env).watchdog_interval_s == 2.5


def test_a_watchdog_named_for_another_process_is_not_ours_to_ping(systemd: Systemd) -> None:
    env = {
        "NOTIFY_SOCKET": systemd.address,
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": str(os.getpid() + 1),
    }
    notifier = Notifier.from_environment(env)
    assert notifier.enabled
    assert notifier.watchdog_interval_s is None


def test_watchdog_usec_from_os_environ(systemd: Systemd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "15000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier.from_environment().watchdog_interval_s == 15.0


@pytest.mark.parametrize(
    ("usec", "pid"),
    [("0", None), ("-5", None), ("thirty", None), ("30000000", "me"), ("", None)],
    ids=["zero", "negative", "not-a-number", "pid-not-a-number", "empty"],
)
def test_malformed_watchdog_settings_mean_no_watchdog(
    systemd: Systemd, usec: str, pid: str | None
) -> None:
    env = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": usec}
    if pid is not None:
        env["WATCHDOG_PID"] = pid
    with capture_logs():
        assert Notifier.from_environment(env).watchdog_interval_s is None


@pytest.mark.usefixtures("no_systemd")
def test_a_watchdog_without_a_notify_socket_has_nobody_to_ping() -> None:
    assert Notifier.from_environment({"WATCHDOG_USEC": "30000000"}).watchdog_interval_s is None


# -- the socket ------------------------------------------------------------------------------


def test_one_socket_serves_every_message_and_close_closes_it(systemd: Systemd) -> None:
    before = _socket_count()
    notifier = Notifier.from_environment()
    assert _socket_count() == before, "no socket before the first message"
    notifier.ready()
    notifier.watchdog()
    notifier.status("ok")
    assert _socket_count() == before + 1
    notifier.close()
    assert _socket_count() == before
    notifier.close()  # idempotent
    for _ in range(3):
        systemd.receive()


def test_after_close_messages_are_ignored(systemd: Systemd) -> None:
    notifier = Notifier.from_environment()
    notifier.close()
    assert not notifier.enabled
    assert not notifier.watchdog()
    assert systemd.nothing_waiting()


def test_a_failed_send_never_raises_and_is_logged_once_then_its_recovery_once(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "not-yet")
    with capture_logs() as logs, Notifier(path) as notifier:
        assert not notifier.ready("up")  # nobody listens: ENOENT
        assert not notifier.watchdog()
        assert not notifier.watchdog()
        gen = _listen(path, path)
        systemd = next(gen)
        try:
            assert notifier.watchdog()
            assert notifier.watchdog()
            assert systemd.receive() == {"WATCHDOG": "1"}
        finally:
            gen.close()
    assert [(entry["log_level"], entry["event"]) for entry in logs] == [
        ("warning", "systemd notification failed"),
        ("info", "systemd notifications delivered again"),
    ]
    assert logs[0]["socket"] == path
