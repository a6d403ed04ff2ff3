"""The [sparkplug] table of line.toml and the files the edge node reads at start: a bad setting
is refused with what was expected, credentials never sit in the broker URL, the password file
must be the service's alone (the one rule of pkgline.mqtt, as for [events]), the first
release's key names are still read, and the bdSeq file goes on from its last value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pkgline.config import ConfigError, load_line_config
from pkgline.mqtt import BrokerConfig, BrokerConfigError, read_password
from pkgline.sparkplug.bdseq import BdSeq
from pkgline.sparkplug.config import SparkplugConfig, SparkplugError, bdseq_path
from pkgline.sparkplug.node import EdgeNode

LINE = 'name = "line-1"\n'


def test_a_line_without_the_table_has_no_edge_node(tmp_path: Path) -> None:
    path = tmp_path / "line.toml"
    path.write_text(LINE)
    assert load_line_config(path).sparkplug is None


def test_the_table_is_read_with_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "line.toml"
    path.write_text(LINE + '[sparkplug]\ngroup_id = "packaging"\nprimary_host_id = "scada"\n')
    config = load_line_config(path).sparkplug
    assert config is not None
    assert config.node_id("line-1") == "line-1" and config.primary_host_id == "scada"
    assert (config.host, config.port, config.tls) == ("127.0.0.1", 1883, False)
    assert config.keepalive_s == 30 and config.backoff_initial_s == 0.5


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('group_id = "a/b"', "sparkplug.group_id: String should match pattern"),
        ('group_id = "g"\nbroker = "http://h"', "expected mqtt://HOST"),
        ('group_id = "g"\nurl = "mqtt://u:secret@h"', "must not hold a user or password"),
        ('group_id = "g"\nbroker = "mqtt://u:secret@h"', "must not hold a user or password"),
        (
            'group_id = "g"\nbroker = "mqtt://h"\nurl = "mqtt://h"',
            "'broker' and 'url' are one setting .* give 'url' only",
        ),
        ('group_id = "g"\nbroker = "mqtt://h:99999"', "bad port"),
        ('group_id = "g"\nkeepalive_s = 1', "sparkplug.keepalive_s"),
        ('group_id = "g"\nqos = 2', "sparkplug.qos: unknown field 'qos'; expected one of "),
        ("", "sparkplug.group_id: the field group_id is missing; it is required here"),
    ],
)
def test_a_bad_setting_is_refused_with_what_was_expected(
    tmp_path: Path, table: str, expected: str
) -> None:
    path = tmp_path / "line.toml"
    path.write_text(LINE + "[sparkplug]\n" + table + "\n")
    with pytest.raises(ConfigError, match=expected) as info:
        load_line_config(path)
    assert "secret" not in str(info.value)


def test_mqtts_defaults_to_port_8883() -> None:
    config = SparkplugConfig(group_id="g", url="mqtts://broker.plant")
    assert (config.host, config.port, config.tls) == ("broker.plant", 8883, True)


def test_the_first_releases_key_names_are_read_as_the_shared_ones(tmp_path: Path) -> None:
    path = tmp_path / "line.toml"
    path.write_text(
        LINE + '[sparkplug]\ngroup_id = "g"\nbroker = "mqtts://b.plant:8884"\n'
        "reconnect_initial_s = 0.25\nreconnect_max_s = 4.0\n"
    )
    config = load_line_config(path).sparkplug
    assert config is not None
    assert (config.url, config.port, config.backoff_initial_s, config.backoff_max_s) == (
        "mqtts://b.plant:8884",
        8884,
        0.25,
        4.0,
    )


def test_sparkplug_and_the_event_feed_share_one_broker_settings_type() -> None:
    """Every broker key of [events] is a key of [sparkplug], with the same rules."""
    assert issubclass(SparkplugConfig, BrokerConfig)
    assert set(BrokerConfig.model_fields) <= set(SparkplugConfig.model_fields)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_password_file_others_or_the_group_may_read_stops_the_edge_node_with_how_to_fix_it(
    tmp_path: Path, mode: int
) -> None:
    """The group pkgline holds the operators (deploy/install.sh): 0640 is refused too."""
    path = tmp_path / "password"
    path.write_text("s3cret\n")
    path.chmod(mode)
    config = SparkplugConfig(group_id="g", username="u", password_file=path)
    with pytest.raises(SparkplugError, match=r"readable by others .*chmod 600") as info:
        EdgeNode(config, "line-1", [])
    assert "s3cret" not in str(info.value)
    path.chmod(0o600)
    assert read_password(path) == "s3cret"


def test_a_missing_or_empty_password_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BrokerConfigError, match="cannot read"):
        read_password(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.write_text("")
    empty.chmod(0o600)
    with pytest.raises(BrokerConfigError, match="empty"):
        read_password(empty)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\n")
    binary.chmod(0o600)
    with pytest.raises(BrokerConfigError, match="not UTF-8 text"):
        read_password(binary)


def test_bdseq_starts_at_0_goes_on_from_its_file_and_wraps_after_255(tmp_path: Path) -> None:
    path = tmp_path / "state" / "bdseq"
    assert [BdSeq(path).advance() for _ in range(2)] == [0, 1]  # each a new process
    path.write_text("254\n")
    store = BdSeq(path)
    assert [store.advance(), store.advance(), store.advance()] == [255, 0, 1]
    assert path.read_text() == "1\n"


def test_a_bdseq_file_that_is_not_a_number_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bdseq"
    path.write_text("300")
    with pytest.raises(SparkplugError, match=r"expected a bdSeq 0\.\.255"):
        BdSeq(path)
    path.write_bytes(b"\xff")  # a disk that returned garbage
    with pytest.raises(SparkplugError, match=r"expected a bdSeq 0\.\.255, found bytes"):
        BdSeq(path)


def test_the_bdseq_file_lives_in_systemds_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    path = bdseq_path(SparkplugConfig(group_id="pack aging"), "line-1")
    assert path == tmp_path / "sparkplug-pack_aging-line-1.bdseq"


def test_the_commented_example_in_line_example_toml_is_a_valid_table(tmp_path: Path) -> None:
    example = (Path(__file__).parents[2] / "deploy" / "line.example.toml").read_text()
    block = re.search(r"^# \[sparkplug\]\n(?:#.*\n)+", example, re.MULTILINE)
    assert block is not None
    table = "\n".join(line.removeprefix("# ") for line in block.group(0).splitlines())
    path = tmp_path / "line.toml"
    path.write_text(LINE + table + "\n")
    config = load_line_config(path).sparkplug
    assert config is not None and config.primary_host_id == "scada"
