"""deploy/install.sh: ``--dry-run`` shows every step of an installation and changes nothing;
bad options are refused. The script is never run for real here (it creates users and
services)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "install.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


def _install(
    *args: str, as_nobody: bool = False, script: Path = SCRIPT
) -> subprocess.CompletedProcess[str]:
    command = ["bash", str(script), *args]
    if as_nobody and os.geteuid() == 0:
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "LC_ALL": "C"},
    )


def test_dry_run_shows_every_step_and_succeeds() -> None:
    result = _install("--dry-run", "--operator", "root")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "nothing is changed" in out
    assert "useradd --system --gid pkgline" in out or "user pkgline exists" in out
    assert "/opt/pkgline/.venv/bin/pip install" in out
    assert "/etc/pkgline/line.toml" in out
    assert "/var/lib/pkgline" in out
    assert "setpriv --reuid=pkgline --regid=pkgline" in out
    assert "db upgrade" in out
    assert "install -m 0644 -o root -g root" in out
    assert "/etc/systemd/system/pkgline.service" in out
    assert "systemctl daemon-reload" in out
    assert "systemctl enable pkgline.service" in out
    assert "/etc/systemd/system/pkgline-api.service" in out
    assert "systemctl enable pkgline-api.service" in out
    assert "export PKGLINE_SERVER=unix:///run/pkgline/api.sock" in out
    assert "PKGLINE_DB=$(" not in out  # operators get no database URL
    assert "install -d -m 0700 -o pkgline -g pkgline /var/lib/pkgline" in out
    assert "umask 0077" in out
    assert "usermod -aG pkgline" in out


needs_a_non_root_user = pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None,
    reason="running as root, and no setpriv to run the script as user nobody",
)


@pytest.fixture
def readable_script() -> Iterator[Path]:
    """install.sh in a copy of what it reads from its checkout, readable by anyone: the
    checkout itself may be in a directory user nobody cannot enter (a ``mktemp -d`` clone)."""
    root = Path(tempfile.mkdtemp(prefix="pkgline-install-"))
    try:
        shutil.copytree(SCRIPT.parent, root / "deploy")  # symlinks followed
        shutil.copy(SCRIPT.parents[1] / "pyproject.toml", root)
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield root / "deploy" / SCRIPT.name
    finally:
        shutil.rmtree(root)


@needs_a_non_root_user
def test_without_root_only_a_dry_run_is_allowed(readable_script: Path) -> None:
    real = _install(as_nobody=True, script=readable_script)
    assert real.returncode == 1
    assert "run as root" in real.stderr
    dry = _install("--dry-run", as_nobody=True, script=readable_script)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("install.sh --dry-run: showing what would be done")


def test_no_start_enables_the_service_without_starting_it() -> None:
    result = _install("--dry-run", "--no-start")
    assert result.returncode == 0, result.stderr
    assert "systemctl enable pkgline.service" in result.stdout
    assert "systemctl restart" not in result.stdout
    assert "not started (--no-start)" in result.stdout


def test_help_describes_the_script() -> None:
    result = _install("--help")
    assert result.returncode == 0
    assert "--dry-run prints what it would do" in result.stdout


@pytest.mark.parametrize("args", [["--bogus"], ["--operator"], ["--python"]])
def test_a_wrong_command_line_exits_2(args: list[str]) -> None:
    result = _install(*args)
    assert result.returncode == 2
    assert "install.sh:" in result.stderr


@pytest.fixture
def config_dir() -> Iterator[tuple[Path, Path]]:
    """install.sh in a copy whose configuration directory is a scratch one (the script and
    the directory): the database URL is read from its ``environment``."""
    root = Path(tempfile.mkdtemp(prefix="pkgline-install-"))
    try:
        shutil.copytree(SCRIPT.parent, root / "deploy")
        shutil.copy(SCRIPT.parents[1] / "pyproject.toml", root)
        config = root / "etc"
        config.mkdir()
        script = root / "deploy" / SCRIPT.name
        text = script.read_text()
        assert "\nCONFIG_DIR=/etc/pkgline\n" in text
        script.write_text(text.replace("\nCONFIG_DIR=/etc/pkgline\n", f"\nCONFIG_DIR={config}\n"))
        yield script, config
    finally:
        shutil.rmtree(root)


def _postgres_home() -> str | None:
    try:
        return pwd.getpwnam("postgres").pw_dir
    except KeyError:
        return None


def test_a_postgresql_of_this_host_is_upgraded_as_its_owner_between_two_runs_of_the_roles_script(
    config_dir: tuple[Path, Path],
) -> None:
    home = _postgres_home()
    if home is None:
        pytest.skip("no 'postgres' account on this host: install.sh takes the other-host path")
    script, config = config_dir
    url = "postgresql://pkgline@/pkgline?host=/run/postgresql"
    (config / "environment").write_text(f"PKGLINE_DB={url}\n")
    result = _install("--dry-run", script=script)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    roles = (
        "setpriv --reuid=postgres --regid=postgres --init-groups psql -X -q "
        "-v owner_role=pkgline_owner -v server_role=pkgline -v reports_role=pkgline_reports "
        f"-d pkgline -f {script.parent / 'postgresql-roles.sql'}"
    )
    upgrade = (
        "setpriv --reuid=postgres --regid=postgres --init-groups env -i PATH=/usr/bin:/bin "
        f"HOME={home} PKGLINE_DB=postgresql:///pkgline sh -c "
        '\'umask 0077 && exec "$0" db upgrade --as-role "$1"\' '
        "/opt/pkgline/.venv/bin/pkgline pkgline_owner"
    )
    first = out.index(roles)
    assert first < out.index(upgrade) < out.index(roles, first + 1)
    assert "setpriv --reuid=pkgline" not in out  # the server's role makes no tables
    assert "database: postgresql://…" in out  # the URL is not shown


def test_a_postgresql_of_another_host_is_the_dbas_to_upgrade(
    config_dir: tuple[Path, Path],
) -> None:
    script, config = config_dir
    (config / "environment").write_text("PKGLINE_DB=postgresql://pkgline@dbhost/pkgline\n")
    result = _install("--dry-run", script=script)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "setpriv --reuid=pkgline --regid=pkgline" in out and "db upgrade" in out
    assert "setpriv --reuid=postgres" not in out
    assert "PostgreSQL on another host" in out
    assert "pkgline db upgrade --as-role pkgline_owner --db postgresql://YOU@dbhost/pkgline" in out
    assert out.count("-v owner_role=pkgline_owner -v server_role=pkgline") == 2
