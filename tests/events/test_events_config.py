"""``[events]`` in ``line.toml``: the example's commented table works once uncommented, the
defaults are safe (the feed is off without the table; TLS and credentials only when asked),
and a mistake names the setting."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from pydantic import ValidationError

from pkgline.config import ConfigError, load_line_config
from pkgline.events.topics import Topics, usable_level
from pkgline.mqtt import BrokerConfig, BrokerConfigError, tls_context

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "pkgline" / "line.example.toml"


def _example_events_table() -> str:
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("# [events]")
    table = []
    for line in lines[start:]:
        if not line.startswith("# ") or line.startswith("# ---"):
            break
        table.append(line[2:])
    return "\n".join(table)


def test_the_examples_events_table_uncommented_is_a_valid_feed(tmp_path: Path) -> None:
    path = tmp_path / "line.toml"
    path.write_text('name = "line-1"\n' + _example_events_table() + "\n")
    events = load_line_config(path).events
    assert events is not None
    assert events.tls and events.port == 8883 and events.host == "broker.plant.example"
    assert events.password_file == Path("/etc/pkgline/mqtt-password")
    topics = Topics.of(events.root, events.site, events.area, events.line or "line-1")
    assert topics.lot_events("L1") == "acme/fab2/packaging/line-1/lots/L1/events"


def test_without_an_events_table_the_feed_is_off_and_an_empty_one_is_local_and_plain(
    tmp_path: Path,
) -> None:
    path = tmp_path / "line.toml"
    path.write_text('name = "line-1"\n')
    assert load_line_config(path).events is None
    path.write_text('name = "line-1"\n[events]\n')
    events = load_line_config(path).events
    assert events is not None
    assert events.url == "mqtt://127.0.0.1:1883" and not events.tls
    assert events.username is None and events.password_file is None
    assert events.client_id_for("line-1", "events") == "pkgline-line-1-events"
    assert events.retention_days == 7


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('root = "a/b"', "events.root: String should match pattern"),
        (
            'url = "mqtt://u:pw@host"',
            "events.url: the URL must not hold a user or password",
        ),
        ('site = "#"', "events.site: String should match pattern"),
        (
            "retention_days = -1",
            "events.retention_days: Input should be greater than or equal to 0",
        ),
        ('passwd = "x"', "events.passwd: unknown field 'passwd' (did you mean "),
        ("backoff_initial_s = 100", "events.backoff_initial_s: Input should be less than or"),
    ],
)
def test_a_mistake_in_the_events_table_names_the_setting(
    tmp_path: Path, table: str, message: str
) -> None:
    path = tmp_path / "line.toml"
    path.write_text(f'name = "line-1"\n[events]\n{table}\n')
    with pytest.raises(ConfigError) as raised:
        load_line_config(path)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("name", "usable"),
    [("L-1.a_b", True), ("a/b", False), ("a+", False), ("#", False), ("$SYS", False), ("", False)],
)
def test_only_ids_that_are_one_topic_level_are_usable(name: str, usable: bool) -> None:
    assert usable_level(name) is usable


def test_a_tls_file_that_is_not_there_is_named_in_words(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    config = BrokerConfig(url="mqtts://127.0.0.1:8883", ca_file=missing)
    with pytest.raises(BrokerConfigError) as refused:
        tls_context(config)
    assert str(refused.value) == (
        f"TLS files of mqtts://127.0.0.1:8883: ca_file {missing}: No such file or directory"
    )
    missing.write_text("not a certificate\n")
    with pytest.raises(BrokerConfigError, match=f"ca_file {missing}: no certificate or crl found"):
        tls_context(config)


SECRET = "S3cretPW"
URLS_WITH_A_SECRET = [
    f"ssl://relay:{SECRET}@127.0.0.1:8883",
    f"tcp://relay:{SECRET}@127.0.0.1:1883",
    f"mqtt://relay:{SECRET}@127.0.0.1:1883",
    f"mqtts://:{SECRET}@broker.plant",
    f"relay:{SECRET}@127.0.0.1:1883",
    f"mqtt://relay:{SECRET}@[::1",
    f"mqtt://relay:pa/{SECRET}@127.0.0.1",
    f"mqtt://127.0.0.1:1883?password={SECRET}",
    f"ssl://127.0.0.1:8883?password={SECRET}",
    f"mqtt://127.0.0.1:1883/?{SECRET}",
    f"mqtt://127.0.0.1:1883#{SECRET}",
    f"mqtt://127.0.0.1:1883/{SECRET}",
    f"mqtt:///{SECRET}",
    f"mqtt://127.0.0.1:{SECRET}",
    f"relay:{SECRET}",
    SECRET,
]


@pytest.mark.parametrize("url", URLS_WITH_A_SECRET)
@pytest.mark.parametrize(
    "table", ["[events]\nurl", '[sparkplug]\ngroup_id = "g"\nurl', '[sparkplug]\ngroup_id = "g"\nbroker']
)  # fmt: skip
def test_a_refused_broker_url_is_never_repeated_with_what_may_be_a_password(
    tmp_path: Path, table: str, url: str
) -> None:
    """Found by the probe: ``ssl://relay:PW@host`` (or ``tcp://``, or ``?password=PW``) was
    refused with the whole URL in the message, for the journal or the terminal. The
    credentials are checked first, and a refusal shows the scheme, host and port only (the
    rest masked), in the message and in anything chained to it; the same for [sparkplug],
    which shares the broker settings."""
    path = tmp_path / "line.toml"
    path.write_text(f'name = "line-1"\n{table} = "{url}"\n')
    with pytest.raises(ConfigError) as raised:
        load_line_config(path)
    told = "".join(traceback.format_exception(raised.value))
    said = str(raised.value)
    assert ".url: " in said or ".broker: " in said, said
    assert SECRET not in told, told
    with pytest.raises(ValidationError) as direct:
        BrokerConfig(url=url)
    assert SECRET not in "".join(traceback.format_exception(direct.value))
    assert SECRET not in direct.value.errors()[0]["msg"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"ssl://relay:{SECRET}@h:8883", "must not hold a user or password"),
        (f"ssl://h:8883?password={SECRET}", "mqtts://HOST[:PORT], got 'ssl://h:8883?***'"),
        (f"mqtt://h:1883?password={SECRET}", "nothing after it, got 'mqtt://h:1883?***'"),
        (f"mqtt://h:1883/{SECRET}#x", "nothing after it, got 'mqtt://h:1883/***#***'"),
        (f"mqtt://h:{SECRET}", "bad port in 'mqtt://h:***'"),
        ("http://broker.plant", "got 'http://broker.plant'"),
        ("mqtt://", "no host in 'mqtt://'"),
        ("mqtt://[::1", "got a URL with an unbalanced [ or ]"),
    ],
)
def test_a_refused_broker_url_says_what_is_wrong_with_the_rest_masked(
    url: str, message: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        BrokerConfig(url=url)
    assert message in raised.value.errors()[0]["msg"]


@pytest.mark.parametrize("command", [["serve"], ["events", "tail"]])
def test_serve_and_tail_refuse_a_url_with_a_password_without_showing_it(
    tmp_path: Path, command: list[str]
) -> None:
    """The probe's case, as the operator sees it (exit 2, the message on the terminal)."""
    path = tmp_path / "line.toml"
    path.write_text(f'name = "line-1"\n[events]\nurl = "ssl://relay:{SECRET}@127.0.0.1:8883"\n')
    ran = subprocess.run(
        [sys.executable, "-m", "pkgline", *command, "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert ran.returncode == 2, ran.stderr
    assert "events.url: the URL must not hold a user or password" in ran.stderr
    assert SECRET not in ran.stdout + ran.stderr
