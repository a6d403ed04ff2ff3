"""Free loopback ports for simulated lines, brokers and servers: below the ephemeral range by
default, or from the range ``$PKGLINE_SIM_PORTS`` names, which the test suite gives each
worker (tests/conftest.py); a malformed range is refused, saying what was expected."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from simulators.ports import (
    PORTS_ENV,
    PORTS_FROM,
    PortRangeError,
    _ephemeral_start,
    default_port_range,
    free_loopback_ports,
    port_range,
)
from tests.pkgline_cli import pkgline


def test_free_ports_are_chosen_below_the_ephemeral_range_and_free(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No outgoing connection's source port can take one between its choice and its use."""
    monkeypatch.delenv(PORTS_ENV, raising=False)
    assert port_range() == default_port_range() == range(PORTS_FROM, _ephemeral_start())
    ports = free_loopback_ports(50)
    assert len(set(ports)) == 50
    assert all(PORTS_FROM <= p < _ephemeral_start() for p in ports)
    with socket.socket() as taken:  # a port in use is never chosen
        taken.bind(("127.0.0.1", ports[0]))
        taken.listen()
        assert ports[0] not in free_loopback_ports(200)


def test_the_range_named_in_the_environment_is_the_one_chosen_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the last ports of this worker's own range (tests/conftest.py): no other worker's
    top = (port_range() if os.environ.get(PORTS_ENV) else default_port_range())[-1]
    monkeypatch.setenv(PORTS_ENV, f" {top - 19}-{top} ")
    assert port_range() == range(top - 19, top + 1)
    ports = free_loopback_ports(5)
    assert len(set(ports)) == 5 and all(top - 19 <= p <= top for p in ports)


def test_a_range_with_no_free_port_left_falls_back_to_one_the_kernel_chooses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv(PORTS_ENV, f"{port}-{port}")
        (chosen,) = free_loopback_ports(1)
        assert chosen != port


@pytest.mark.parametrize(
    "spec", ["20000", "20000-", "-20000", "a-b", "30000-20000", "80-90", "60000-70000", "1-2-3"]
)
def test_a_malformed_range_is_refused_saying_what_was_expected(
    monkeypatch: pytest.MonkeyPatch, spec: str
) -> None:
    monkeypatch.setenv(PORTS_ENV, spec)
    with pytest.raises(PortRangeError) as refused:
        free_loopback_ports(1)
    assert f"${PORTS_ENV} is {spec!r}; expected LOW-HIGH" in str(refused.value)
    assert "1024 to 65535" in str(refused.value)


def test_the_demo_refuses_a_malformed_range_before_it_starts_anything(tmp_path: Path) -> None:
    ran = pkgline("demo", "--db", f"{tmp_path}/demo.db", env={**os.environ, PORTS_ENV: "lots"})
    assert ran.returncode == 2, ran
    said = " ".join(ran.stderr.split())
    assert f"${PORTS_ENV} is 'lots'; expected LOW-HIGH" in said
    assert "Traceback" not in ran.stderr
