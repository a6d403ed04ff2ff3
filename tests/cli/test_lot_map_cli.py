"""``pkgline lot map``: a lot's maps out as SEMI E142 to a file, an upstream map in, in a
subprocess against a real database; a refused map exits 1 and changes nothing."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from lxml import etree

from mes.maps import e142
from tests.cli.test_lot_cli import ok_json, pkgline
from tests.mes.test_e142 import hand_written


def _rejects(db: str) -> list[tuple[str, int, int, str]]:
    with contextlib.closing(sqlite3.connect(db.removeprefix("sqlite:///"))) as conn:
        return conn.execute(
            "SELECT carrier_id, row, col, code FROM site_rejects ORDER BY carrier_id, row, col"
        ).fetchall()


def test_maps_go_out_to_a_file_and_come_in_with_mapped_bins_or_are_refused(
    tmp_path: Path, sqlite_url: str
) -> None:
    db = sqlite_url
    assert pkgline(db, "db", "upgrade").returncode == 0
    for lot in ("A", "B"):
        geometry = ("--carriers", "1", "--rows", "2", "--cols", "3")
        ok_json(db, "lot", "start", lot, "--flow", "stiffener-bga", *geometry)
    ok_json(db, "lot", "scrap", "A", "--site", "1:1:3", "--code", "VOID", "--reason", "seen at AOI")

    out = tmp_path / "a.xml"
    written = ok_json(db, "lot", "map", "export", "A", "--out", str(out))
    assert written == {"lot": "A", "carriers": ["A-01"], "file": str(out)}
    schema = etree.XMLSchema(etree.fromstring(e142.schema_text().encode()))
    assert schema.validate(etree.parse(str(out)))

    imported = ok_json(db, "lot", "map", "import", "B", str(out), "--carrier", "1")
    assert imported["rejected"] == ["B-01:1:3:VOID"] and imported["good_sites"] == 5

    # An upstream inspection's map: its own bins, one without a reject code of ours.
    upstream = tmp_path / "aoi.xml"
    upstream.write_text(hand_written(substrate="B-01"))
    before = _rejects(db)
    unmapped = pkgline(db, "lot", "map", "import", "B", str(upstream))
    assert unmapped.returncode == 1 and "--bin X=CODE" in unmapped.stderr
    other = tmp_path / "other.xml"
    other.write_text(hand_written(substrate="B-01", rows=3, lines=("PPP",) * 3))
    mismatched = pkgline(db, "lot", "map", "import", "B", str(other), "--json")
    assert mismatched.returncode == 1
    assert (
        "layout is 3 rows x 3 columns; carrier B-01 of lot B is 2 x 3"
        in json.loads(mismatched.stdout)["message"]
    )
    assert _rejects(db) == before  # refused: nothing changed

    done = ok_json(db, "lot", "map", "import", "B", str(upstream), "--bin", "X=PARTICLE")
    assert done["rejected"] == ["B-01:2:2:PARTICLE"] and done["already_rejected"] == ["B-01:1:3"]
    assert ("B-01", 2, 2, "PARTICLE") in _rejects(db)

    # what is not a regular file is not read (a device would be read without end); a
    # directory or no name at all is no file to write to; nothing changes either way
    for source in ("/dev/zero", str(tmp_path)):
        special = pkgline(db, "lot", "map", "import", "B", source, "--json")
        assert special.returncode == 2, special.stdout + special.stderr
        assert "is not a regular file" in json.loads(special.stdout)["message"]
    missing = pkgline(db, "lot", "map", "import", "B", str(tmp_path / "nope.xml"))
    assert missing.returncode == 2 and "nope.xml: no such file; expected an E142" in missing.stderr
    for target in ("", ".", str(tmp_path)):
        nowhere = pkgline(db, "lot", "map", "export", "A", "--out", target)
        assert nowhere.returncode == 2, nowhere.stderr
        assert "expected the name of a file to write" in nowhere.stderr
        assert "Traceback" not in nowhere.stderr
    assert _rejects(db) == sorted([*before, ("B-01", 2, 2, "PARTICLE")])


def test_a_map_comes_in_from_standard_input_as_from_a_file(tmp_path: Path, sqlite_url: str) -> None:
    """``-`` is standard input (a map fetched by a script: ``curl ... | pkgline lot map import
    L -``), read no further than the 8 MB limit; before, it was a file named ``-``."""
    db = sqlite_url
    assert pkgline(db, "db", "upgrade").returncode == 0
    ok_json(
        db,
        "lot",
        "start",
        "C",
        "--flow",
        "stiffener-bga",
        "--carriers",
        "1",
        "--rows",
        "2",
        "--cols",
        "3",
    )
    env = {**os.environ, "PKGLINE_DB": db, "PKGLINE_USER": "op1"}
    command = [sys.executable, "-m", "pkgline", "lot", "map", "import", "C", "-", "--json"]
    piped = subprocess.run(
        [*command, "--bin", "X=PARTICLE"],
        input=hand_written(substrate="C-01"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert piped.returncode == 0, piped.stdout + piped.stderr
    assert json.loads(piped.stdout)["rejected"] == ["C-01:1:3:VOID", "C-01:2:2:PARTICLE"]
    shown = ok_json(db, "lot", "show", "C")
    assert "E142 map import: standard input" in json.dumps(shown["history"])

    with (tmp_path / "big.xml").open("wb") as big:  # past the limit: refused, nothing read on
        big.write(b" " * (e142.MAX_MAP_BYTES + 1))
    with (tmp_path / "big.xml").open("rb") as stdin:
        refused = subprocess.run(
            command, stdin=stdin, env=env, capture_output=True, timeout=60, check=False
        )
    assert refused.returncode == 2, refused.stderr
    assert "standard input is larger than 8,000,000 bytes" in json.loads(refused.stdout)["message"]
