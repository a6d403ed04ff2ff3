"""Who placed a lot's hold (:func:`mes.domain.report.hold_entry`): the history entry that put
it on hold, whose ``by`` and ``auth`` say who acted, on every store; a lot split off a held
lot keeps its parent's hold, and its placer with it (not whoever split it); the entries of
the lot held already (a late job record, sites scrapped) do not count as placing it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flows import FlowLibrary
from mes.adapters import sql_plans
from mes.domain import commands as cmd
from mes.domain.authority import CONTROLLER, AuthMethod, Principal, Role
from mes.domain.model import HoldSource
from mes.domain.report import hold_entry, report_dict
from mes.ports import UnitOfWorkFactory
from mes.service import LotService
from pkgline.hold_views import placed_by
from tests.mes.conftest import Clock

SPC = Principal("spc-bridge", frozenset({Role.OPERATOR}), AuthMethod.API_KEY)
ENGINEER = Principal("eng1", frozenset(Role), AuthMethod.PASSWORD)


async def test_a_hold_keeps_its_placer_through_a_split_and_a_scrap_of_sites(
    store: UnitOfWorkFactory, library: FlowLibrary, clock: Clock
) -> None:
    lots = LotService(store, library, clock)
    start = cmd.StartLot("L1", "fo-organic", "eng1", 2, 4, 8, {"layers": 3})
    await lots.start(start, by=ENGINEER)
    await lots.hold(cmd.HoldLot("L1", "spc-bridge", "Cpk 0.9"), by=SPC)
    scrap = cmd.ScrapSites("L1", "eng1", "chipped", (cmd.SiteRejectGiven("1", 1, 1, "CHIP"),))
    await lots.scrap_sites(scrap)  # embedded: no signature asked
    carrier = (await lots.get("L1")).carriers[1]
    await lots.split(cmd.SplitLot("L1", "L1-A", (carrier,), "eng1"), by=ENGINEER)
    for lot_id in ("L1", "L1-A"):
        report = await lots.report(lot_id)
        entry = hold_entry(report.lot, report.history)
        assert entry is not None and (entry.lot_id, entry.operation.value) == ("L1", "hold")
        hold = report_dict(report)["hold"]
        assert (hold["by"], hold["auth"]) == ("spc-bridge", "api_key"), lot_id
        words = placed_by(hold["user"], hold["by"], hold["auth"])
        assert words == "system spc-bridge with its API key"
    # the holds page's read: the entry at each hold's time, the lineage only for L1-A
    held = [await lots.get("L1"), await lots.get("L1-A")]
    placed = await lots.hold_entries(held)
    assert {k: (e.lot_id, e.operation.value, e.by) for k, e in placed.items()} == {
        "L1": ("L1", "hold", "spc-bridge"),
        "L1-A": ("L1", "hold", "spc-bridge"),
    }
    # line status's read: one query for every hold, then the lineage of L1-A alone (it had
    # been left out, and line status showed the name its hold was given)
    placers = await lots.hold_placers(held)
    assert {k: (e.lot_id, e.operation.value, e.by) for k, e in placers.items()} == {
        "L1": ("L1", "hold", "spc-bridge"),
        "L1-A": ("L1", "hold", "spc-bridge"),
    }
    released = await lots.release(cmd.ReleaseLot("L1", "eng1", "ok"))
    report = await lots.report(released.lot.id)
    assert hold_entry(report.lot, report.history) is None


def test_who_placed_a_hold_in_words() -> None:
    assert placed_by("controller", "controller", "system") == "line controller"
    assert placed_by("ctl-a", "controller", "system") == "line controller, as ctl-a"
    assert placed_by("mes", "mes", "api_key") == "system mes with its API key"
    assert placed_by("olga", "olga", "session") == "olga"
    assert placed_by("eng1", "root", "file_owner") == "eng1, acting: root (file_owner)"
    assert placed_by("olga", None, None) == "olga"  # an entry from before revision 0004


async def test_the_placers_of_many_holds_are_read_together_each_at_its_own_time(
    store: UnitOfWorkFactory,
    library: FlowLibrary,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``line status``'s read (:meth:`LotService.hold_placers`): each lot's entry at its own
    hold's time, though another lot read with it has an entry at that time too (two lots held
    at the same instant, another's entry at a third's hold time), over more holds than one
    query takes (here 2), a lot not held left out."""
    monkeypatch.setattr(sql_plans, "HOLDS_PER_QUERY", 2)
    lots = LotService(store, library, clock)
    for lot_id in ("A", "B", "C", "D"):
        await lots.start(cmd.StartLot(lot_id, "fo-organic", "eng1", 1, 4, 8, {"layers": 3}))
    expired = cmd.HoldLot("A", "controller", "queue time run out", HoldSource.QUEUE_TIME)
    await lots.hold(expired, by=CONTROLLER)
    clock.now -= timedelta(seconds=1)  # B held at A's hold's instant
    await lots.hold(cmd.HoldLot("B", "spc-bridge", "Cpk 0.9"), by=SPC)
    clock.now -= timedelta(seconds=1)  # D tracked in at that instant too, then C held
    await lots.track_in(cmd.TrackIn("D", "SUBSTRATE_PREP", "eng1"), by=ENGINEER)
    await lots.hold(cmd.HoldLot("C", "eng1", "chipped die"), by=ENGINEER)
    found = [await lots.get(x) for x in ("A", "B", "C", "D")]
    placers = await lots.hold_placers(found)
    assert {k: (e.lot_id, e.operation.value, e.by, e.auth) for k, e in placers.items()} == {
        "A": ("A", "hold", "controller", "system"),
        "B": ("B", "hold", "spc-bridge", "api_key"),
        "C": ("C", "hold", "eng1", "password"),
    }
    assert placers == await lots.hold_entries(found)  # the holds page's read agrees
