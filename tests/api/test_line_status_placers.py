"""``pkgline line status``'s held lots say who placed each hold in the holds page's words
(``line controller``, a person, who acted under a name), not the name the hold's command was
given alone (``controller`` read like someone's login): through the server and directly,
its JSON with ``placed_by``."""

from __future__ import annotations

import json

import pytest

from mes.domain import commands as cmd
from mes.domain.authority import CONTROLLER
from mes.domain.model import HoldSource
from tests.api.conftest import ADMIN, RunningApi, cli

pytestmark = pytest.mark.slow

WIDE = {"COLUMNS": "250"}


async def test_line_status_says_who_placed_each_hold(api: RunningApi) -> None:
    lots = api.state.services.lots
    for lot_id in ("H-1", "H-2"):
        await lots.start(cmd.StartLot(lot_id, "fo-organic", "olga"), by=ADMIN)
    expired = cmd.HoldLot("H-1", "controller", "queue time run out", HoldSource.QUEUE_TIME)
    await lots.hold(expired, by=CONTROLLER)
    await lots.hold(cmd.HoldLot("H-2", "olga", "chipped die"), by=ADMIN)
    words = {
        "H-1": "line controller (queue_time)",
        "H-2": "olga, acting: test-admin (file_owner) (operator)",
    }
    shown = await cli("line", "status", "--server", f"unix://{api.socket}", env=WIDE)
    assert shown.returncode == 0, shown.stderr
    held = shown.stdout[shown.stdout.index("Held lots (2;") :]
    for lot_id, placer in words.items():
        row = next(line for line in held.splitlines() if f" {lot_id} " in line)
        assert placer in row, held
    direct = await cli("line", "status", "--json", "--db", api.db)
    assert direct.returncode == 0, direct.stderr
    placed = {h["lot"]: (h["user"], h["placed_by"]) for h in json.loads(direct.stdout)["held"]}
    assert placed == {
        "H-1": ("controller", "line controller"),
        "H-2": ("olga", "olga, acting: test-admin (file_owner)"),
    }
