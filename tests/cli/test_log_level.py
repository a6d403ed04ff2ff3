"""The daemons' ``--log-level`` takes the levels it names and refuses any
other as a usage error (exit 2) that lists them, before anything starts. It had been taken
as it came, and an unknown level ended ``serve``, ``api`` and ``sim`` with a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pkgline_cli import pkgline

EXAMPLE = str(Path(__file__).parents[2] / "deploy" / "line.example.toml")
DAEMONS = {
    "serve": ("serve", "--config", EXAMPLE),
    "api": ("api",),
    "sim": ("sim", "--config", EXAMPLE),
}


@pytest.mark.parametrize("command", DAEMONS.values(), ids=DAEMONS.keys())
def test_an_unknown_log_level_is_a_usage_error_naming_the_levels(command: tuple[str, ...]) -> None:
    ran = pkgline(*command, "--log-level", "loud")
    assert ran.returncode == 2, ran
    said = " ".join(ran.stderr.split()).replace("│", "")
    assert "'loud' is not one of" in said and "'debug', 'info', 'warning', 'error'" in " ".join(
        said.split()
    )
    assert "Traceback" not in ran.stderr and ran.stdout == ""
