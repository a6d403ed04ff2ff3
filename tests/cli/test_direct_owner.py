"""Direct database mode is the SQLite file owner's alone (issue 14): a new database file is
created 0600 in a 0700 directory, and every command on a file that belongs to another account
is refused, naming the owner and the server to go through, and changes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from mes.domain.authority import AuthMethod, NotAuthorized
from pkgline.bootstrap import direct_principal
from tests.cli.test_lot_cli import pkgline

NOBODY_UID = 65534


def _path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def test_db_upgrade_creates_the_file_0600_in_a_0700_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'pkgline.db'}"
    result = pkgline(url, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    path = _path(url)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for sidecar in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        if sidecar.exists():
            assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600
    # The owner's own file: direct mode works and says so.
    started = pkgline(url, "lot", "start", "L1", "--flow", "fc-heatsink-muf", "--json")
    assert started.returncode == 0, started.stderr
    assert "direct database" in started.stderr


def test_an_existing_file_keeps_its_mode(sqlite_url: str) -> None:
    path = _path(sqlite_url)
    path.touch(mode=0o640)
    path.chmod(0o640)
    assert pkgline(sqlite_url, "db", "upgrade").returncode == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_another_accounts_file_is_refused_in_process(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _path(sqlite_url)
    path.touch()
    assert direct_principal(sqlite_url).method is AuthMethod.FILE_OWNER
    monkeypatch.setattr(os, "getuid", lambda: path.stat().st_uid + 1)
    with pytest.raises(NotAuthorized) as refused:
        direct_principal(sqlite_url)
    message = refused.value.message
    assert str(path) in message and "--server" in message and "PKGLINE_SERVER" in message


def test_a_file_not_yet_created_is_the_accounts_own(sqlite_url: str) -> None:
    assert direct_principal(sqlite_url).method is AuthMethod.FILE_OWNER


COMMANDS = [
    ["lot", "start", "L2", "--flow", "fc-heatsink-muf"],
    ["lot", "hold", "L1", "--reason", "look"],
    ["tool", "manual", "WB-01", "--reason", "maintenance"],
    ["durable", "add", "CAP-9", "--kind", "capillary", "--life", "100"],
    ["material", "add", "MC-9", "--kind", "mold_compound", "--expires", "2099-01-01"],
    ["reason", "add", "XX", "--kind", "hold", "--text", "x"],
    ["user", "disable", "someone"],
    ["lot", "list"],
]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another account needs root")
def test_every_command_on_another_accounts_file_is_refused_and_changes_nothing(
    sqlite_url: str,
) -> None:
    assert pkgline(sqlite_url, "db", "upgrade").returncode == 0
    assert pkgline(sqlite_url, "lot", "start", "L1", "--flow", "fc-heatsink-muf").returncode == 0
    path = _path(sqlite_url)
    os.chown(path, NOBODY_UID, -1)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    for command in COMMANDS:
        result = pkgline(sqlite_url, *command, "--json")
        assert result.returncode == 1, [*command, result.stdout, result.stderr]
        refusal = json.loads(result.stdout)
        assert refusal["error"] == "not_authorized", command
        message = refusal["message"]
        assert str(path) in message and "--server" in message and "nobody" in message
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before, command
        assert not Path(f"{path}-wal").exists(), command
