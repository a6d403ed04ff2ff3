"""deploy/pkgline-api.service: the server's unit is a notify service with a watchdog, its
socket in /run/pkgline for group pkgline only, hardened as pkgline.service, and systemd
accepts it with a low exposure score (skipped, with the reason, without systemd-analyze)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.deploy.test_unit import EXEC_START, MAX_EXPOSURE, needs_systemd_analyze

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "pkgline-api.service"


def _settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def _checkable_copy(tmp_path: Path) -> Path:
    stub = tmp_path / "pkgline"
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    text = UNIT.read_text(encoding="utf-8")
    copy = tmp_path / "pkgline-api.service"
    copy.write_text(text.replace(f"ExecStart={EXEC_START} ", f"ExecStart={stub} "), "utf-8")
    return copy


def test_the_api_unit_is_a_notify_service_with_its_socket_for_group_pkgline() -> None:
    settings = _settings(UNIT)
    assert settings["Type"] == ["notify"] and settings["NotifyAccess"] == ["main"]
    assert settings["WatchdogSec"] == ["30s"] and settings["Restart"] == ["on-failure"]
    assert settings["ExecStart"] == [f"{EXEC_START} api --config /etc/pkgline/line.toml"]
    assert settings["User"] == settings["Group"] == ["pkgline"]
    assert settings["RuntimeDirectory"] == ["pkgline"]
    assert settings["RuntimeDirectoryMode"] == ["0750"]


def test_the_api_unit_has_every_hardening_option_of_the_controller() -> None:
    controller, api = _settings(DEPLOY / "pkgline.service"), _settings(UNIT)
    hardening = [
        "NoNewPrivileges", "CapabilityBoundingSet", "ProtectSystem", "PrivateMounts",
        "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
        "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
        "ProtectHostname", "ProtectProc", "ProcSubset", "RestrictAddressFamilies",
        "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
        "MemoryDenyWriteExecute", "PrivateIPC", "RemoveIPC", "SystemCallFilter",
        "SystemCallErrorNumber", "SystemCallArchitectures",
    ]  # fmt: skip
    for key in hardening:
        assert api.get(key) == controller.get(key), key


@needs_systemd_analyze
def test_systemd_accepts_the_api_unit_and_rates_it_ok(tmp_path: Path) -> None:
    unit = _checkable_copy(tmp_path)
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    assert [line for line in verify.stderr.splitlines() if "pkgline" in line] == []
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    found = re.search(
        r"Overall exposure level for pkgline-api\.service: ([0-9.]+)", security.stdout
    )
    assert found, security.stdout + security.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, security.stdout
