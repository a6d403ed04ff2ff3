"""The security settings of an endpoint and of line.toml: secure by default, no password in
a URL, consistent policy and mode, paths resolved next to line.toml, the line's user given to
the secure OPC UA endpoints that name none (and to no plain one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from drivers.config import ModbusEndpoint, OpcUaEndpoint, OpcUaSecurity
from pkgline.config import ConfigError, load_line_config


def test_an_opcua_endpoint_is_signed_and_encrypted_by_default() -> None:
    security = OpcUaEndpoint(url="opc.tcp://10.0.0.5:4840").security
    assert (security.policy, security.mode) == ("Basic256Sha256", "SignAndEncrypt")
    assert security.secure and not security.trust_on_first_use


def test_a_user_or_password_in_the_url_is_refused() -> None:
    with pytest.raises(ValidationError, match="carries no user or password"):
        OpcUaEndpoint(url="opc.tcp://op:secret@10.0.0.5:4840")


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"policy": "None", "mode": "Sign"}, "policy None goes with mode None"),
        ({"policy": "Basic256Sha256", "mode": "None"}, "policy None goes with mode None"),
        ({"policy": "None", "mode": "None", "credentials": "u.toml"}, "not sent without"),
        ({"user_certificate": "u.der"}, "go together"),
        ({"credentials": "u.toml", "user_certificate": "u.der", "user_key": "u.pem"}, "not both"),
        ({"policy": "Basic128Rsa15"}, "Basic256Sha256"),
    ],
)
def test_inconsistent_security_is_refused(settings: dict[str, str], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        OpcUaSecurity.model_validate(settings)


def test_line_toml_paths_are_resolved_next_to_it(tmp_path: Path) -> None:
    (tmp_path / "line.toml").write_text(
        """
name = "l1"
[security]
credentials = "secrets/user.toml"

[[tools]]
id = "A"
equipment_class = "dicer"
[tools.endpoint]
transport = "opcua"
url = "opc.tcp://127.0.0.1:4840"

[[tools]]
id = "B"
equipment_class = "dicer"
[tools.endpoint]
transport = "opcua"
url = "opc.tcp://127.0.0.1:4841"
security = { policy = "None", mode = "None" }

[[tools]]
id = "C"
equipment_class = "molder"
[tools.endpoint]
transport = "modbus"
port = 802
tls = {}
map = "maps/molder-x.yaml"
""",
        encoding="utf-8",
    )
    config = load_line_config(tmp_path / "line.toml")
    root = tmp_path.resolve()
    assert config.security.pki == root / "pki"
    assert config.security.simulator_pki == root / "pki-sim"
    a, b, c = (config.tool(t).endpoint for t in "ABC")
    assert isinstance(a, OpcUaEndpoint) and isinstance(b, OpcUaEndpoint)
    assert a.security.pki == root / "pki"
    assert a.security.credentials == root / "secrets" / "user.toml"
    assert b.security.credentials is None, "no password for a plain endpoint"
    assert isinstance(c, ModbusEndpoint) and c.tls is not None and c.tls.pki == root / "pki"
    # a map file too (it was read from the working directory, / under systemd: the probe)
    assert c.map == root / "maps" / "molder-x.yaml"


def test_an_unknown_security_setting_names_the_tool(tmp_path: Path) -> None:
    (tmp_path / "line.toml").write_text(
        """
name = "l1"
[[tools]]
id = "A"
equipment_class = "dicer"
[tools.endpoint]
transport = "opcua"
url = "opc.tcp://127.0.0.1:4840"
security = { policy = "Basic256Sha256", mode = "Encrypt" }
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"tools\[0\] \(A\)\.endpoint.*mode"):
        load_line_config(tmp_path / "line.toml")


def _dicer_a(tmp_path: Path, tool: str, endpoint: str) -> Path:
    """A line.toml of one Modbus dicer A, with ``tool`` in its table and ``endpoint`` in its
    endpoint's."""
    path = tmp_path / "line.toml"
    path.write_text(
        f"""
name = "l1"
[[tools]]
id = "A"
equipment_class = "dicer"
{tool}
[tools.endpoint]
transport = "modbus"
{endpoint}
""",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("tool", "endpoint", "says"),
    [
        ("", 'host = "127.0.0.1:502"', r"host '127.0.0.1:502' holds a port: expected host = "),
        ("", 'host = ""', "host '': expected a host name or an IP address"),
        ("policy = {backoff_initial_s = 60, backoff_max_s = 1}", "", r"backoff_initial_s \(60\)"),
    ],
)
def test_an_endpoint_mistake_the_start_took_is_refused_naming_the_tool(
    tmp_path: Path, tool: str, endpoint: str, says: str
) -> None:
    """Taken at start, then 'cannot connect to 127.0.0.1:502:16021' in the log, or a backoff
    that shrank (found by the probe)."""
    with pytest.raises(ConfigError, match=rf"tools\[0\] \(A\).*{says}"):
        load_line_config(_dicer_a(tmp_path, tool, endpoint))


@pytest.mark.parametrize(
    ("tool", "says"),
    [
        ("policy = {timeout_s = true}", r"policy\.timeout_s: Input should be a valid number"),
        ('policy = {timeout_s = "2"}', r"policy\.timeout_s: Input should be a valid number"),
        ("policy = {timeout_s = nan}", r"policy\.timeout_s: expected a finite number, not nan"),
        ("policy = {backoff_max_s = inf}", r"policy\.backoff_max_s: expected a finite number"),
        ("simulation = {seed = 1.5}", r"simulation\.seed: Input should be a valid integer"),
        ("simulation = {seed = 1979-05-27}", r"simulation\.seed: expected a string, a number"),
        ("steps = []", r"steps: expected at least one step code, or no steps"),
        ("steps = [1]", r"steps\[0\]: Input should be a valid string$"),
    ],
)
def test_a_value_of_another_type_than_the_setting_is_refused_not_coerced(
    tmp_path: Path, tool: str, says: str
) -> None:
    """Lax validation took timeout_s = true as one second, "2" as two and steps = [] as a
    tool that may run nothing (found by the probe)."""
    with pytest.raises(ConfigError, match=rf"tools\[0\] \(A\)\.{says}"):
        load_line_config(_dicer_a(tmp_path, tool, 'host = "127.0.0.1"\nport = 5020'))


def test_whole_numbers_are_taken_for_seconds_and_strings_for_paths_and_choices(
    tmp_path: Path,
) -> None:
    (tmp_path / "line.toml").write_text(
        """
name = "l1"
[[tools]]
id = "A"
equipment_class = "dicer"
steps = ["DICE"]
policy = {timeout_s = 2, backoff_max_s = 30}
[tools.endpoint]
transport = "opcua"
url = "opc.tcp://127.0.0.1:4840"
map = "maps/dicer.yaml"
security = { policy = "Basic256Sha256", mode = "SignAndEncrypt" }
""",
        encoding="utf-8",
    )
    config = load_line_config(tmp_path / "line.toml")
    [tool] = config.tools
    assert tool.policy.timeout_s == 2.0 and tool.steps == ("DICE",)
    assert tool.endpoint.map == tmp_path / "maps" / "dicer.yaml"
