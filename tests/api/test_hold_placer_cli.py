"""Who placed a hold, in ``pkgline lot show``: a hold a system placed with its API key (an SPC
system holding a lot through the API) or the line controller placed (a queue time run out)
read ``(operator, spc-bridge)`` or ``(queue_time, controller)``, as a person's hold reads.
``lot show`` now says ``by system spc-bridge with its API key`` and ``by line controller``
(from the hold's history entry: who acted and how they were known), and ``--json`` gives the
hold's ``by`` and ``auth``; the same through the server and directly on the database."""

from __future__ import annotations

import json

from mes.domain import commands as cmd
from mes.domain.authority import CONTROLLER, Role
from mes.domain.identity import UserKind
from mes.domain.model import HoldSource
from tests.api.conftest import ACCOUNT, ADMIN, START, RunningApi, cli


async def test_lot_show_says_a_hold_was_placed_by_a_systems_key_or_the_line_controller(
    api: RunningApi,
) -> None:
    identity = api.state.identity
    await identity.add_user(
        ADMIN, "spc-bridge", "SPC system", [Role.OPERATOR], kind=UserKind.SYSTEM
    )
    _, token = await identity.issue_api_key(ADMIN, "spc-bridge", "spc")
    async with api.client(authorization=f"Bearer {token}") as spc:
        for lot in ("A1", "A2", "A3"):
            started = await spc.post("/lots", json={**START, "lot": lot})
            assert started.status_code == 201, started.text
        held = await spc.post("/lots/A1/hold", json={"reason": "Cpk 0.9 on wire pull"})
        assert held.status_code == 200, held.text
    lots = api.state.services.lots
    expired = cmd.HoldLot("A2", "controller", "queue time run out", HoldSource.QUEUE_TIME)
    await lots.acting_as(CONTROLLER).hold(expired)
    async with api.client() as person:  # the test's OS account, an operator
        held = await person.post("/lots/A3/hold", json={"reason": "chipped die"})
        assert held.status_code == 200, held.text

    server = f"unix://{api.socket}"
    for mode in (("--server", server), ("--db", api.db)):
        shown = {}
        for lot in ("A1", "A2", "A3"):
            ran = await cli("lot", "show", lot, *mode, env={"COLUMNS": "200"})
            assert ran.returncode == 0, ran.stderr
            shown[lot] = next(line for line in ran.stdout.splitlines() if "hold " in line)
        assert (
            "Cpk 0.9 on wire pull (operator, by system spc-bridge with its API key)"
            in (shown["A1"])
        ), mode
        assert "queue time run out (queue_time, by line controller)" in shown["A2"], mode
        assert f"chipped die (operator, by {ACCOUNT})" in shown["A3"], mode
        as_json = await cli("lot", "show", "A1", "--json", *mode)
        hold = json.loads(as_json.stdout)["hold"]
        assert (hold["user"], hold["by"], hold["auth"]) == ("spc-bridge", "spc-bridge", "api_key")
