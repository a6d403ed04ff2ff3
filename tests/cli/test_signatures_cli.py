"""Electronic signatures from the command line in direct mode: the OS account signs release,
scrap and rework (method ``os``) with ``--meaning`` or a meaning built from the command and
``--reason``, without prompts; ``lot show`` prints each signature with the entry it signs;
a configuration asking for two signers is refused with the reason; ``audit verify`` counts
the signatures; ``user passwd --own``."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.service import LotService
from pkgline.bootstrap import flow_library
from tests.cli.test_lot_cli import ok_json, pkgline

ME = getpass.getuser()


@pytest.fixture
async def db(sqlite_url: str) -> str:
    """A database with lots L1 and L2 on hold, made in-process (the commands under test are
    the signed ones)."""
    engine = create_engine(sqlite_url)
    try:
        await upgrade(engine)
        lots = LotService(SqlUnitOfWorkFactory(engine), flow_library())
        for lot in ("L1", "L2"):
            await lots.start(cmd.StartLot(lot, "fo-organic", "op1", carriers=1))
            await lots.hold(cmd.HoldLot(lot, "op1", "looks wrong"))
        await lots.start(cmd.StartLot("L3", "fo-organic", "op1", carriers=1))
        for step in ("SUBSTRATE_PREP", "DIE_ATTACH", "DIELECTRIC_COAT", "VIA_PATTERN"):
            await lots.track_in(cmd.TrackIn("L3", step, "op1"))
            await lots.track_out(cmd.TrackOut("L3", "op1"))
        await lots.hold(cmd.HoldLot("L3", "op1", "via opening undersized"))
    finally:
        await engine.dispose()
    return sqlite_url


def _signatures(db: str, lot: str) -> list[dict[str, Any]]:
    shown: list[dict[str, Any]] = ok_json(db, "lot", "show", lot)["signatures"]
    return shown


def test_release_as_scripts_call_it_is_signed_by_the_os_account(db: str) -> None:
    released = pkgline(db, "lot", "release", "L1", "--reason", "checked by eye")
    assert released.returncode == 0, released.stderr
    assert f"({ME}, os): approved release: checked by eye" in released.stdout
    [signature] = _signatures(db, "L1")
    assert signature["signer"] == ME and signature["method"] == "os"
    assert signature["meaning"] == "approved release: checked by eye"
    assert signature["operation"] == "release" and signature["entry_seq"] is not None
    shown = pkgline(db, "lot", "show", "L1")
    assert "Signatures (1)" in shown.stdout and "approved release: checked by eye" in shown.stdout


def test_scrap_takes_the_meaning_given_and_audit_verify_counts_it(db: str) -> None:
    scrapped = ok_json(
        db, "lot", "scrap", "L2", "--reason", "voids", "--meaning", "scrap: voids in mold"
    )
    assert scrapped["state"] == "SCRAPPED"
    [recorded] = scrapped["recorded"]
    assert recorded["data"]["signatures"][0]["meaning"] == "scrap: voids in mold"
    [signature] = _signatures(db, "L2")
    assert signature["entry_hash"] == recorded["hash"]
    verified = ok_json(db, "audit", "verify")
    assert verified["ok"] is True and verified["signatures"] == 1
    empty = pkgline(db, "lot", "scrap", "L1", "--reason", "x", "--meaning", " ", "--json")
    assert empty.returncode == 1
    assert json.loads(empty.stdout)["error"] == "invalid_input"


def test_a_configuration_asking_for_two_signers_is_refused_in_direct_mode(
    db: str, tmp_path: Path
) -> None:
    config = tmp_path / "line.toml"
    config.write_text('name = "line-1"\n\n[signatures]\ntwo_signers = ["scrap"]\n')
    refused = pkgline(
        db, "lot", "scrap", "L1", "--reason", "voids", "--config", str(config), "--json"
    )
    assert refused.returncode == 1
    body = json.loads(refused.stdout)
    assert body["error"] == "signature_required" and body["signers_needed"] == 2
    assert "a second signer cannot be given here" in body["message"]
    env = {**os.environ, "PKGLINE_DB": db, "PKGLINE_CONFIG": str(config)}
    by_env = subprocess.run(
        [sys.executable, "-m", "pkgline", "lot", "scrap", "L1", "--reason", "voids"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert by_env.returncode == 1 and "Direct mode signs with your OS account" in by_env.stderr
    assert ok_json(db, "lot", "show", "L1")["state"] == "HOLD"
    released = pkgline(db, "lot", "release", "L1", "--config", str(config))  # one signer
    assert released.returncode == 0, released.stderr


def test_a_configuration_that_does_not_load_is_exit_2_naming_it_and_nothing_changes(
    db: str, tmp_path: Path
) -> None:
    """Found by the probe: a --config without its line's name (or no such file) made every
    signed command of direct mode (release, scrap, rework, migrate, lot map import, flow
    approve) end in a traceback of ConfigError."""
    config = tmp_path / "line.toml"
    config.write_text('[signatures]\ntwo_signers = ["approve_flow"]\n')
    missing = tmp_path / "nope.toml"
    for given, said in (
        (config, "name: the field name is missing; it is required here"),
        (missing, "no such file"),
    ):
        for args in (
            ("lot", "release", "L1", "--reason", "re-measured"),
            ("flow", "approve", "fo-organic", "1"),
        ):
            refused = pkgline(db, *args, "--config", str(given), "--json")
            assert refused.returncode == 2, refused.stderr
            assert "Traceback" not in refused.stderr
            body = json.loads(refused.stdout)
            assert body["error"] == "usage" and body["message"] == f"--config {given}: {said}"
        text = pkgline(db, "lot", "scrap", "L1", "--reason", "voids", "--config", str(given))
        assert text.returncode == 2 and f"error: --config {given}: {said}" in text.stderr
    assert ok_json(db, "lot", "show", "L1")["state"] == "HOLD"


def test_rework_is_signed_with_the_meaning_built_from_the_command(db: str) -> None:
    reworked = ok_json(
        db, "lot", "rework", "L3", "--step", "DIELECTRIC_COAT", "--reason", "strip and re-coat"
    )
    assert reworked["state"] == "WAITING"
    [signature] = _signatures(db, "L3")
    assert signature["meaning"] == "approved rework: strip and re-coat"
    assert signature["operation"] == "rework" and signature["method"] == "os"


def test_a_person_changes_their_own_password_and_only_then_may_sign(db: str) -> None:
    added = pkgline(
        db, "user", "add", "qa1", "--name", "Quinn Quality", "--role", "quality", "--no-password"
    )
    assert added.returncode == 0, added.stderr
    env = {**os.environ, "PKGLINE_DB": db}

    def passwd(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pkgline", "user", "passwd", "qa1", *args, "--json"],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    set_by_admin = json.loads(passwd("--password-stdin", stdin="set by the admin\n").stdout)
    assert set_by_admin["may_sign"] is False and set_by_admin["password_set_by"] == ME
    wrong = passwd("--own", "--password-stdin", stdin="not the one\nmine and mine only\n")
    assert wrong.returncode == 1 and json.loads(wrong.stdout)["error"] == "login_refused"
    own = passwd("--own", "--password-stdin", stdin="set by the admin\nmine and mine only\n")
    assert own.returncode == 0, own.stdout + own.stderr
    after = json.loads(own.stdout)
    assert after["may_sign"] is True and after["password_set_by"] == "qa1"


@pytest.mark.parametrize("command", ["release", "scrap", "rework", "migrate"])
def test_a_reason_that_is_not_one_line_is_refused_without_a_traceback(
    db: str, command: str
) -> None:
    """The meaning built from such a reason raised before the refusals were caught: a
    traceback and nothing on stdout, even with --json (found by the CLI probe)."""
    more = {"rework": ["--step", "SUBSTRATE_PREP"], "migrate": ["--version", "1"]}
    before = ok_json(db, "lot", "show", "L1")["version"]
    done = pkgline(
        db, "lot", command, "L1", *more.get(command, []), "--reason", "ok\nthen", "--json"
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    refused = json.loads(done.stdout)
    assert refused["error"] == "invalid_input" and "one line" in refused["message"]
    assert ok_json(db, "lot", "show", "L1")["version"] == before


def test_lot_history_names_every_signature_of_the_entries_it_lists(db: str) -> None:
    """Found by a quality engineer's walkthrough: `lot history --operation scrap`, the
    report of every scrap, showed the entry's user alone, not who signed it, with what
    meaning, when and how (a scrap signed by two people looked signed by one)."""
    assert pkgline(db, "lot", "release", "L1", "--reason", "checked by eye").returncode == 0
    scrapped = pkgline(db, "lot", "scrap", "L2", "--reason", "voids", "--meaning", "scrap: voids")
    assert scrapped.returncode == 0, scrapped.stderr
    shown = pkgline(db, "lot", "history", "--operation", "scrap")
    assert shown.returncode == 0, shown.stderr
    assert "Signatures on these entries (1)" in shown.stdout
    [line] = [ln for ln in shown.stdout.splitlines() if "scrap: voids" in ln]
    assert "L2" in line and f"({ME})" in line and "os" in line.split()
    every = pkgline(db, "lot", "history")
    assert "Signatures on these entries (2)" in every.stdout
    assert "approved release: checked by eye" in every.stdout
    unsigned = pkgline(db, "lot", "history", "--operation", "hold")
    assert unsigned.returncode == 0 and "Signatures" not in unsigned.stdout
